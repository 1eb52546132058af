#!/usr/bin/env bash
# Builds the raw/qcow2 conformance fixtures used by test/conformance/.
#
#   scripts/make-fixtures.sh OUTDIR
#
# Images are made with qemu-img (create/convert/snapshot/rebase) and qemu-io
# only; a few error fixtures are made by poking header fields of a copy of a
# real image with printf | dd.  The result is OUTDIR/manifest.json, an array
# of entries:
#
#   { "name": "v3-basic", "file": "qcow2/v3-basic.qcow2",
#     "snapshots": ["snap1", ...],   // optional: also convert -l snapshot.name=
#     "skip": ["convert"],           // optional: operations not to compare
#     "error": "missing-backing",    // optional: an error fixture (kind)
#     "missing": true,               // optional: its backing file is absent
#     "note": "..." }                // optional: why something is skipped
#
# Every raw and qcow2 image is made fully allocated on the host
# (cp --sparse=never): the engine cannot see host-file holes, while qemu-img
# looks at them for raw files and for qcow2 files it believes to be
# metadata-preallocated (more clusters in use than the file has allocated).
# External data files are left sparse: qemu-img takes their allocation from
# the qcow2 metadata only.
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi

PARTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/fixtures
QEMU_IMG=${QEMU_IMG:-qemu-img}
QEMU_IO=${QEMU_IO:-qemu-io}
export LC_ALL=C

OUT=${1%/}
if [[ -e "$OUT" && ! -f "$OUT/manifest.json" && -n "$(ls -A "$OUT" 2>/dev/null)" ]]; then
  echo "$0: refusing to replace '$OUT': it is not empty and has no manifest.json" >&2
  exit 2
fi
mkdir -p "$(dirname "$OUT")"
BUILD="$OUT.building.$$"
rm -rf "$BUILD"
mkdir -p "$BUILD"
BUILD=$(cd "$BUILD" && pwd)
# Payload files live outside OUTDIR, in a path without spaces: qemu-io
# commands name them (write -s FILE) and are split at whitespace.
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-fixtures.XXXXXX")
trap 'rm -rf "$BUILD" "$SCRATCH"' EXIT

die() { echo "make-fixtures: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# helpers

# img_create FMT FILE SIZE [qemu-img create options...]
img_create() {
  local fmt=$1 file=$2 size=$3
  shift 3
  "$QEMU_IMG" create -q -f "$fmt" "$@" "$file" "$size"
}

# to_bytes 3M+4k -> 3149824  (sums/differences of numbers with k/M/G/T)
to_bytes() {
  local expr=$1 total=0 sign=1 term num unit
  while [[ -n $expr ]]; do
    [[ $expr =~ ^([+-]?)([0-9]+)([kMGT]?)(.*)$ ]] || die "bad size expression: $1"
    if [[ ${BASH_REMATCH[1]} == - ]]; then sign=-1; else sign=1; fi
    num=${BASH_REMATCH[2]} unit=${BASH_REMATCH[3]} expr=${BASH_REMATCH[4]}
    case $unit in
      k) term=$((num * 1024)) ;;
      M) term=$((num * 1048576)) ;;
      G) term=$((num * 1073741824)) ;;
      T) term=$((num * 1099511627776)) ;;
      *) term=$num ;;
    esac
    total=$((total + sign * term))
  done
  echo "$total"
}

# qio FMT FILE CMD...   (each CMD is one qemu-io command; offsets and lengths
# may be written as 3M+4k)
qio() {
  local fmt=$1 file=$2
  shift 2
  local args=() c w words out
  for c in "$@"; do
    out=""
    read -r -a words <<<"$c"
    for w in "${words[@]}"; do
      if [[ $w =~ ^[0-9]+[kMGT]?([+-][0-9]+[kMGT]?)+$ ]]; then w=$(to_bytes "$w"); fi
      out+="${out:+ }$w"
    done
    args+=(-c "$out")
  done
  "$QEMU_IO" -f "$fmt" "${args[@]}" "$file" >/dev/null ||
    die "qemu-io failed on $file: $*"
}

