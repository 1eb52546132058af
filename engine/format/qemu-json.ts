/**
 * JSON exactly as qemu prints it. qemu serialises through its QDict, a hash
 * table of 512 buckets, so object keys come out in hash order, not insertion
 * order; and its pretty printer indents by four spaces and escapes every
 * non-ASCII character as \uXXXX. Reproducing both makes `vdisk` output
 * byte-identical to qemu-img's, so scripts that diff the two see no change.
 */
export type QValue = string | number | boolean | null | QValue[] | { [key: string]: QValue | undefined };

const BUCKETS = 512;

/** qemu's tdb_hash (util/qdict.c), on the UTF-8 bytes of the key. */
function tdbHash(key: string): number {
  const bytes = new TextEncoder().encode(key);
  let value = Math.imul(0x238f13af, bytes.length) >>> 0;
  for (let i = 0; i < bytes.length; i++) {
    value = (value + ((bytes[i]! << ((i * 5) % 24)) >>> 0)) >>> 0;
  }
  return (Math.imul(1103515243, value) + 12345) >>> 0;
}

/**
 * Keys in the order qemu iterates a QDict built by inserting them in the given
 * order: by bucket, and within a bucket the most recently inserted first.
 */
export function qdictOrder(keys: string[]): string[] {
  return keys
    .map((key, i) => ({ key, i, bucket: tdbHash(key) % BUCKETS }))
    .sort((a, b) => a.bucket - b.bucket || b.i - a.i)
    .map((e) => e.key);
}

function quote(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += '\\\\';
    else if (c === 0x08) out += '\\b';
    else if (c === 0x0c) out += '\\f';
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x0d) out += '\\r';
    else if (c === 0x09) out += '\\t';
    else if (c < 0x20 || c > 0x7e) out += '\\u' + c.toString(16).toUpperCase().padStart(4, '0');
    else out += s[i];
  }
  return out + '"';
}

/** Pretty-prints like qobject_to_json_pretty; `undefined` members are left out, as absent QAPI fields are. */
export function toQemuJson(value: QValue, indent = 0): string {
  const pad = (n: number) => ' '.repeat(4 * n);
  if (value === null) return 'null';
  if (typeof value === 'string') return quote(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) {
    if (value.length === 0) return '[\n' + pad(indent) + ']';
    return '[\n' + value.map((v) => pad(indent + 1) + toQemuJson(v, indent + 1)).join(',\n') + '\n' + pad(indent) + ']';
  }
  const keys = qdictOrder(Object.keys(value).filter((k) => value[k] !== undefined));
  if (keys.length === 0) return '{\n' + pad(indent) + '}';
  return (
    '{\n' +
    keys.map((k) => pad(indent + 1) + quote(k) + ': ' + toQemuJson(value[k]!, indent + 1)).join(',\n') +
    '\n' +
    pad(indent) +
    '}'
  );
}
