/**
 * `/stats` renderers (text, JSON, Prometheus), Envoy's tag extraction, the `usedonly` / `filter` / `type` /
 * `histogram_buckets` selections, adding up the snapshots of several worker processes, and counter resets —
 * on stores built with the real component schemas.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HCM_STATS, LISTENER_HTTP_STATS } from '../../src/dataplane/http/stats.js';
import { LISTENER_STATS } from '../../src/dataplane/listener/stats.js';
import { CLUSTER_STATS } from '../../src/dataplane/upstream/stats.js';
import { binTotal, countAtMost, DEFAULT_BUCKETS, quantile, SUPPORTED_QUANTILES } from '../../src/stats/histogram.js';
import { mergeSnapshots, renderJson, renderPrometheus, renderText, type StatsQuery } from '../../src/stats/render.js';
import { defineStats, StatsStore, type StatsSnapshot } from '../../src/stats/store.js';
import { extractTags } from '../../src/stats/tags.js';

const C = CLUSTER_STATS.c;
const CG = CLUSTER_STATS.g;
const CH = CLUSTER_STATS.h;

function query(over: Partial<StatsQuery> = {}): StatsQuery {
  return { usedOnly: false, filter: undefined, type: 'All', histogramBuckets: 'summary', ...over };
}

function lines(text: string): string[] {
  assert.ok(text === '' || text.endsWith('\n'), 'output ends with a newline');
  return text === '' ? [] : text.slice(0, -1).split('\n');
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** A small schema whose whole text output can be written down. */
const TOY = defineStats({
  counters: ['b_total', 'd_total', 'unused_total'],
  gauges: ['c_active', 'unset_active'],
  histograms: ['z_time', 'y_time'],
});

function toyStore(): StatsStore {
  const store = new StatsStore();
  const toy = store.scope(TOY, 'x.');
  toy.counters[TOY.c.b_total] = 2;
  toy.counters[TOY.c.d_total] = 4;
  toy.setGauge(TOY.g.c_active, 3);
  for (const v of range(1, 100)) toy.histograms[TOY.h.y_time]!.record(v);
  return store;
}

/** What a worker serving some traffic on `listener 127.0.0.1:10000 → http ingress_http → cluster c0` holds. */
function trafficStore(cluster = 'c0'): StatsStore {
  const store = new StatsStore();
  const c = store.scope(CLUSTER_STATS, `cluster.${cluster}.`);
  c.counters[C.upstream_rq_total] = 5;
  c.counters[C.upstream_rq_2xx] = 4;
  c.counters[C.upstream_rq_5xx] = 1;
  c.counters[C.upstream_cx_total] = 2;
  for (let i = 0; i < 4; i++) c.countCode(0, 200);
  c.countCode(0, 503);
  c.gauges[CG.upstream_cx_active] = 2;
  c.setGauge(CG.membership_total, 2);
  c.setGauge(CG.membership_healthy, 2);
  for (const v of [0.3, 3, 30, 300, 3000]) c.histograms[CH.upstream_rq_time]!.record(v);
  const hcm = store.scope(HCM_STATS, 'http.ingress_http.');
  hcm.counters[HCM_STATS.c.downstream_rq_total] = 5;
  hcm.counters[HCM_STATS.c.downstream_rq_2xx] = 4;
  hcm.counters[HCM_STATS.c.downstream_rq_5xx] = 1;
  const listener = store.scope(LISTENER_STATS, 'listener.127.0.0.1_10000.');
  listener.counters[LISTENER_STATS.c.downstream_cx_total] = 3;
  const listenerHttp = store.scope(LISTENER_HTTP_STATS, 'listener.127.0.0.1_10000.http.ingress_http.');
  listenerHttp.counters[LISTENER_HTTP_STATS.c.downstream_rq_2xx] = 4;
  return store;
}

