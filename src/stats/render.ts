/**
 * `/stats` and `/stats/prometheus` output in Envoy's formats, from a snapshot (one process's, or the sum of every
 * worker's).
 */
import {
  binTotal,
  countAtMost,
  DEFAULT_BUCKETS,
  type HistogramData,
  mergeBins,
  quantile,
  type SparseBins,
  SUPPORTED_QUANTILES,
} from './histogram.js';
import { emptySnapshot, type StatsSnapshot } from './store.js';
import { extractTags, prometheusName } from './tags.js';

/**
 * Adds the snapshots of several processes together by name: counters and activity gauges are summed, gauges that
 * describe the shared configuration are taken once, histograms are merged.
 */
export function mergeSnapshots(snapshots: StatsSnapshot[]): StatsSnapshot {
  if (snapshots.length === 1) return snapshots[0]!;
  const counters = new Map<string, [string, number, boolean, boolean]>();
  const gauges = new Map<string, [string, number, boolean, boolean]>();
  const histograms = new Map<string, [string, HistogramData, boolean]>();
  const add = (into: Map<string, [string, number, boolean, boolean]>, [name, value, used, additive]: [string, number, boolean, boolean]) => {
    const existing = into.get(name);
    if (existing === undefined) into.set(name, [name, value, used, additive]);
    else into.set(name, [name, additive ? existing[1] + value : Math.max(existing[1], value), existing[2] || used, additive]);
  };
  for (const snapshot of snapshots) {
    for (const entry of snapshot.counters) add(counters, entry);
    for (const entry of snapshot.gauges) add(gauges, entry);
    for (const [name, data, used] of snapshot.histograms) {
      const existing = histograms.get(name);
      if (existing === undefined) histograms.set(name, [name, data, used]);
      else {
        const [, sum, wasUsed] = existing;
        histograms.set(name, [
          name,
          { cumulative: mergeBins(sum.cumulative, data.cumulative), interval: mergeBins(sum.interval, data.interval), sum: sum.sum + data.sum },
          wasUsed || used,
        ]);
      }
    }
  }
  const merged = emptySnapshot();
  merged.counters = [...counters.values()];
  merged.gauges = [...gauges.values()];
  merged.histograms = [...histograms.values()];
  return merged;
}

export type StatsType = 'All' | 'Counters' | 'Gauges' | 'Histograms' | 'TextReadouts';
export type HistogramBuckets = 'summary' | 'cumulative' | 'disjoint';

export interface StatsQuery {
  usedOnly: boolean;
  /** Keeps the stats whose name it matches somewhere (Envoy's `filter=`, an RE2 regex). */
  filter: { test(name: string): boolean } | undefined;
  type: StatsType;
  histogramBuckets: HistogramBuckets;
}

interface Selected {
  values: Array<[string, number]>;
  histograms: Array<[string, HistogramData]>;
}

