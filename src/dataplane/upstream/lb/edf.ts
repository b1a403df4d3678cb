/**
 * Envoy's earliest-deadline-first scheduler: every entry has a deadline `now + 1 / weight`; a pick takes the
 * earliest (ties in insertion order), advances `now` to it, and puts the entry back with its weight at that
 * moment. A binary heap over typed arrays, so a pick allocates nothing.
 */
export class EdfScheduler {
  private readonly deadline: Float64Array;
  /** Insertion counter of each heap slot, the tie breaker. */
  private readonly order: Float64Array;
  /** Entry (host index) of each heap slot. */
  private readonly entry: Int32Array;
  private now = 0;
  private inserted = 0;

  constructor(weights: ArrayLike<number>) {
    const n = weights.length;
    this.deadline = new Float64Array(n);
    this.order = new Float64Array(n);
    this.entry = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      this.deadline[i] = 1 / weights[i]!;
      this.order[i] = this.inserted++;
      this.entry[i] = i;
      this.siftUp(i);
    }
  }

  /** The entry with the earliest deadline, re-added with the weight `weightOf` gives it now. */
  pickAndAdd(weightOf: (entry: number) => number): number {
    const picked = this.entry[0]!;
    this.now = this.deadline[0]!;
    this.deadline[0] = this.now + 1 / weightOf(picked);
    this.order[0] = this.inserted++;
    this.siftDown(0);
    return picked;
  }

  private before(a: number, b: number): boolean {
    const da = this.deadline[a]!;
    const db = this.deadline[b]!;
    return da < db || (da === db && this.order[a]! < this.order[b]!);
  }

  private swap(a: number, b: number): void {
    const { deadline, order, entry } = this;
    const d = deadline[a]!;
    deadline[a] = deadline[b]!;
    deadline[b] = d;
    const o = order[a]!;
    order[a] = order[b]!;
    order[b] = o;
    const e = entry[a]!;
    entry[a] = entry[b]!;
    entry[b] = e;
  }

  private siftUp(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private siftDown(i: number): void {
    const n = this.entry.length;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) return;
      const right = left + 1;
      const child = right < n && this.before(right, left) ? right : left;
      if (!this.before(child, i)) return;
      this.swap(i, child);
      i = child;
    }
  }
}
