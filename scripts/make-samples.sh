#!/usr/bin/env bash
# Builds the sample images the web app offers on its first screen:
#
#   public/samples/base.qcow2   64 MiB qcow2 with some data
#   public/samples/demo.qcow2   qcow2 overlay on base.qcow2 (relative name,
#                               format given), its own data, and two internal
#                               snapshots
#   public/samples/demo.vmdk    the same disk as demo.qcow2 over base.qcow2,
#                               flattened into a stream-optimized (compressed)
#                               VMDK: the two compare identical
#
# Clusters are 4 KiB and little is written, so each file stays far below
# 300 KiB. Made with qemu-img and qemu-io only.
#
#   scripts/make-samples.sh [OUTDIR]   (default: public/samples)
set -euo pipefail

QEMU_IMG=${QEMU_IMG:-qemu-img}
QEMU_IO=${QEMU_IO:-qemu-io}
export LC_ALL=C

OUT=${1:-"$(dirname "$0")/../public/samples"}
mkdir -p "$OUT"
cd "$OUT"
rm -f base.qcow2 demo.qcow2 demo.vmdk

"$QEMU_IMG" create -q -f qcow2 -o cluster_size=4096 base.qcow2 64M
# Base layer: a pattern at the start and a block in the middle.
"$QEMU_IO" -f qcow2 -c 'write -P 0x11 0 128k' -c 'write -P 0x12 32M 64k' base.qcow2 >/dev/null

# The overlay names its backing file by relative name, as a copied VM folder would.
"$QEMU_IMG" create -q -f qcow2 -o cluster_size=4096 -b base.qcow2 -F qcow2 demo.qcow2
"$QEMU_IO" -f qcow2 -c 'write -P 0x21 64k 64k' -c 'write -z 40M 1M' demo.qcow2 >/dev/null
"$QEMU_IMG" snapshot -c installed demo.qcow2
"$QEMU_IO" -f qcow2 -c 'write -P 0x22 1M 96k' -c 'discard 32M 16k' demo.qcow2 >/dev/null
"$QEMU_IMG" snapshot -c configured demo.qcow2
"$QEMU_IO" -f qcow2 -c 'write -P 0x23 2M 32k' demo.qcow2 >/dev/null

"$QEMU_IMG" convert -f qcow2 -O vmdk -o subformat=streamOptimized demo.qcow2 demo.vmdk

"$QEMU_IMG" check -q demo.qcow2
"$QEMU_IMG" check -q base.qcow2
"$QEMU_IMG" compare -q demo.qcow2 demo.vmdk
for f in base.qcow2 demo.qcow2 demo.vmdk; do
  size=$(stat -c %s "$f")
  if (( size >= 300 * 1024 )); then
    echo "make-samples: $f is $size bytes, over the 300 KiB budget" >&2
    exit 1
  fi
done