function select(snapshot: StatsSnapshot, query: StatsQuery): Selected {
  const keep = (name: string, used: boolean) => (!query.usedOnly || used) && (query.filter === undefined || query.filter.test(name));
  const values: Array<[string, number]> = [];
  if (query.type === 'All' || query.type === 'Counters') {
    for (const [name, value, used] of snapshot.counters) if (keep(name, used)) values.push([name, value]);
  }
  if (query.type === 'All' || query.type === 'Gauges') {
    for (const [name, value, used] of snapshot.gauges) if (keep(name, used)) values.push([name, value]);
  }
  const histograms: Array<[string, HistogramData]> = [];
  if (query.type === 'All' || query.type === 'Histograms') {
    for (const [name, data, used] of snapshot.histograms) if (keep(name, used)) histograms.push([name, data]);
  }
  values.sort((a, b) => compare(a[0], b[0]));
  histograms.sort((a, b) => compare(a[0], b[0]));
  return { values, histograms };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Envoy prints doubles with up to 6 significant digits and `nan` for no value. */
function number(value: number): string {
  if (Number.isNaN(value)) return 'nan';
  return String(Number(value.toPrecision(6)));
}

function jsonNumber(value: number): number | null {
  return Number.isNaN(value) ? null : Number(value.toPrecision(6));
}

/** The bucket bounds shown for `histogram_buckets=cumulative|disjoint`. */
function bucketCounts(bins: SparseBins, disjoint: boolean): number[] {
  const cumulative = DEFAULT_BUCKETS.map((bound) => countAtMost(bins, bound));
  if (!disjoint) return cumulative;
  return cumulative.map((count, i) => count - (i === 0 ? 0 : cumulative[i - 1]!));
}

/** `/stats` text: `name: value` lines sorted by name, then the histograms. */
export function renderText(snapshot: StatsSnapshot, query: StatsQuery): string {
  const { values, histograms } = select(snapshot, query);
  const lines: string[] = [];
  for (const [name, value] of values) lines.push(`${name}: ${value}`);
  for (const [name, data] of histograms) {
    if (query.histogramBuckets === 'summary') {
      if (binTotal(data.cumulative) === 0) {
        lines.push(`${name}: No recorded values`);
        continue;
      }
      const parts = SUPPORTED_QUANTILES.map(
        (q) => `P${q}(${number(quantile(data.interval, q))},${number(quantile(data.cumulative, q))})`,
      );
      lines.push(`${name}: ${parts.join(' ')}`);
    } else {
      const disjoint = query.histogramBuckets === 'disjoint';
      const interval = bucketCounts(data.interval, disjoint);
      const cumulative = bucketCounts(data.cumulative, disjoint);
      const parts = DEFAULT_BUCKETS.map((bound, i) => `B${bound}(${interval[i]},${cumulative[i]})`);
      lines.push(`${name}: ${parts.join(' ')}`);
    }
  }
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

/** `/stats?format=json`: Envoy's layout, histograms as one trailing element. */
export function renderJson(snapshot: StatsSnapshot, query: StatsQuery): unknown {
  const { values, histograms } = select(snapshot, query);
  const stats: unknown[] = values.map(([name, value]) => ({ name, value }));
  if (histograms.length > 0 || query.type === 'Histograms') {
    if (query.histogramBuckets === 'summary') {
      stats.push({
        histograms: {
          supported_quantiles: [...SUPPORTED_QUANTILES],
          computed_quantiles: histograms.map(([name, data]) => ({
            name,
            values: SUPPORTED_QUANTILES.map((q) => ({ interval: jsonNumber(quantile(data.interval, q)), cumulative: jsonNumber(quantile(data.cumulative, q)) })),
          })),
        },
      });
    } else {
      const disjoint = query.histogramBuckets === 'disjoint';
      stats.push({
        histograms: histograms.map(([name, data]) => {
          const interval = bucketCounts(data.interval, disjoint);
          const cumulative = bucketCounts(data.cumulative, disjoint);
          return { name, buckets: DEFAULT_BUCKETS.map((upper_bound, i) => ({ upper_bound, interval: interval[i], cumulative: cumulative[i] })) };
        }),
      });
    }
  }
  return { stats };
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labels(tags: Array<[string, string]>, extra?: string): string {
  const parts = tags.map(([label, value]) => `${label}="${escapeLabel(value)}"`);
  if (extra !== undefined) parts.push(extra);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/** `/stats/prometheus`: text exposition format 0.0.4 with Envoy's names, tags and histogram buckets. */
export function renderPrometheus(snapshot: StatsSnapshot, query: Pick<StatsQuery, 'usedOnly' | 'filter'>): string {
  const keep = (name: string, used: boolean) => (!query.usedOnly || used) && (query.filter === undefined || query.filter.test(name));
  const families = new Map<string, { type: string; lines: string[] }>();
  const family = (name: string, type: string) => {
    let entry = families.get(name);
    if (entry === undefined) families.set(name, (entry = { type, lines: [] }));
    return entry;
  };
  const addValues = (entries: Array<[string, number, boolean, ...unknown[]]>, type: string) => {
    for (const [statName, value, used] of entries) {
      if (!keep(statName, used)) continue;
      const { name, tags } = extractTags(statName);
      family(prometheusName(name), type).lines.push(`${prometheusName(name)}${labels(tags)} ${value}`);
    }
  };
  addValues(snapshot.counters, 'counter');
  addValues(snapshot.gauges, 'gauge');
  for (const [statName, data, used] of snapshot.histograms) {
    if (!keep(statName, used)) continue;
    const { name, tags } = extractTags(statName);
    const metric = prometheusName(name);
    const lines = family(metric, 'histogram').lines;
    const cumulative = bucketCounts(data.cumulative, false);
    DEFAULT_BUCKETS.forEach((bound, i) => lines.push(`${metric}_bucket${labels(tags, `le="${bound}"`)} ${cumulative[i]}`));
    const count = binTotal(data.cumulative);
    lines.push(`${metric}_bucket${labels(tags, 'le="+Inf"')} ${count}`);
    lines.push(`${metric}_sum${labels(tags)} ${Number(data.sum.toPrecision(12))}`);
    lines.push(`${metric}_count${labels(tags)} ${count}`);
  }
  const out: string[] = [];
  for (const name of [...families.keys()].sort(compare)) {
    const { type, lines } = families.get(name)!;
    out.push(`# TYPE ${name} ${type}`, ...lines);
  }
  return out.length === 0 ? '' : `${out.join('\n')}\n`;
}

