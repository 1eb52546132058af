/**
 * The place a check finding names, as a host offset in the image file: qemu
 * prints refcount findings by cluster number and table findings by offset.
 */
const BY_CLUSTER = /^(?:ERROR|Leaked) cluster (\d+) refcount=/;
const BY_OFFSET = /\b(?:c?offset|l[12]_offset)=(?:0x)?([0-9a-fA-F]+)\b/;

/** The host offset a finding is about, when it names one (cluster numbers need the cluster size). */
export function findingOffset(message: string, clusterSize: number | undefined): number | undefined {
  const c = BY_CLUSTER.exec(message);
  if (c && clusterSize) return Number(c[1]) * clusterSize;
  const o = BY_OFFSET.exec(message);
  return o ? parseInt(o[1]!, 16) : undefined;
}
