/**
 * The log-linear histogram behind every Portico histogram stat: bin layout, quantiles, merging the bins of
 * several processes, flush intervals against cumulative values, and the Envoy default buckets.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BIN_COUNT,
  binBounds,
  binIndex,
  binTotal,
  countAtMost,
  DEFAULT_BUCKETS,
  Histogram,
  mergeBins,
  quantile,
  type SparseBins,
  SUPPORTED_QUANTILES,
} from '../../src/stats/histogram.js';

function recorded(values: number[]): Histogram {
  const histogram = new Histogram();
  for (const value of values) histogram.record(value);
  return histogram;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** Within `percent` % of `expected`. */
function near(actual: number, expected: number, percent: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= (Math.abs(expected) * percent) / 100, `${what}: ${actual} is not within ${percent} % of ${expected}`);
}

describe('histogram bins', () => {
  it('puts every value in a bin whose bounds contain it, with two significant digits', () => {
    const values = [0.001, 0.0123, 0.5, 0.999, 1, 1.5, 9.99, 10, 42, 99.9, 100, 123.4, 999, 1000, 1001, 2500, 65_432, 3_600_000];
    for (const value of values) {
      const index = binIndex(value);
      assert.ok(index > 0 && index < BIN_COUNT, `bin of ${value}`);
      const [low, high] = binBounds(index);
      assert.ok(low <= value && value < high, `${value} not in [${low}, ${high})`);
      assert.ok((high - low) / low <= 0.1 + 1e-9, `bin of ${value} is ${(high - low) / low} wide`);
    }
  });

  it('keeps powers of ten at the start of their own decade (no log10 rounding slip)', () => {
    for (const value of [0.01, 0.1, 1, 10, 100, 1000, 10_000, 100_000, 1_000_000]) {
      assert.equal(binBounds(binIndex(value))[0], value, `bin of ${value}`);
    }
  });

  it('orders bins like the values', () => {
    let previous = -1;
    for (const value of [0, 0.002, 0.3, 1, 1.01, 1.1, 5, 50, 500, 5000, 50_000]) {
      const index = binIndex(value);
      assert.ok(index >= previous, `bin of ${value}`);
      previous = index;
    }
  });

  it('keeps zero and negative values in bin 0', () => {
    assert.equal(binIndex(0), 0);
    assert.equal(binIndex(-5), 0);
    assert.deepEqual(binBounds(0), [0, 0]);
  });

  it('has each Envoy default bucket bound as a bin edge', () => {
    for (const bound of DEFAULT_BUCKETS) assert.equal(binBounds(binIndex(bound))[0], bound, `bucket ${bound}`);
  });
});

describe('histogram quantiles', () => {
  it('finds the quantiles of 1..100 within 2 %', () => {
    const histogram = recorded(range(1, 100));
    const { cumulative } = histogram.data();
    assert.equal(binTotal(cumulative), 100);
    near(quantile(cumulative, 50), 50, 2, 'P50');
    // Integers below 100 each fill a whole bin (25 is [25, 26)): interpolation is as coarse as one bin.
    near(quantile(cumulative, 25), 25, 5, 'P25');
    near(quantile(cumulative, 75), 75, 2, 'P75');
    near(quantile(cumulative, 90), 90, 2, 'P90');
    near(quantile(cumulative, 99), 99, 2, 'P99');
    near(quantile(cumulative, 0), 1, 2, 'P0');
    // P100 is the top edge of the highest bin: 100 is in [100, 110).
    const p100 = quantile(cumulative, 100);
    assert.ok(p100 >= 100 && p100 <= 110, `P100 ${p100}`);
  });

  it('gives non-decreasing values over the supported quantiles', () => {
    const { cumulative } = recorded([3, 3, 3, 7, 12, 250, 251, 1800, 0.4, 0.4]).data();
    const values = SUPPORTED_QUANTILES.map((q) => quantile(cumulative, q));
    for (let i = 1; i < values.length; i++) assert.ok(values[i]! >= values[i - 1]!, `P${SUPPORTED_QUANTILES[i]} < P${SUPPORTED_QUANTILES[i - 1]}: ${values}`);
  });

  it('answers a constant for a histogram of one repeated value', () => {
    const { cumulative } = recorded(Array(50).fill(42)).data();
    for (const q of SUPPORTED_QUANTILES) near(quantile(cumulative, q), 42, 2.5, `P${q}`);
  });

  it('is NaN for an empty histogram', () => {
    assert.ok(Number.isNaN(quantile([], 50)));
    assert.ok(Number.isNaN(quantile(new Histogram().data().cumulative, 99)));
  });

  it('lists Envoy supported quantiles', () => {
    assert.deepEqual([...SUPPORTED_QUANTILES], [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100]);
  });
});

