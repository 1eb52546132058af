/**
 * Pure parsers for the VMDK text descriptor ("The Descriptor File" in
 * VMware's note), read the way qemu 7.2 reads it: C strings that end at the
 * first NUL byte, values found by substring search, and extent lines scanned
 * with sscanf's rules — so a descriptor qemu accepts opens here with the same
 * extents, and one it refuses is refused.
 */
import * as L from './layout.ts';

/** One extent line qemu accepts: access RW, a known type, a positive size. */
export interface ExtentLine {
  type: string;
  sectors: number;
  /** The file name exactly as written. */
  name: string;
  /** FLAT: where the extent starts in its file, in sectors (VMFS: 0). */
  flatOffset: number;
}

/** A descriptor that qemu refuses; `detail` is qemu's wording. */
export class DescriptorError extends Error {
  constructor(readonly detail: string) {
    super(detail);
  }
}

/** The bytes as a C string: one char per byte (latin1), ending at the first NUL. */
export function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  const view = end < 0 ? bytes : bytes.subarray(0, end);
  let out = '';
  for (let i = 0; i < view.length; i += 8192) out += String.fromCharCode(...view.subarray(i, i + 8192));
  return out;
}

/** A latin1 string of bytes back to text: file names in a descriptor are UTF-8. */
export function decodeName(latin1: string): string {
  const bytes = Uint8Array.from(latin1, (c) => c.charCodeAt(0));
  return new TextDecoder('utf-8').decode(bytes);
}

/** vmdk_parse_description: the text between `NAME="` (two characters skipped blindly) and the next quote. */
export function quotedValue(text: string, name: string, maxLength: number): string | undefined {
  const at = text.indexOf(name);
  if (at < 0) return undefined;
  const start = at + name.length + 2;
  if (start >= text.length) return undefined;
  const end = text.indexOf('"', start);
  if (end < 0 || end - start + 1 > maxLength) return undefined;
  return text.slice(start, end);
}

/**
 * vmdk_read_cid: the hex number after the first occurrence of `CID` (or
 * `parentCID`) and one more character. The first `CID` may be inside
 * `parentCID`, as in qemu.
 */
export function readCid(text: string, key: 'CID' | 'parentCID'): number | undefined {
  const at = text.indexOf(key);
  if (at < 0) return undefined;
  const s = new Scanner(text, at + key.length + 1);
  return s.hex();
}

/**
 * vmdk_parent_open: `parentFileNameHint` then two characters skipped, up to
 * the next quote. Undefined when there is none; a DescriptorError when the
 * quote is missing or the name too long.
 */
export function parentHint(text: string): string | undefined {
  const at = text.indexOf('parentFileNameHint');
  if (at < 0) return undefined;
  const start = at + 'parentFileNameHint'.length + 2;
  const end = start <= text.length ? text.indexOf('"', start) : -1;
  if (end < 0 || end - start > L.MAX_PARENT_NAME) throw new DescriptorError('Invalid argument');
  return decodeName(text.slice(start, end));
}

/**
 * vmdk_parse_extents: every line is scanned as
 * `ACCESS SECTORS TYPE "NAME" [OFFSET]`. Like sscanf, the scan skips any
 * whitespace, newlines included, so a blank line before an extent line reads
 * that extent twice; qemu does exactly this, and matching it keeps sizes equal.
 */
export function parseExtentLines(text: string): ExtentLine[] {
  const out: ExtentLine[] = [];
  for (let p = 0; p < text.length; p = nextLine(text, p)) {
    const f = scanExtentLine(text, p);
    if (f.matches < 4 || f.access !== 'RW') continue;
    let flatOffset = f.flatOffset;
    if (f.type === 'FLAT') {
      if (f.matches !== 5 || flatOffset === undefined || flatOffset < 0n) throw invalidLine(text, p);
    } else if (f.type === 'VMFS') {
      if (f.matches !== 4) throw invalidLine(text, p);
      flatOffset = 0n;
    } else if (f.matches !== 4) {
      throw invalidLine(text, p);
    }
    const sectors = f.sectors ?? 0n;
    if (sectors <= 0n || !L.EXTENT_TYPES.includes(f.type ?? '')) continue;
    if (sectors * 512n > BigInt(Number.MAX_SAFE_INTEGER) || (flatOffset ?? 0n) * 512n > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new DescriptorError(`Extent too large: ${lineAt(text, p)}`);
    }
    out.push({ type: f.type!, sectors: Number(sectors), name: decodeName(f.name!), flatOffset: Number(flatOffset ?? 0n) });
  }
  return out;
}