# densify FILE: rewrite FILE so that no part of it is a host hole
densify() {
  cp --sparse=never "$1" "$1.dense"
  mv -f "$1.dense" "$1"
}

# poke FILE OFFSET HEXBYTES  (HEXBYTES like 7fffffff)
poke() {
  local file=$1 off=$2 hex=$3 esc="" i
  for ((i = 0; i < ${#hex}; i += 2)); do esc+="\\x${hex:i:2}"; done
  # shellcheck disable=SC2059
  printf "$esc" | dd of="$file" bs=1 seek="$off" conv=notrunc status=none
}

# peek FILE OFFSET COUNT -> lowercase hex
peek() {
  od -A n -t x1 -j "$2" -N "$3" "$1" | tr -d ' \n'
}

# Deterministic generators for payload data.
gen_random() { # BYTES SEED
  awk -v n="$1" -v seed="$2" 'BEGIN {
    x = seed
    for (i = 0; i < n; i++) { x = (x * 16807) % 2147483647; printf "%c", int(x / 8388608) % 256 }
  }'
}
gen_text() { # BYTES
  awk -v n="$1" 'BEGIN {
    split("kernel sshd systemd cron dhclient nginx postgres", prog, " ")
    split("link is up|session opened for user admin|Started Daily apt upgrade|connection reset by peer|GET /index.html 200|checkpoint starting: time|renewing lease", msg, "|")
    total = 0; i = 0
    while (total < n) {
      line = sprintf("2024-03-%02d %02d:%02d:%02d host%02d %s[%d]: %s (seq=%06d)\n",
        1 + i % 28, i % 24, (i * 7) % 60, (i * 13) % 60, i % 17,
        prog[1 + i % 7], 1000 + (i * 37) % 9000, msg[1 + (i * 3) % 7], i)
      if (total + length(line) > n) line = substr(line, 1, n - total)
      printf "%s", line
      total += length(line); i++
    }
  }'
}

TEXT="$SCRATCH/text.txt"
gen_text 1048576 >"$TEXT"
RANDOM_DATA="$SCRATCH/random.bin"
gen_random 262144 4242 >"$RANDOM_DATA"

# The standard guest layout used by most qcow2 fixtures (size in MiB, >= 4):
#   MiB 0: 128k of 0xa0
#   MiB 1: 64k of 0xa1, 64k of 0xa1 at +768k
#   MiB 2: never written
#   MiB 3: 256k of 0xa3, then 128k at +64k discarded
#   MiB 4: 256k of written zeros at the start (over nothing)
#   MiB 5: 256k of 0xa5, then 64k at +64k overwritten with written zeros
#   MiB 6: 128k of text, 8k of 0xa6 at +252k (crosses a 64k boundary)
#   MiB 7: 8k of 0xa7 at +4k, 4k of 0xa7 in the last 4k of the disk
# (only the MiBs below the size are written; the last 4k always is)
std_cmds() { # SIZE_MIB
  local n=$1
  STD=(
    "write -P 0xa0 0 128k"
    "write -P 0xa1 1M 64k"
    "write -P 0xa1 1M+768k 64k"
    "write -P 0xa3 3M 256k"
    "discard 3M+64k 128k"
  )
  if ((n > 4)); then
    STD+=(
      "write -z 4M 256k"
      "write -P 0xa5 5M 256k"
      "write -z 5M+64k 64k"
    )
  fi
  if ((n > 6)); then
    STD+=(
      "write -s $TEXT 6M 128k"
      "write -P 0xa6 6M+252k 8k"
    )
  fi
  if ((n > 7)); then
    STD+=(
      "write -P 0xa7 7M+4k 8k"
      "write -P 0xa7 $((n * 1024 - 4))k 4k"
    )
  else
    STD+=("write -P 0xa7 $((n * 1024 - 4))k 4k")
  fi
}

# std_qcow2 FILE SIZE_MIB [create options...]
std_qcow2() {
  local file=$1 mib=$2
  shift 2
  img_create qcow2 "$file" "${mib}M" "$@"
  std_cmds "$mib"
  qio qcow2 "$file" "${STD[@]}"
  densify "$file"
}

# full_raw FILE SIZE_MIB BASEBYTE: a fully allocated raw image in which MiB i
# holds the byte BASEBYTE+i, except for a stretch of text in the second half
# of MiB 1 and real zeros in the second half of the last MiB.
full_raw() {
  local file=$1 mib=$2 base=$3 i cmds=()
  img_create raw "$file.sparse" "${mib}M"
  for ((i = 0; i < mib; i++)); do
    cmds+=("write -P $(printf '0x%02x' $((base + i))) ${i}M 1M")
  done
  if ((mib > 1)); then cmds+=("write -s $TEXT 1536k 256k"); fi
  cmds+=("write -z $((mib * 1024 - 512))k 512k")
  qio raw "$file.sparse" "${cmds[@]}"
  cp --sparse=never "$file.sparse" "$file"
  rm -f "$file.sparse"
}

# ---------------------------------------------------------------------------
# manifest

MANIFEST=()
# add NAME FILE [json members...]   e.g. add x qcow2/x.qcow2 '"snapshots": ["a"]'
add() {
  local name=$1 file=$2 extra=""
  shift 2
  [[ -e "$BUILD/$file" ]] || die "fixture $name: $file was not made"
  local m
  for m in "$@"; do extra+=", $m"; done
  MANIFEST+=("  { \"name\": \"$name\", \"file\": \"$file\"$extra }")
}

cd "$BUILD"
mkdir -p raw qcow2 compressed extl2 datafile snapshots chain3 chain-nofmt \
  chain-subdir/sub chain-short huge errors

# ---------------------------------------------------------------------------
# raw

full_raw raw/plain.raw 2 0x30
add raw-plain raw/plain.raw

gen_random 1000 777 >raw/odd-size.raw
add raw-odd-size raw/odd-size.raw

# ---------------------------------------------------------------------------
# qcow2 versions and cluster sizes

std_qcow2 qcow2/v2-basic.qcow2 8 -o compat=0.10
add v2-basic qcow2/v2-basic.qcow2
std_qcow2 qcow2/v3-basic.qcow2 8 -o compat=1.1
add v3-basic qcow2/v3-basic.qcow2

std_qcow2 qcow2/cluster-512.qcow2 8 -o cluster_size=512
add cluster-512 qcow2/cluster-512.qcow2
std_qcow2 qcow2/cluster-4k.qcow2 8 -o cluster_size=4096
add cluster-4k qcow2/cluster-4k.qcow2
std_qcow2 qcow2/cluster-64k.qcow2 8 -o cluster_size=65536
add cluster-64k qcow2/cluster-64k.qcow2

# 2 MiB clusters: one normal data cluster, zstd-compressed clusters and a
# zero cluster (every 2 MiB metadata cluster costs 2 MiB of disk, so this is
# kept to a minimum; it is also the compressed fixture with 2 MiB clusters)
img_create qcow2 qcow2/cluster-2m.qcow2 16M -o cluster_size=2M,compression_type=zstd
qio qcow2 qcow2/cluster-2m.qcow2 \
  "write -P 0xb0 0 256k" \
  "write -P 0xb1 1M+4k 8k" \
  "write -s $TEXT 1M+512k 64k" \
  "write -z 1M+576k 4k" \
  "write -c -s $TEXT 2M 2M" \
  "write -z 4M 2M" \
  "write -c -P 0xbf 14M 2M"
densify qcow2/cluster-2m.qcow2
add cluster-2m qcow2/cluster-2m.qcow2

# ---------------------------------------------------------------------------
# refcount widths

# (4 KiB clusters: small, and several refcount blocks for the wide entries)
for bits in 1 2 4 8 16 32 64; do
  std_qcow2 "qcow2/refcount-$bits.qcow2" 4 -o "refcount_bits=$bits,cluster_size=4096"
  add "refcount-$bits" "qcow2/refcount-$bits.qcow2"
done

# ---------------------------------------------------------------------------
# zero clusters

# v3: zero flags on unallocated clusters, on allocated clusters with and
# without unmapping, partial-cluster zero writes, and discards.
img_create qcow2 qcow2/zero-v3.qcow2 4M -o compat=1.1
qio qcow2 qcow2/zero-v3.qcow2 \
  "write -P 0xc0 0 1M" \
  "write -z 0 64k" \
  "write -z -u 128k 64k" \
  "write -z 260k 4k" \
  "write -z 1M 128k" \
  "write -z -u 1280k 64k" \
  "write -P 0xc2 2M 256k" \
  "discard 2M 64k" \
  "write -z -u 2176k 64k" \
  "write -P 0xc3 3M 64k" \
  "write -z 3M 32k"
densify qcow2/zero-v3.qcow2
add zero-v3 qcow2/zero-v3.qcow2

# v2 has no zero flag.  Without a backing file qemu turns zero writes into
# discards (see v2-basic); with one, zero writes allocate clusters full of
# zeros (and qemu leaves a discard there without effect).
img_create qcow2 qcow2/zero-v2-base.qcow2 4M -o compat=0.10
qio qcow2 qcow2/zero-v2-base.qcow2 "write -P 0xc8 0 1M" "write -P 0xc9 2M 512k"
densify qcow2/zero-v2-base.qcow2
( cd qcow2 && img_create qcow2 zero-v2.qcow2 4M -o compat=0.10 -b zero-v2-base.qcow2 -F qcow2 )
qio qcow2 qcow2/zero-v2.qcow2 \
  "write -P 0xc0 0 256k" \
  "write -z 0 64k" \
  "discard 128k 64k" \
  "write -z 1M 128k" \
  "write -z 2M 64k" \
  "write -z -u 2M+128k 64k" \
  "write -z 2M+300k 4k" \
  "write -P 0x00 3M 64k"
densify qcow2/zero-v2.qcow2
add zero-v2 qcow2/zero-v2.qcow2

# ---------------------------------------------------------------------------
# compressed clusters

# Source: 8 MiB with text, per-MiB patterns, random (incompressible) data,
# zeros and unwritten space.
SRC="$SCRATCH/compress-src.raw"
img_create raw "$SRC" 8M
qio raw "$SRC" \
  "write -s $TEXT 0 1M" \
  "write -P 0xd1 1M 1M" \
  "write -s $RANDOM_DATA 2M 256k" \
  "write -P 0xd3 3M 512k" \
  "write -s $TEXT 4M+4k 200k" \
  "write -P 0xd5 5M 1M" \
  "write -z 5M+256k 256k" \
  "write -s $TEXT 7M+512k 64k" \
  "write -P 0xd7 8M-4k 4k"

"$QEMU_IMG" convert -q -c -f raw -O qcow2 "$SRC" compressed/zlib.qcow2
densify compressed/zlib.qcow2
add compressed-zlib compressed/zlib.qcow2

"$QEMU_IMG" convert -q -c -f raw -O qcow2 -o compression_type=zstd "$SRC" compressed/zstd.qcow2
densify compressed/zstd.qcow2
add compressed-zstd compressed/zstd.qcow2

"$QEMU_IMG" convert -q -c -f raw -O qcow2 -o cluster_size=4096 "$SRC" compressed/zlib-4k.qcow2
densify compressed/zlib-4k.qcow2
add compressed-zlib-4k compressed/zlib-4k.qcow2

"$QEMU_IMG" convert -q -c -f raw -O qcow2 -o cluster_size=4096,compression_type=zstd "$SRC" compressed/zstd-4k.qcow2
densify compressed/zstd-4k.qcow2
add compressed-zstd-4k compressed/zstd-4k.qcow2

# 512-byte clusters: the smallest compressed-cluster descriptors.
"$QEMU_IMG" convert -q -c -f raw -O qcow2 -o cluster_size=512,compression_type=zstd "$SRC" compressed/zstd-512.qcow2
densify compressed/zstd-512.qcow2
add compressed-zstd-512 compressed/zstd-512.qcow2

# (compressed 2 MiB clusters: see cluster-2m)

# Compressed clusters mixed with normal ones, written by qemu-io.
img_create qcow2 compressed/mixed.qcow2 4M
qio qcow2 compressed/mixed.qcow2 \
  "write -c -s $TEXT 0 64k" \
  "write -c -P 0xe1 64k 64k" \
  "write -P 0xe2 128k 64k" \
  "write -c -s $RANDOM_DATA 192k 64k" \
  "write -c -s $TEXT 1M 128k" \
  "write -P 0xe3 1M+32k 4k" \
  "write -c -P 0xe4 2M 64k" \
  "write -z 2M 64k" \
  "write -c -s $TEXT 3M 64k" \
  "discard 3M 64k" \
  "write -c -s $TEXT 4M-64k 64k"
densify compressed/mixed.qcow2
add compressed-mixed compressed/mixed.qcow2

# ---------------------------------------------------------------------------
# extended L2 entries (subclusters) over a backing file

img_create qcow2 extl2/base.qcow2 4M
qio qcow2 extl2/base.qcow2 \
  "write -P 0xf0 0 256k" "write -P 0xf1 1M 384k" "write -P 0xf2 2M 384k" \
  "write -s $TEXT 3M 256k" "write -P 0xf3 3M+512k 512k"
densify extl2/base.qcow2

for cs in 64k 128k; do
  f="extl2/extl2-$cs.qcow2"
  img_create qcow2 "$f" 4M -o "extended_l2=on,cluster_size=$cs" -b base.qcow2 -F qcow2
  qio qcow2 "$f" \
    "write -P 0x51 0 4k" \
    "write -P 0x52 16k 4k" \
    "write -z 32k 4k" \
    "write -P 0x53 1M 64k" \
    "write -z 1M+16k 8k" \
    "write -z -u 1M+128k 128k" \
    "discard 2M 128k" \
    "discard 2M+260k 8k" \
    "write -P 0x54 3M+4k 4k" \
    "write -P 0x55 3M+8193 2k" \
    "write -c -P 0x56 3584k 128k" \
    "write -z 4M-8k 4k"
  densify "$f"
  add "extl2-$cs" "$f"
done

# ---------------------------------------------------------------------------
# external data files

( cd datafile &&
  img_create qcow2 df.qcow2 4M -o data_file=df.data &&
  std_cmds 4 && qio qcow2 df.qcow2 "${STD[@]}" )
densify datafile/df.qcow2
add data-file datafile/df.qcow2 '"skip": ["map-from-root"]' \
  '"note": "qemu-img 7.2 looks for the data file relative to the current directory; vdisk, like a backing file, relative to the image"'

( cd datafile &&
  img_create qcow2 df-raw.qcow2 4M -o data_file=df-raw.data,data_file_raw=on &&
  std_cmds 4 && qio qcow2 df-raw.qcow2 "${STD[@]}" )
densify datafile/df-raw.qcow2
add data-file-raw datafile/df-raw.qcow2 '"skip": ["map-from-root"]' \
  '"note": "qemu-img 7.2 looks for the data file relative to the current directory; vdisk, like a backing file, relative to the image"'

# ---------------------------------------------------------------------------
# lazy refcounts, dirty and corrupt bits

std_qcow2 qcow2/lazy-refcounts.qcow2 4 -o lazy_refcounts=on
add lazy-refcounts qcow2/lazy-refcounts.qcow2

# incompatible_features is the u64 at header offset 72; bit 0 = dirty,
# bit 1 = corrupt (byte 79 holds the low bits).
cp --sparse=never qcow2/lazy-refcounts.qcow2 qcow2/dirty.qcow2
[[ $(peek qcow2/dirty.qcow2 72 8) == 0000000000000000 ]] || die "unexpected incompatible features"
poke qcow2/dirty.qcow2 79 01
add dirty-bit qcow2/dirty.qcow2

cp --sparse=never qcow2/refcount-16.qcow2 qcow2/corrupt.qcow2
[[ $(peek qcow2/corrupt.qcow2 72 8) == 0000000000000000 ]] || die "unexpected incompatible features"
poke qcow2/corrupt.qcow2 79 02
add corrupt-bit qcow2/corrupt.qcow2

# ---------------------------------------------------------------------------
# internal snapshots (v3 and v2)

for compat in 1.1 0.10; do
  if [[ $compat == 1.1 ]]; then f=snapshots/snap-v3.qcow2; else f=snapshots/snap-v2.qcow2; fi
  img_create qcow2 "$f" 4M -o "compat=$compat"
  qio qcow2 "$f" "write -P 0x61 0 256k" "write -P 0x62 1M 256k" "write -s $TEXT 3M 64k"
  "$QEMU_IMG" snapshot -c snap1 "$f"
  qio qcow2 "$f" "write -P 0x63 0 64k" "write -P 0x64 2M 128k" "write -z 1M 64k" "discard 1M+128k 64k"
  "$QEMU_IMG" snapshot -c snap2 "$f"
  qio qcow2 "$f" "write -P 0x65 3M 64k" "discard 2M 64k" "write -P 0x66 64k 4k"
  densify "$f"
done
add snapshots-v3 snapshots/snap-v3.qcow2 '"snapshots": ["snap1", "snap2"]'
add snapshots-v2 snapshots/snap-v2.qcow2 '"snapshots": ["snap1", "snap2"]'

# A snapshot taken last: the table ends the file, without the padding of its last entry.
img_create qcow2 snapshots/snap-last.qcow2 4M -o cluster_size=16k
qio qcow2 snapshots/snap-last.qcow2 "write -P 0x67 0 128k"
"$QEMU_IMG" snapshot -c last-one snapshots/snap-last.qcow2
add snapshot-table-at-eof snapshots/snap-last.qcow2 '"snapshots": ["last-one"]'

# ---------------------------------------------------------------------------
# backing chains

# base.raw <- l1.qcow2 <- l2.qcow2 <- l3.qcow2, each with its backing format.
full_raw chain3/base.raw 4 0x40
( cd chain3 &&
  img_create qcow2 l1.qcow2 4M -b base.raw -F raw &&
  qio qcow2 l1.qcow2 "write -P 0x71 1M 128k" "write -z 3M 64k" "write -P 0x71 2M+4k 4k" &&
  img_create qcow2 l2.qcow2 4M -b l1.qcow2 -F qcow2 &&
  qio qcow2 l2.qcow2 "write -P 0x72 2M 128k" "discard 1M 64k" "write -z -u 3M+64k 64k" &&
  img_create qcow2 l3.qcow2 4M -b l2.qcow2 -F qcow2 -o compat=0.10 &&
  qio qcow2 l3.qcow2 "write -P 0x73 3M+512k 64k" "write -P 0x73 0 4k" "write -P 0x73 1M+64k 4k" )
for f in chain3/l1.qcow2 chain3/l2.qcow2 chain3/l3.qcow2; do densify "$f"; done
add chain3-l1 chain3/l1.qcow2
add chain3-l2 chain3/l2.qcow2
add chain3-l3 chain3/l3.qcow2

# Overlays whose header gives no backing format (the format is probed).
# qemu-img 7.2 refuses to write such a header, so the backing-format header
# extension (magic 0xe2792aca) of a real overlay is disabled:
#  - v2 overlay over a qcow2 base: its magic becomes 0, the end marker, which
#    is what an old qemu-img wrote;
#  - v3 overlay over a raw base: its magic becomes 0x6e6f6e65, an unknown
#    extension that readers must skip (the feature-name table follows it).
img_create qcow2 chain-nofmt/base.qcow2 2M
qio qcow2 chain-nofmt/base.qcow2 "write -P 0x81 0 256k" "write -P 0x82 1M 256k"
densify chain-nofmt/base.qcow2
full_raw chain-nofmt/base.raw 1 0x88
( cd chain-nofmt &&
  img_create qcow2 over-v2.qcow2 2M -o compat=0.10 -b base.qcow2 -F qcow2 &&
  qio qcow2 over-v2.qcow2 "write -P 0x83 512k 64k" &&
  img_create qcow2 over-v3.qcow2 2M -o compat=1.1 -b base.raw -F raw &&
  qio qcow2 over-v3.qcow2 "write -P 0x8a 1M 64k" "write -z 4k 4k" )
densify chain-nofmt/over-v2.qcow2
densify chain-nofmt/over-v3.qcow2
# v2 header is 72 bytes; v3 header length is the u32 at offset 100
[[ $(peek chain-nofmt/over-v2.qcow2 72 4) == e2792aca ]] || die "over-v2: backing format extension not at 72"
poke chain-nofmt/over-v2.qcow2 72 00000000
hl=$((16#$(peek chain-nofmt/over-v3.qcow2 100 4)))
[[ $(peek chain-nofmt/over-v3.qcow2 "$hl" 4) == e2792aca ]] || die "over-v3: backing format extension not at $hl"
poke chain-nofmt/over-v3.qcow2 "$hl" 6e6f6e65
add nofmt-v2-qcow2-base chain-nofmt/over-v2.qcow2
add nofmt-v3-raw-base chain-nofmt/over-v3.qcow2

# Backing file in a subfolder, referenced as "sub/base.qcow2", whose own
# backing file "base.raw" is relative to sub/.
full_raw chain-subdir/sub/base.raw 2 0x90
( cd chain-subdir/sub &&
  img_create qcow2 base.qcow2 2M -b base.raw -F raw &&
  qio qcow2 base.qcow2 "write -P 0x93 1M 64k" )
( cd chain-subdir &&
  img_create qcow2 top.qcow2 2M -b sub/base.qcow2 -F qcow2 &&
  qio qcow2 top.qcow2 "write -P 0x94 0 64k" "write -P 0x94 1M+32k 64k" )
densify chain-subdir/sub/base.qcow2
densify chain-subdir/top.qcow2
add chain-subdir chain-subdir/top.qcow2

# Backing file shorter than the overlay (2 MiB base + 3 MiB under a 6 MiB
# overlay, with a base size that is not a multiple of the cluster size).
img_create qcow2 chain-short/base.qcow2 $((2 * 1048576 + 300 * 1024))
qio qcow2 chain-short/base.qcow2 "write -P 0xa1 0 256k" "write -P 0xa2 1M+768k 556k"
densify chain-short/base.qcow2
( cd chain-short &&
  img_create qcow2 top.qcow2 6M -b base.qcow2 -F qcow2 &&
  qio qcow2 top.qcow2 "write -P 0xa3 512k 64k" "write -P 0xa4 2M+256k 64k" "write -P 0xa5 5M 64k" )
densify chain-short/top.qcow2
add chain-short-backing chain-short/top.qcow2

# ---------------------------------------------------------------------------
# huge virtual sizes

img_create qcow2 huge/huge-16t.qcow2 16T
qio qcow2 huge/huge-16t.qcow2 \
  "write -P 0xb1 0 64k" \
  "write -P 0xb2 8T 64k" \
  "write -z 12T 1M" \
  "write -P 0xb3 $((16 * 1099511627776 - 65536)) 64k"
densify huge/huge-16t.qcow2
add huge-16t huge/huge-16t.qcow2 '"skip": ["convert"]' \
  '"note": "a 16 TiB raw output file does not fit on ext4 (16 TiB - 4 KiB at most)"'

img_create qcow2 huge/huge-4t.qcow2 4T
qio qcow2 huge/huge-4t.qcow2 \
  "write -P 0xb4 0 64k" \
  "write -P 0xb5 2T 64k" \
  "write -P 0xb6 $((4 * 1099511627776 - 65536)) 64k"
densify huge/huge-4t.qcow2
add huge-4t huge/huge-4t.qcow2

# ---------------------------------------------------------------------------
# error fixtures

# Overlay whose backing file does not exist.
( cd errors && img_create qcow2 gone.qcow2 4M &&
  img_create qcow2 missing-backing.qcow2 4M -b gone.qcow2 -F qcow2 &&
  qio qcow2 missing-backing.qcow2 "write -P 0x11 0 64k" &&
  "$QEMU_IMG" rebase -u -b no-such-base.qcow2 -F qcow2 missing-backing.qcow2 &&
  rm -f gone.qcow2 )
add missing-backing errors/missing-backing.qcow2 '"error": "missing-backing"' '"missing": true'

# Overlay whose backing file is itself.  qemu-img hangs on map and convert
# of such an image, so only info is compared.
( cd errors && img_create qcow2 self-backing.qcow2 4M &&
  qio qcow2 self-backing.qcow2 "write -P 0x12 0 64k" &&
  "$QEMU_IMG" rebase -u -b self-backing.qcow2 -F qcow2 self-backing.qcow2 )
add self-backing errors/self-backing.qcow2 '"error": "backing-loop"' '"skip": ["map", "convert", "check"]' \
  '"note": "qemu-img map, convert and check never finish on a backing loop"'

# Header corruptions of a copy of a real image.
img_create qcow2 "$SCRATCH/victim.qcow2" 4M
qio qcow2 "$SCRATCH/victim.qcow2" "write -P 0x13 0 128k" "write -P 0x14 3M 64k"

# L1 size (u32 at 36) = 0x7fffffff
cp --sparse=never "$SCRATCH/victim.qcow2" errors/l1-size-huge.qcow2
poke errors/l1-size-huge.qcow2 36 7fffffff
add l1-size-huge errors/l1-size-huge.qcow2 '"error": "l1-too-large"'

# L1 table offset (u64 at 40) far past the end of the file (64 GiB): qemu
# reads past the end as zeros, so this one opens as an all-unallocated disk.
cp --sparse=never "$SCRATCH/victim.qcow2" errors/l1-past-eof.qcow2
poke errors/l1-past-eof.qcow2 40 0000001000000000
add l1-past-eof errors/l1-past-eof.qcow2 '"error": "l1-past-eof"' '"stricter": true' \
  '"note": "vdisk refuses a table past the end of the file instead of reading zeros"'

# L1 table offset near 2^63: the read itself is out of range.
cp --sparse=never "$SCRATCH/victim.qcow2" errors/l1-offset-huge.qcow2
poke errors/l1-offset-huge.qcow2 40 7fffffffffff0000
add l1-offset-huge errors/l1-offset-huge.qcow2 '"error": "l1-offset-out-of-range"'

# L1 table offset not cluster aligned.
cp --sparse=never "$SCRATCH/victim.qcow2" errors/l1-unaligned.qcow2
poke errors/l1-unaligned.qcow2 40 0000000000030200
add l1-unaligned errors/l1-unaligned.qcow2 '"error": "l1-offset-unaligned"'

# Truncated to 1 KiB: header intact, all tables past the end of the file.
dd if="$SCRATCH/victim.qcow2" of=errors/truncated.qcow2 bs=1024 count=1 status=none
add truncated errors/truncated.qcow2 '"error": "truncated"' '"stricter": true' \
  '"note": "vdisk refuses a table past the end of the file instead of reading zeros"'

# ---------------------------------------------------------------------------
# the other formats: one part per format in scripts/fixtures/, sourced here so
# they share the helpers above; each makes its own folder and calls `add`.

for part in "$PARTS"/*.sh; do
  [[ -e $part ]] || continue
  # shellcheck source=/dev/null
  source "$part"
  cd "$BUILD"
done

# ---------------------------------------------------------------------------
# manifest and swap into place

{
  echo "["
  for ((i = 0; i < ${#MANIFEST[@]}; i++)); do
    if ((i + 1 < ${#MANIFEST[@]})); then echo "${MANIFEST[i]},"; else echo "${MANIFEST[i]}"; fi
  done
  echo "]"
} >"$BUILD/manifest.json"

rm -rf "$OUT"
mv "$BUILD" "$OUT"
rm -rf "$SCRATCH"
trap - EXIT
echo "make-fixtures: ${#MANIFEST[@]} fixtures in $OUT ($(du -sh "$OUT" | cut -f1) on disk)"