describe('histogram merging', () => {
  it('gives the bins of recording everything in one histogram', () => {
    const a = recorded(range(1, 50)).data();
    const b = recorded(range(51, 100)).data();
    const all = recorded(range(1, 100)).data();
    assert.deepEqual(mergeBins(a.cumulative, b.cumulative), all.cumulative);
    assert.deepEqual(mergeBins(b.cumulative, a.cumulative), all.cumulative);
    near(quantile(mergeBins(a.cumulative, b.cumulative), 50), 50, 2, 'merged P50');
  });

  it('adds the counts of shared bins and keeps bins sorted', () => {
    const a: SparseBins = [
      [binIndex(1), 2],
      [binIndex(10), 1],
    ];
    const b: SparseBins = [
      [binIndex(0.5), 4],
      [binIndex(10), 3],
      [binIndex(500), 1],
    ];
    const merged = mergeBins(a, b);
    assert.deepEqual(merged, [
      [binIndex(0.5), 4],
      [binIndex(1), 2],
      [binIndex(10), 4],
      [binIndex(500), 1],
    ]);
    assert.equal(binTotal(merged), 11);
  });

  it('does not change its inputs', () => {
    const a: SparseBins = [[binIndex(2), 1]];
    const b: SparseBins = [[binIndex(2), 5]];
    mergeBins(a, b);
    mergeBins([], b)[0]![1] = 99;
    assert.deepEqual(a, [[binIndex(2), 1]]);
    assert.deepEqual(b, [[binIndex(2), 5]]);
  });
});

describe('histogram flush intervals', () => {
  it('shows values recorded since the last flush in the cumulative only', () => {
    const histogram = recorded([1, 2, 3]);
    assert.equal(histogram.used, true);
    const data = histogram.data();
    assert.equal(binTotal(data.cumulative), 3);
    assert.equal(binTotal(data.interval), 0);
    assert.equal(data.sum, 6);
  });

  it('makes the values of a completed interval the interval, and keeps them in the cumulative', () => {
    const histogram = recorded(range(1, 10));
    histogram.flush();
    let data = histogram.data();
    assert.equal(binTotal(data.interval), 10);
    assert.equal(binTotal(data.cumulative), 10);
    near(quantile(data.interval, 50), 5, 5, 'interval P50');

    for (let i = 0; i < 5; i++) histogram.record(1000);
    data = histogram.data();
    assert.equal(binTotal(data.interval), 10, 'the interval is the last completed one');
    assert.equal(binTotal(data.cumulative), 15);

    histogram.flush();
    data = histogram.data();
    assert.equal(binTotal(data.interval), 5);
    const p50 = quantile(data.interval, 50);
    assert.ok(p50 >= 1000 && p50 <= 1100, `second interval P50 ${p50} is in the bin of 1000`);
    assert.equal(binTotal(data.cumulative), 15);
    assert.equal(data.sum, 55 + 5000);

    histogram.flush();
    data = histogram.data();
    assert.equal(binTotal(data.interval), 0, 'an interval without values is empty');
    assert.equal(binTotal(data.cumulative), 15, 'the cumulative keeps everything');
  });

  it('is unused until something is recorded, even after flushes', () => {
    const histogram = new Histogram();
    histogram.flush();
    assert.equal(histogram.used, false);
    assert.deepEqual(histogram.data(), { cumulative: [], interval: [], sum: 0 });
  });
});

describe('countAtMost against the Envoy default buckets', () => {
  it('counts the values at or below each bucket bound', () => {
    const values = [0, 0.3, 0.7, 3, 7, 30, 30, 300, 3000, 45_000, 4_000_000];
    const { cumulative } = recorded(values).data();
    const expected = DEFAULT_BUCKETS.map((bound) => values.filter((v) => v < bound).length);
    assert.deepEqual(
      DEFAULT_BUCKETS.map((bound) => countAtMost(cumulative, bound)),
      expected,
    );
    // 4 000 000 is above the last bucket: only +Inf holds it.
    assert.equal(countAtMost(cumulative, DEFAULT_BUCKETS.at(-1)!), values.length - 1);
  });

  it('counts a value just below a bound under it, and one inside the bin starting at the bound above it', () => {
    for (const bound of DEFAULT_BUCKETS) {
      const below = recorded([bound * 0.995]).data().cumulative;
      assert.equal(countAtMost(below, bound), 1, `${bound * 0.995} ≤ ${bound}`);
      const above = recorded([bound * 1.005]).data().cumulative;
      assert.equal(countAtMost(above, bound), 0, `${bound * 1.005} > ${bound}`);
    }
  });

  it('is non-decreasing over the buckets and ends at most at the total', () => {
    const { cumulative } = recorded(range(1, 2000).map((v) => v * 1.7)).data();
    const counts = DEFAULT_BUCKETS.map((bound) => countAtMost(cumulative, bound));
    for (let i = 1; i < counts.length; i++) assert.ok(counts[i]! >= counts[i - 1]!, `bucket ${DEFAULT_BUCKETS[i]}`);
    assert.ok(counts.at(-1)! <= binTotal(cumulative));
    assert.equal(counts.at(-1), 2000);
  });

  it('counts zeros in every bucket', () => {
    const { cumulative } = recorded([0, 0, 0]).data();
    for (const bound of DEFAULT_BUCKETS) assert.equal(countAtMost(cumulative, bound), 3);
  });

  it('uses Envoy default bucket bounds', () => {
    assert.deepEqual(
      [...DEFAULT_BUCKETS],
      [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000],
    );
  });
});