describe('/stats text', () => {
  it('prints counters and gauges as `name: value` sorted by name, then the histograms', () => {
    const out = lines(renderText(toyStore().snapshot(), query()));
    assert.deepEqual(out.slice(0, 5), ['x.b_total: 2', 'x.c_active: 3', 'x.d_total: 4', 'x.unset_active: 0', 'x.unused_total: 0']);
    assert.equal(out.length, 7);
    assert.match(out[5]!, /^x\.y_time: P0\(/);
    assert.equal(out[6], 'x.z_time: No recorded values');
  });

  it('prints a histogram as P0(interval,cumulative) ... P100(...), nan for an interval without values', () => {
    const line = lines(renderText(toyStore().snapshot(), query({ filter: /y_time/ })))[0]!;
    const match = /^x\.y_time: (.*)$/.exec(line);
    assert.ok(match, line);
    const parts = match[1]!.split(' ');
    assert.deepEqual(
      parts.map((p) => p.slice(0, p.indexOf('('))),
      SUPPORTED_QUANTILES.map((q) => `P${q}`),
    );
    const cumulative = new Map<number, number>();
    for (const [i, part] of parts.entries()) {
      const values = /^P[\d.]+\((nan|[\d.e+-]+),([\d.e+-]+)\)$/.exec(part);
      assert.ok(values, part);
      assert.equal(values[1], 'nan', `${part}: nothing was flushed yet`);
      cumulative.set(SUPPORTED_QUANTILES[i]!, Number(values[2]));
    }
    assert.ok(Math.abs(cumulative.get(50)! - 50) <= 1, `P50 ${cumulative.get(50)}`);
    assert.equal(cumulative.get(0), 1);
  });

  it('prints the interval quantiles once the histograms were flushed', () => {
    const store = toyStore();
    store.flushHistograms();
    const line = lines(renderText(store.snapshot(), query({ filter: /y_time/ })))[0]!;
    assert.match(line, /^x\.y_time: P0\(1,1\) P25\([\d.]+,[\d.]+\) P50\([\d.]+,[\d.]+\)/);
    assert.doesNotMatch(line, /nan/);
  });

  it('prints values with at most six significant digits', () => {
    const store = new StatsStore();
    const toy = store.scope(TOY, 'x.');
    toy.histograms[TOY.h.y_time]!.record(1234.5678);
    const line = lines(renderText(store.snapshot(), query({ filter: /y_time/ })))[0]!;
    for (const [, value] of line.matchAll(/,([\d.e+]+)\)/g)) assert.ok(value!.replace('.', '').length <= 6, `${value} in ${line}`);
  });

  it('selects with usedonly, filter and type', () => {
    const snapshot = toyStore().snapshot();
    assert.deepEqual(lines(renderText(snapshot, query({ usedOnly: true }))).map((l) => l.split(':')[0]), [
      'x.b_total',
      'x.c_active',
      'x.d_total',
      'x.y_time',
    ]);
    assert.deepEqual(lines(renderText(snapshot, query({ filter: /^x\.[bc]_/ }))), ['x.b_total: 2', 'x.c_active: 3']);
    assert.deepEqual(lines(renderText(snapshot, query({ filter: /nothing matches/ }))), []);
    assert.deepEqual(lines(renderText(snapshot, query({ type: 'Counters' }))), ['x.b_total: 2', 'x.d_total: 4', 'x.unused_total: 0']);
    assert.deepEqual(lines(renderText(snapshot, query({ type: 'Gauges', usedOnly: true }))), ['x.c_active: 3']);
    assert.deepEqual(lines(renderText(snapshot, query({ type: 'Histograms' }))).map((l) => l.split(':')[0]), ['x.y_time', 'x.z_time']);
    assert.deepEqual(lines(renderText(snapshot, query({ type: 'TextReadouts' }))), []);
  });

  it('prints the default buckets with histogram_buckets=cumulative and disjoint', () => {
    const values = range(1, 100);
    const expected = DEFAULT_BUCKETS.map((bound) => values.filter((v) => v < bound).length);
    const cumulative = lines(renderText(toyStore().snapshot(), query({ filter: /y_time/, histogramBuckets: 'cumulative' })))[0]!;
    assert.equal(cumulative, `x.y_time: ${DEFAULT_BUCKETS.map((b, i) => `B${b}(0,${expected[i]})`).join(' ')}`);
    const disjoint = lines(renderText(toyStore().snapshot(), query({ filter: /y_time/, histogramBuckets: 'disjoint' })))[0]!;
    const perBucket = expected.map((n, i) => n - (i === 0 ? 0 : expected[i - 1]!));
    assert.equal(disjoint, `x.y_time: ${DEFAULT_BUCKETS.map((b, i) => `B${b}(0,${perBucket[i]})`).join(' ')}`);
  });
});

