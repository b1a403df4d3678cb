/**
 * A log-linear histogram with two significant digits (the layout of circllhist, which Envoy uses): 90 bins per
 * decade from 1 µs to 10^10 ms, so a quantile is known within 1 % and merging histograms from several workers is
 * adding bin counts. Recording is one logarithm and one array increment; the bins are allocated on first use, so
 * the many histograms nobody records into (idle clusters) cost a few bytes each.
 */
const MIN_EXPONENT = -3;
const DECADES = 13;
const BINS_PER_DECADE = 90;
/** Bin 0 holds zeros (and negatives); the rest are `[m·10^(e-1), (m+1)·10^(e-1))` for m = 10..99. */
export const BIN_COUNT = 1 + DECADES * BINS_PER_DECADE;

/** Envoy's supported quantiles, in percent, in `/stats` order. */
export const SUPPORTED_QUANTILES = [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100] as const;

/** Envoy's default histogram bucket bounds (`/stats/prometheus`, `histogram_buckets=cumulative`). */
export const DEFAULT_BUCKETS = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
] as const;

export function binIndex(value: number): number {
  if (!(value > 0)) return 0;
  let exponent = Math.floor(Math.log10(value));
  if (exponent < MIN_EXPONENT) return 1;
  if (exponent >= MIN_EXPONENT + DECADES) return BIN_COUNT - 1;
  let mantissa = Math.floor(value / 10 ** (exponent - 1));
  // log10 can land one below a power of ten (log10(1000) = 2.9999...): normalise.
  if (mantissa >= 100) {
    mantissa = Math.floor(mantissa / 10);
    exponent++;
  }
  if (mantissa < 10) mantissa = 10;
  return 1 + (exponent - MIN_EXPONENT) * BINS_PER_DECADE + (mantissa - 10);
}

/** Lower and upper bound of a bin. */
export function binBounds(index: number): [number, number] {
  if (index === 0) return [0, 0];
  const i = index - 1;
  const exponent = MIN_EXPONENT + Math.floor(i / BINS_PER_DECADE);
  const mantissa = 10 + (i % BINS_PER_DECADE);
  const scale = 10 ** (exponent - 1);
  // Rounded so that bounds such as 0.5 and 2500 compare exactly with the bucket list.
  return [round(mantissa * scale), round((mantissa + 1) * scale)];
}

function round(value: number): number {
  return Number(value.toPrecision(12));
}

/** Bin counts of some histogram: sparse, as `[binIndex, count]` pairs in increasing bin order. */
export type SparseBins = Array<[number, number]>;

export interface HistogramData {
  /** Everything recorded so far. */
  cumulative: SparseBins;
  /** What was recorded during the last completed flush interval. */
  interval: SparseBins;
  /** Sum of every recorded value (for `_sum`). */
  sum: number;
}

export class Histogram {
  /** Counts recorded since the last flush. */
  private pending: Float64Array | undefined;
  private pendingSum = 0;
  private merged: Float64Array | undefined;
  private mergedSum = 0;
  private lastInterval: SparseBins = [];

  record(value: number): void {
    (this.pending ??= new Float64Array(BIN_COUNT))[binIndex(value)]++;
    this.pendingSum += value;
  }

  get used(): boolean {
    return this.pending !== undefined || this.merged !== undefined;
  }

  /** Ends an interval (Envoy's stats flush): what was recorded becomes the interval and joins the cumulative. */
  flush(): void {
    const pending = this.pending;
    if (pending === undefined) {
      this.lastInterval = [];
      return;
    }
    this.lastInterval = sparse(pending);
    const merged = (this.merged ??= new Float64Array(BIN_COUNT));
    for (const [index, count] of this.lastInterval) merged[index]! += count;
    this.mergedSum += this.pendingSum;
    pending.fill(0);
    this.pendingSum = 0;
  }

  data(): HistogramData {
    const { merged, pending } = this;
    let cumulative: SparseBins;
    if (merged === undefined || pending === undefined) {
      // The common cases (never recorded into, or nothing since the last flush) need no scratch array.
      cumulative = sparse(merged ?? pending);
    } else {
      const sum = Float64Array.from(merged);
      for (let i = 0; i < BIN_COUNT; i++) sum[i]! += pending[i]!;
      cumulative = sparse(sum);
    }
    return { cumulative, interval: this.lastInterval, sum: this.mergedSum + this.pendingSum };
  }
}

function sparse(bins: Float64Array | undefined): SparseBins {
  const out: SparseBins = [];
  if (bins === undefined) return out;
  for (let i = 0; i < bins.length; i++) if (bins[i] !== 0) out.push([i, bins[i]!]);
  return out;
}

/** Adds `b` into `a` (both sorted by bin). */
export function mergeBins(a: SparseBins, b: SparseBins): SparseBins {
  if (a.length === 0) return b.map(([i, c]) => [i, c]);
  const counts = new Map<number, number>(a);
  for (const [index, count] of b) counts.set(index, (counts.get(index) ?? 0) + count);
  return [...counts.entries()].sort((x, y) => x[0] - y[0]);
}

export function binTotal(bins: SparseBins): number {
  let total = 0;
  for (const [, count] of bins) total += count;
  return total;
}

/**
 * The value below which `percent` % of the recorded values lie, interpolating linearly inside a bin (as
 * circllhist's approximate quantiles); NaN for an empty histogram.
 */
export function quantile(bins: SparseBins, percent: number): number {
  const total = binTotal(bins);
  if (total === 0) return NaN;
  const rank = (percent / 100) * total;
  let seen = 0;
  for (const [index, count] of bins) {
    if (seen + count >= rank) {
      const [low, high] = binBounds(index);
      const within = count === 0 ? 0 : (rank - seen) / count;
      return low + (high - low) * within;
    }
    seen += count;
  }
  return binBounds(bins[bins.length - 1]![0])[1];
}

/** How many values are at most `bound` (bins entirely below it; bounds are bin edges for the default buckets). */
export function countAtMost(bins: SparseBins, bound: number): number {
  let count = 0;
  for (const [index, n] of bins) {
    if (binBounds(index)[1] <= bound || (index === 0 && bound >= 0)) count += n;
    else break;
  }
  return count;
}