function nextLine(text: string, p: number): number {
  const nl = text.indexOf('\n', p);
  return nl < 0 ? text.length : nl + 1;
}

function lineAt(text: string, p: number): string {
  const end = nextLine(text, p);
  return text.slice(p, text[end - 1] === '\n' ? end - 1 : end);
}

function invalidLine(text: string, p: number): DescriptorError {
  return new DescriptorError(`Invalid extent line: ${lineAt(text, p)}`);
}

interface ScannedLine {
  matches: number;
  access?: string;
  sectors?: bigint;
  type?: string;
  name?: string;
  flatOffset?: bigint;
}

/** sscanf(p, "%10s %" SCNd64 " %10s \"%511[^\n\r\"]\" %" SCNd64, ...): the fields and how many were assigned. */
function scanExtentLine(text: string, p: number): ScannedLine {
  const s = new Scanner(text, p);
  const r: ScannedLine = { matches: 0 };
  if ((r.access = s.word(10)) === undefined) return r;
  r.matches++;
  if ((r.sectors = s.decimal()) === undefined) return r;
  r.matches++;
  if ((r.type = s.word(10)) === undefined) return r;
  r.matches++;
  s.spaces();
  if (!s.literal('"')) return r;
  if ((r.name = s.until('\n\r"', L.MAX_EXTENT_NAME)) === undefined) return r;
  r.matches++;
  if (!s.literal('"')) return r;
  if ((r.flatOffset = s.decimal()) === undefined) return r;
  r.matches++;
  return r;
}

const INT64_MAX = (1n << 63n) - 1n;
const UINT64 = 1n << 64n;

/** The few scanf conversions qemu uses on descriptors, in the C locale. */
class Scanner {
  constructor(
    private readonly text: string,
    private pos: number,
  ) {}

  private peek(): string {
    return this.text[this.pos] ?? '';
  }

  spaces(): void {
    while (' \t\n\v\f\r'.includes(this.peek()) && this.pos < this.text.length) this.pos++;
  }

  literal(c: string): boolean {
    if (this.peek() !== c) return false;
    this.pos++;
    return true;
  }

  /** %Ns */
  word(max: number): string | undefined {
    this.spaces();
    const start = this.pos;
    while (this.pos < this.text.length && this.pos - start < max && !' \t\n\v\f\r'.includes(this.peek())) this.pos++;
    return this.pos > start ? this.text.slice(start, this.pos) : undefined;
  }

  /** %N[^set]: at least one character. */
  until(stops: string, max: number): string | undefined {
    const start = this.pos;
    while (this.pos < this.text.length && this.pos - start < max && !stops.includes(this.peek())) this.pos++;
    return this.pos > start ? this.text.slice(start, this.pos) : undefined;
  }

  private sign(): bigint {
    if (this.literal('-')) return -1n;
    this.literal('+');
    return 1n;
  }

  private digits(re: RegExp, base: bigint): bigint | undefined {
    let value: bigint | undefined;
    while (re.test(this.peek())) {
      value = (value ?? 0n) * base + BigInt(parseInt(this.peek(), Number(base)));
      // Past every bound that matters; keeps the number small on a crafted line.
      if (value > UINT64) value = UINT64;
      this.pos++;
    }
    return value;
  }

  /** %lld: strtoll, which saturates. */
  decimal(): bigint | undefined {
    this.spaces();
    const sign = this.sign();
    const v = this.digits(/^[0-9]$/, 10n);
    if (v === undefined) return undefined;
    const signed = sign * v;
    return signed > INT64_MAX ? INT64_MAX : signed < -INT64_MAX - 1n ? -INT64_MAX - 1n : signed;
  }

  /** %x into a uint32: strtoul (saturating at 2^64 - 1, negated for a minus sign), then the low 32 bits. */
  hex(): number | undefined {
    this.spaces();
    const sign = this.sign();
    const save = this.pos;
    if (this.peek() === '0' && /^[xX]$/.test(this.text[this.pos + 1] ?? '') && /^[0-9a-fA-F]$/.test(this.text[this.pos + 2] ?? '')) {
      this.pos += 2;
    }
    const v = this.digits(/^[0-9a-fA-F]$/, 16n);
    if (v === undefined) {
      this.pos = save;
      return undefined;
    }
    const wide = v >= UINT64 ? UINT64 - 1n : sign < 0n ? (UINT64 - v) % UINT64 : v;
    return Number(wide & 0xffffffffn);
  }
}