describe('/stats?format=json', () => {
  it('lists {name, value} sorted, then one histograms element with supported and computed quantiles', () => {
    const json = JSON.parse(JSON.stringify(renderJson(toyStore().snapshot(), query()))) as { stats: unknown[] };
    assert.deepEqual(Object.keys(json), ['stats']);
    const values = json.stats.slice(0, -1);
    assert.deepEqual(values, [
      { name: 'x.b_total', value: 2 },
      { name: 'x.c_active', value: 3 },
      { name: 'x.d_total', value: 4 },
      { name: 'x.unset_active', value: 0 },
      { name: 'x.unused_total', value: 0 },
    ]);
    const last = json.stats.at(-1) as {
      histograms: { supported_quantiles: number[]; computed_quantiles: Array<{ name: string; values: Array<{ interval: number | null; cumulative: number | null }> }> };
    };
    assert.deepEqual(Object.keys(last), ['histograms']);
    assert.deepEqual(last.histograms.supported_quantiles, [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100]);
    const [y, z] = last.histograms.computed_quantiles;
    assert.equal(y!.name, 'x.y_time');
    assert.equal(y!.values.length, SUPPORTED_QUANTILES.length);
    assert.ok(y!.values.every((v) => v.interval === null && typeof v.cumulative === 'number'));
    assert.ok(Math.abs(y!.values[2]!.cumulative! - 50) <= 1);
    assert.equal(z!.name, 'x.z_time');
    assert.ok(z!.values.every((v) => v.interval === null && v.cumulative === null));
  });

  it('has no histograms element when only counters are asked for, and only it for type=Histograms', () => {
    const counters = renderJson(toyStore().snapshot(), query({ type: 'Counters' })) as { stats: Array<Record<string, unknown>> };
    assert.ok(counters.stats.every((s) => 'name' in s && 'value' in s));
    const histograms = renderJson(toyStore().snapshot(), query({ type: 'Histograms', usedOnly: true })) as { stats: Array<Record<string, unknown>> };
    assert.equal(histograms.stats.length, 1);
    assert.ok('histograms' in histograms.stats[0]!);
  });

  it('lists the default buckets with histogram_buckets=cumulative', () => {
    const json = renderJson(toyStore().snapshot(), query({ filter: /y_time/, histogramBuckets: 'cumulative' })) as {
      stats: Array<{ histograms: Array<{ name: string; buckets: Array<{ upper_bound: number; interval: number; cumulative: number }> }> }>;
    };
    assert.equal(json.stats.length, 1);
    const [histogram] = json.stats[0]!.histograms;
    assert.equal(histogram!.name, 'x.y_time');
    assert.deepEqual(
      histogram!.buckets.map((b) => b.upper_bound),
      [...DEFAULT_BUCKETS],
    );
    assert.deepEqual(
      histogram!.buckets.map((b) => b.cumulative),
      DEFAULT_BUCKETS.map((bound) => range(1, 100).filter((v) => v < bound).length),
    );
    assert.ok(histogram!.buckets.every((b) => b.interval === 0));
  });
});

describe('Envoy tag extraction', () => {
  const cases: Array<[string, string, Array<[string, string]>]> = [
    ['cluster.c0.upstream_rq_total', 'cluster.upstream_rq_total', [['envoy_cluster_name', 'c0']]],
    ['cluster.c0.upstream_rq_200', 'cluster.upstream_rq', [['envoy_response_code', '200'], ['envoy_cluster_name', 'c0']]],
    ['cluster.c0.upstream_rq_2xx', 'cluster.upstream_rq_xx', [['envoy_response_code_class', '2'], ['envoy_cluster_name', 'c0']]],
    ['cluster.c0.upstream_rq_time', 'cluster.upstream_rq_time', [['envoy_cluster_name', 'c0']]],
    ['cluster.c0.upstream_rq_timeout', 'cluster.upstream_rq_timeout', [['envoy_cluster_name', 'c0']]],
    [
      'http.ingress_http.downstream_rq_5xx',
      'http.downstream_rq_xx',
      [['envoy_response_code_class', '5'], ['envoy_http_conn_manager_prefix', 'ingress_http']],
    ],
    ['http.ingress_http.downstream_cx_total', 'http.downstream_cx_total', [['envoy_http_conn_manager_prefix', 'ingress_http']]],
    ['listener.127.0.0.1_10000.downstream_cx_total', 'listener.downstream_cx_total', [['envoy_listener_address', '127.0.0.1_10000']]],
    ['listener.[__1]_10000.downstream_cx_total', 'listener.downstream_cx_total', [['envoy_listener_address', '[__1]_10000']]],
    [
      'listener.0.0.0.0_10000.http.ingress_http.downstream_rq_2xx',
      'listener.http.downstream_rq_xx',
      [
        ['envoy_response_code_class', '2'],
        ['envoy_http_conn_manager_prefix', 'ingress_http'],
        ['envoy_listener_address', '0.0.0.0_10000'],
      ],
    ],
    ['cluster_manager.active_clusters', 'cluster_manager.active_clusters', []],
    ['listener_manager.listener_added', 'listener_manager.listener_added', []],
    ['server.live', 'server.live', []],
  ];
  for (const [stat, name, tags] of cases) {
    it(`${stat} → ${name}`, () => assert.deepEqual(extractTags(stat), { name, tags }));
  }
});

