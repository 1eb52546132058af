/**
 * A least-recently-used cache bounded by total weight (bytes), for metadata
 * tables (qcow2 L2 and refcount blocks, VMDK grain tables …) and decoded
 * clusters. Whatever the image size, a cache never holds more than its budget.
 * Loads of the same key in flight are shared, so concurrent readers of one
 * table cause one read.
 */
export class LruCache<K, V> {
  private readonly entries = new Map<K, { value: V; weight: number }>();
  private readonly loading = new Map<K, Promise<V>>();
  private total = 0;

  constructor(
    private readonly budget: number,
    private readonly weigh: (value: V) => number,
  ) {}

  get(key: K): V | undefined {
    const hit = this.entries.get(key);
    if (!hit) return undefined;
    // Re-insert so Map iteration order is recency order.
    this.entries.delete(key);
    this.entries.set(key, hit);
    return hit.value;
  }

  set(key: K, value: V): void {
    const weight = this.weigh(value);
    const old = this.entries.get(key);
    if (old) {
      this.total -= old.weight;
      this.entries.delete(key);
    }
    this.entries.set(key, { value, weight });
    this.total += weight;
    for (const [k, e] of this.entries) {
      if (this.total <= this.budget || k === key) break;
      this.entries.delete(k);
      this.total -= e.weight;
    }
  }

  /** Returns the cached value, or loads it once however many callers ask at the same time. */
  async getOrLoad(key: K, load: () => Promise<V>): Promise<V> {
    const hit = this.get(key);
    if (hit !== undefined) return hit;
    let pending = this.loading.get(key);
    if (!pending) {
      pending = load().then(
        (v) => {
          this.loading.delete(key);
          this.set(key, v);
          return v;
        },
        (e: unknown) => {
          this.loading.delete(key);
          throw e;
        },
      );
      this.loading.set(key, pending);
    }
    return pending;
  }

  /** Bytes currently held; for tests of the bound. */
  get weight(): number {
    return this.total;
  }
}
