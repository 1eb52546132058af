/**
 * xxHash32 (the published XXH32 algorithm), streaming: a fast
 * non-cryptographic hash that names a byte range in compare reports, so two
 * reports can be checked against each other without the images. This class
 * is also the TypeScript twin of the WebAssembly stripe kernel (asm/xxh32.ts):
 * the kernels' variant overrides `stripes` and keeps everything else.
 */
const P1 = 0x9e3779b1;
const P2 = 0x85ebca77;
const P3 = 0xc2b2ae3d;
const P4 = 0x27d4eb2f;
const P5 = 0x165667b1;

const rotl = (x: number, r: number) => (x << r) | (x >>> (32 - r));
const round = (acc: number, lane: number) => Math.imul(rotl((acc + Math.imul(lane, P2)) | 0, 13), P1);

export class Xxh32 {
  /** The four lane accumulators v1..v4. */
  protected readonly lanes = new Int32Array(4);
  private total = 0;
  /** Up to 15 bytes not yet folded into a 16-byte stripe. */
  private readonly pending = new Uint8Array(16);
  private pendingLen = 0;

  constructor(private readonly seed = 0) {
    // Storing into an Int32Array wraps each sum to 32 bits, as the algorithm's arithmetic does.
    this.lanes.set([seed + P1 + P2, seed + P2, seed, seed - P1]);
  }

  update(data: Uint8Array): this {
    this.total += data.length;
    let i = 0;
    if (this.pendingLen > 0) {
      const take = Math.min(16 - this.pendingLen, data.length);
      this.pending.set(data.subarray(0, take), this.pendingLen);
      this.pendingLen += take;
      i = take;
      if (this.pendingLen < 16) return this;
      this.stripes(this.pending, 0, 16);
      this.pendingLen = 0;
    }
    const whole = i + ((data.length - i) & ~15);
    this.stripes(data, i, whole);
    this.pending.set(data.subarray(whole), 0);
    this.pendingLen = data.length - whole;
    return this;
  }

  /** Folds the whole 16-byte stripes of d[from, to) into the lanes. */
  protected stripes(d: Uint8Array, from: number, to: number): void {
    const l = this.lanes;
    let v1 = l[0]!;
    let v2 = l[1]!;
    let v3 = l[2]!;
    let v4 = l[3]!;
    for (let p = from; p < to; p += 16) {
      v1 = round(v1, le32(d, p));
      v2 = round(v2, le32(d, p + 4));
      v3 = round(v3, le32(d, p + 8));
      v4 = round(v4, le32(d, p + 12));
    }
    l[0] = v1;
    l[1] = v2;
    l[2] = v3;
    l[3] = v4;
  }

  digest(): number {
    const l = this.lanes;
    let h = this.total >= 16 ? (rotl(l[0]!, 1) + rotl(l[1]!, 7) + rotl(l[2]!, 12) + rotl(l[3]!, 18)) | 0 : (this.seed + P5) | 0;
    h = (h + this.total) | 0;
    const d = this.pending;
    let p = 0;
    for (; p + 4 <= this.pendingLen; p += 4) h = Math.imul(rotl((h + Math.imul(le32(d, p), P3)) | 0, 17), P4);
    for (; p < this.pendingLen; p++) h = Math.imul(rotl((h + Math.imul(d[p]!, P5)) | 0, 11), P1);
    h = Math.imul(h ^ (h >>> 15), P2);
    h = Math.imul(h ^ (h >>> 13), P3);
    return (h ^ (h >>> 16)) >>> 0;
  }
}

function le32(d: Uint8Array, p: number): number {
  return d[p]! | (d[p + 1]! << 8) | (d[p + 2]! << 16) | (d[p + 3]! << 24);
}

/** The hash as eight hex digits, as reports print it. */
export function xxh32Hex(h: number): string {
  return h.toString(16).padStart(8, '0');
}