/** The samples of a Prometheus exposition, by family, checking the format on the way. */
function parsePrometheus(text: string): Map<string, { type: string; samples: Map<string, number> }> {
  const families = new Map<string, { type: string; samples: Map<string, number> }>();
  let current: { name: string; type: string; samples: Map<string, number> } | undefined;
  for (const line of lines(text)) {
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$/.exec(line);
    if (type) {
      assert.ok(!families.has(type[1]!), `family ${type[1]} has two TYPE lines`);
      current = { name: type[1]!, type: type[2]!, samples: new Map() };
      families.set(current.name, current);
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[\d.e+]+|NaN|\+Inf)$/.exec(line);
    assert.ok(sample, `not a sample line: ${line}`);
    assert.ok(current, `sample before any TYPE: ${line}`);
    const metric = sample[1]!;
    const suffixes = current.type === 'histogram' ? ['_bucket', '_sum', '_count'] : [''];
    assert.ok(suffixes.some((s) => metric === current!.name + s), `${metric} under family ${current.name}`);
    const key = metric + (sample[2] ?? '');
    assert.ok(!current.samples.has(key), `duplicate sample ${key}`);
    current.samples.set(key, Number(sample[3]));
  }
  return families;
}

describe('/stats/prometheus', () => {
  const text = renderPrometheus(trafficStore().snapshot(), { usedOnly: false, filter: undefined });
  const families = parsePrometheus(text);
  const sample = (key: string) => {
    for (const family of families.values()) if (family.samples.has(key)) return family.samples.get(key);
    return undefined;
  };

  it('pulls Envoy tags out as labels, as in Envoy examples', () => {
    assert.equal(sample('envoy_cluster_upstream_rq_total{envoy_cluster_name="c0"}'), 5);
    assert.equal(sample('envoy_cluster_upstream_rq_xx{envoy_response_code_class="2",envoy_cluster_name="c0"}'), 4);
    assert.equal(sample('envoy_cluster_upstream_rq_xx{envoy_response_code_class="5",envoy_cluster_name="c0"}'), 1);
    assert.equal(sample('envoy_cluster_upstream_rq{envoy_response_code="200",envoy_cluster_name="c0"}'), 4);
    assert.equal(sample('envoy_cluster_upstream_rq{envoy_response_code="503",envoy_cluster_name="c0"}'), 1);
    assert.equal(sample('envoy_http_downstream_rq_xx{envoy_response_code_class="5",envoy_http_conn_manager_prefix="ingress_http"}'), 1);
    assert.equal(sample('envoy_http_downstream_rq_xx{envoy_response_code_class="2",envoy_http_conn_manager_prefix="ingress_http"}'), 4);
    assert.equal(sample('envoy_listener_downstream_cx_total{envoy_listener_address="127.0.0.1_10000"}'), 3);
    assert.equal(
      sample(
        'envoy_listener_http_downstream_rq_xx{envoy_response_code_class="2",envoy_http_conn_manager_prefix="ingress_http",envoy_listener_address="127.0.0.1_10000"}',
      ),
      4,
    );
    assert.equal(sample('envoy_cluster_manager_active_clusters'), undefined, 'no cluster manager in this store');
  });

  it('types counters, gauges and histograms, one TYPE line per family', () => {
    assert.equal(families.get('envoy_cluster_upstream_rq_total')?.type, 'counter');
    assert.equal(families.get('envoy_cluster_upstream_rq')?.type, 'counter');
    assert.equal(families.get('envoy_cluster_upstream_rq_xx')?.type, 'counter');
    assert.equal(families.get('envoy_cluster_upstream_cx_active')?.type, 'gauge');
    assert.equal(families.get('envoy_cluster_membership_total')?.type, 'gauge');
    assert.equal(families.get('envoy_cluster_upstream_rq_time')?.type, 'histogram');
    assert.equal(families.get('envoy_http_downstream_rq_time')?.type, 'histogram');
    assert.equal(sample('envoy_cluster_membership_total{envoy_cluster_name="c0"}'), 2);
    // The 5 classes of each xx family share one TYPE line.
    assert.equal(families.get('envoy_cluster_upstream_rq_xx')?.samples.size, 5);
    assert.equal(text.match(/^# TYPE envoy_cluster_upstream_rq_xx /gm)?.length, 1);
  });

  it('writes histograms as cumulative _bucket{le=...}, +Inf, _sum and _count', () => {
    const histogram = families.get('envoy_cluster_upstream_rq_time')!;
    const label = 'envoy_cluster_name="c0"';
    const buckets = DEFAULT_BUCKETS.map((bound) => histogram.samples.get(`envoy_cluster_upstream_rq_time_bucket{${label},le="${bound}"}`));
    const values = [0.3, 3, 30, 300, 3000];
    assert.deepEqual(
      buckets,
      DEFAULT_BUCKETS.map((bound) => values.filter((v) => v < bound).length),
    );
    assert.equal(histogram.samples.get(`envoy_cluster_upstream_rq_time_bucket{${label},le="+Inf"}`), 5);
    assert.equal(histogram.samples.get(`envoy_cluster_upstream_rq_time_count{${label}}`), 5);
    assert.ok(Math.abs(histogram.samples.get(`envoy_cluster_upstream_rq_time_sum{${label}}`)! - 3333.3) < 1e-6);
    assert.equal(histogram.samples.size, DEFAULT_BUCKETS.length + 3);
    // An unused histogram still has its (empty) buckets.
    assert.equal(families.get('envoy_cluster_upstream_cx_connect_ms')?.samples.get(`envoy_cluster_upstream_cx_connect_ms_count{${label}}`), 0);
  });

  it('keeps the buckets order: each `le` is at least the previous one', () => {
    for (const [name, family] of families) {
      if (family.type !== 'histogram') continue;
      const byLabels = new Map<string, number[]>();
      for (const [key, value] of family.samples) {
        const m = /^.*_bucket\{(.*)le="[^"]+"\}$/.exec(key);
        if (!m) continue;
        byLabels.set(m[1]!, [...(byLabels.get(m[1]!) ?? []), value]);
      }
      for (const [labels, counts] of byLabels) {
        assert.equal(counts.length, DEFAULT_BUCKETS.length + 1, `${name}{${labels}}`);
        for (let i = 1; i < counts.length; i++) assert.ok(counts[i]! >= counts[i - 1]!, `${name}{${labels}} bucket ${i}`);
      }
    }
  });

  it('groups the same metric of several clusters under one family', () => {
    const merged = mergeSnapshots([trafficStore('c0').snapshot(), trafficStore('c1').snapshot()]);
    const out = renderPrometheus(merged, { usedOnly: true, filter: undefined });
    const parsed = parsePrometheus(out);
    const total = parsed.get('envoy_cluster_upstream_rq_total')!;
    assert.deepEqual(
      [...total.samples.entries()],
      [
        ['envoy_cluster_upstream_rq_total{envoy_cluster_name="c0"}', 5],
        ['envoy_cluster_upstream_rq_total{envoy_cluster_name="c1"}', 5],
      ],
    );
    // The two workers both count the shared HCM and listener: summed.
    assert.equal(parsed.get('envoy_http_downstream_rq_total')!.samples.get('envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="ingress_http"}'), 10);
  });

  it('applies usedonly and filter to Envoy stat names', () => {
    const used = parsePrometheus(renderPrometheus(trafficStore().snapshot(), { usedOnly: true, filter: undefined }));
    assert.ok(used.has('envoy_cluster_upstream_rq_total'));
    assert.ok(!used.has('envoy_cluster_upstream_rq_timeout'), 'a counter never incremented is not used');
    assert.ok(!used.has('envoy_cluster_upstream_cx_connect_ms'), 'a histogram never recorded into is not used');
    const filtered = parsePrometheus(renderPrometheus(trafficStore().snapshot(), { usedOnly: false, filter: /^cluster\.c0\.upstream_rq_\d/ }));
    assert.deepEqual([...filtered.keys()].sort(), ['envoy_cluster_upstream_rq', 'envoy_cluster_upstream_rq_xx']);
    assert.equal(renderPrometheus(trafficStore().snapshot(), { usedOnly: false, filter: /nothing/ }), '');
  });

  it('prints stats without tags without labels', () => {
    const store = new StatsStore();
    const server = store.scope(defineStats({ counters: ['worker_restarts'], gauges: ['live'], histograms: [] }), 'server.');
    server.setGauge(0, 1);
    assert.equal(
      renderPrometheus(store.snapshot(), { usedOnly: false, filter: undefined }),
      '# TYPE envoy_server_live gauge\nenvoy_server_live 1\n# TYPE envoy_server_worker_restarts counter\nenvoy_server_worker_restarts 0\n',
    );
  });
});

describe('mergeSnapshots', () => {
  function worker(opts: { total: number; codes: number[]; active: number; membership: number; times: number[]; extraCluster?: boolean }): StatsSnapshot {
    const store = new StatsStore();
    const c = store.scope(CLUSTER_STATS, 'cluster.c0.');
    c.counters[C.upstream_rq_total] = opts.total;
    for (const code of opts.codes) c.countCode(0, code);
    c.gauges[CG.upstream_cx_active] = opts.active;
    c.setGauge(CG.membership_total, opts.membership);
    for (const t of opts.times) c.histograms[CH.upstream_rq_time]!.record(t);
    if (opts.extraCluster) store.scope(CLUSTER_STATS, 'cluster.only_here.').counters[C.upstream_rq_total] = 7;
    return store.snapshot();
  }

  const a = worker({ total: 3, codes: [200, 200, 200], active: 2, membership: 2, times: range(1, 50) });
  const b = worker({ total: 4, codes: [200, 200, 503, 503], active: 1, membership: 2, times: range(51, 100), extraCluster: true });
  const merged = mergeSnapshots([a, b]);
  const value = (name: string) => [...merged.counters, ...merged.gauges].find((s) => s[0] === name)?.[1];

  it('sums counters, including the code counters of either process', () => {
    assert.equal(value('cluster.c0.upstream_rq_total'), 7);
    assert.equal(value('cluster.c0.upstream_rq_200'), 5);
    assert.equal(value('cluster.c0.upstream_rq_503'), 2);
    assert.equal(value('cluster.only_here.upstream_rq_total'), 7);
    assert.equal(merged.counters.filter((s) => s[0] === 'cluster.c0.upstream_rq_total').length, 1, 'one entry per name');
  });

  it('sums activity gauges and takes configuration gauges once', () => {
    assert.equal(value('cluster.c0.upstream_cx_active'), 3);
    assert.equal(value('cluster.c0.membership_total'), 2);
    const three = mergeSnapshots([a, a, a]);
    assert.equal(three.gauges.find((g) => g[0] === 'cluster.c0.membership_total')?.[1], 2);
    assert.equal(three.gauges.find((g) => g[0] === 'cluster.c0.upstream_cx_active')?.[1], 6);
  });

  it('sums process gauges such as server memory', () => {
    const processA: StatsSnapshot = { counters: [], gauges: [['server.memory_allocated', 100, true, true]], histograms: [] };
    const processB: StatsSnapshot = { counters: [], gauges: [['server.memory_allocated', 50, true, true]], histograms: [] };
    assert.deepEqual(mergeSnapshots([processA, processB]).gauges, [['server.memory_allocated', 150, true, true]]);
  });

  it('merges histogram bins and sums', () => {
    const histogram = merged.histograms.find((h) => h[0] === 'cluster.c0.upstream_rq_time')!;
    assert.equal(binTotal(histogram[1].cumulative), 100);
    assert.equal(histogram[1].sum, 5050);
    assert.ok(Math.abs(quantile(histogram[1].cumulative, 50) - 50) <= 1);
    assert.equal(histogram[2], true);
    assert.equal(countAtMost(histogram[1].cumulative, 50), 49);
  });

  it('marks a stat used when any process used it', () => {
    const used = (s: StatsSnapshot, name: string) => s.counters.find((c) => c[0] === name)?.[2];
    assert.equal(used(a, 'cluster.c0.upstream_rq_503'), undefined);
    assert.equal(used(merged, 'cluster.c0.upstream_rq_503'), true);
    const idle = worker({ total: 0, codes: [], active: 0, membership: 2, times: [] });
    assert.equal(used(idle, 'cluster.c0.upstream_rq_total'), false);
    assert.equal(used(mergeSnapshots([idle, a]), 'cluster.c0.upstream_rq_total'), true);
    assert.match(renderText(mergeSnapshots([idle, a]), query({ usedOnly: true })), /^cluster\.c0\.upstream_rq_total: 3$/m);
  });

  it('renders the sum in every format', () => {
    assert.match(renderText(merged, query()), /^cluster\.c0\.upstream_rq_200: 5$/m);
    const json = renderJson(merged, query()) as { stats: Array<{ name?: string; value?: number }> };
    assert.deepEqual(json.stats.find((s) => s.name === 'cluster.c0.upstream_rq_total'), { name: 'cluster.c0.upstream_rq_total', value: 7 });
    assert.match(renderPrometheus(merged, { usedOnly: false, filter: undefined }), /^envoy_cluster_upstream_rq\{envoy_response_code="503",envoy_cluster_name="c0"\} 2$/m);
  });
});

describe('resetting counters', () => {
  it('zeroes counters and keeps the used ones listed by usedonly', () => {
    const store = trafficStore();
    store.resetCounters();
    const text = renderText(store.snapshot(), query({ usedOnly: true }));
    assert.match(text, /^cluster\.c0\.upstream_rq_total: 0$/m);
    assert.match(text, /^cluster\.c0\.upstream_rq_2xx: 0$/m);
    assert.match(text, /^cluster\.c0\.upstream_rq_200: 0$/m);
    assert.match(text, /^cluster\.c0\.upstream_rq_503: 0$/m);
    assert.match(text, /^http\.ingress_http\.downstream_rq_5xx: 0$/m);
    assert.match(text, /^listener\.127\.0\.0\.1_10000\.downstream_cx_total: 0$/m);
    assert.doesNotMatch(text, /upstream_rq_timeout/, 'a counter never used stays unlisted');
    assert.doesNotMatch(text, /upstream_rq_404/, 'a code never counted stays unlisted');
    const counters = lines(renderText(store.snapshot(), query({ type: 'Counters', usedOnly: true })));
    assert.ok(counters.length >= 8, counters.join('\n'));
    assert.deepEqual(counters.filter((l) => !l.endsWith(': 0')), []);
  });

  it('leaves gauges and histograms alone', () => {
    const store = trafficStore();
    store.resetCounters();
    const text = renderText(store.snapshot(), query({ usedOnly: true }));
    assert.match(text, /^cluster\.c0\.upstream_cx_active: 2$/m);
    assert.match(text, /^cluster\.c0\.membership_total: 2$/m);
    const histogram = store.snapshot().histograms.find((h) => h[0] === 'cluster.c0.upstream_rq_time')!;
    assert.equal(binTotal(histogram[1].cumulative), 5);
  });

  it('counts again from zero after a reset, across processes too', () => {
    const worker = () => {
      const store = new StatsStore();
      const c = store.scope(CLUSTER_STATS, 'cluster.c0.');
      c.counters[C.upstream_rq_total] = 3;
      c.countCode(0, 200);
      return { store, c };
    };
    const a = worker();
    const b = worker();
    // A process that never counted (a restarted worker): its stats are unused.
    const fresh = new StatsStore();
    fresh.scope(CLUSTER_STATS, 'cluster.c0.');
    a.store.resetCounters();
    b.store.resetCounters();
    a.c.counters[C.upstream_rq_total]++;
    const text = renderText(mergeSnapshots([a.store.snapshot(), b.store.snapshot(), fresh.snapshot()]), query({ usedOnly: true }));
    assert.match(text, /^cluster\.c0\.upstream_rq_total: 1$/m);
    assert.match(text, /^cluster\.c0\.upstream_rq_200: 0$/m);
    a.c.countCode(0, 200);
    assert.match(renderText(a.store.snapshot(), query({ usedOnly: true })), /^cluster\.c0\.upstream_rq_200: 1$/m);
  });

  it('ignores status codes outside 100..599', () => {
    const store = new StatsStore();
    const c = store.scope(CLUSTER_STATS, 'cluster.c0.');
    c.countCode(0, 99);
    c.countCode(0, 600);
    c.countCode(0, 404);
    assert.deepEqual(
      store.snapshot().counters.filter((s) => /upstream_rq_\d{2,}$/.test(s[0])).map((s) => s[0]),
      ['cluster.c0.upstream_rq_404'],
    );
  });
});
