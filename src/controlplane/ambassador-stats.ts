/**
 * `GET /ambassador/stats` as Ambassador 0.x answered it: per Mapping, the health and outcome counts of its
 * clusters (all of them, summed: one Mapping may own several), the same under `services` (the seed's name for
 * them), and the whole stats tree under `envoy`.
 */
import type { StatsSnapshot } from '../stats/store.js';

interface MappingStats {
  healthy_members: number;
  total_members: number;
  healthy_percent: number;
  update_attempts: number;
  update_successes: number;
  update_percent: number;
  upstream_ok: number;
  upstream_4xx: number;
  upstream_5xx: number;
  upstream_bad: number;
}

function percent(part: number, whole: number): number {
  return whole === 0 ? 0 : Math.round((100 * part) / whole);
}

/** `a.b.c: 1` → `{a: {b: {c: 1}}}`; a name that is also a prefix of others keeps its value under `""`. */
function statsTree(values: Map<string, number>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [name, value] of values) {
    const parts = name.split('.');
    let node = root;
    for (const part of parts.slice(0, -1)) {
      const next = node[part];
      if (typeof next === 'object' && next !== null) node = next as Record<string, unknown>;
      else node = node[part] = next === undefined ? {} : { '': next };
    }
    const last = parts.at(-1)!;
    if (typeof node[last] === 'object' && node[last] !== null) (node[last] as Record<string, unknown>)[''] = value;
    else node[last] = value;
  }
  return root;
}

/**
 * @param clustersOf the clusters of each Mapping, keyed `Mapping/<name>` as the translator reports them.
 */
export function ambassadorStats(snapshot: StatsSnapshot, clustersOf: ReadonlyMap<string, readonly string[]>, updatedAt: number): unknown {
  const values = new Map<string, number>();
  for (const [name, value] of snapshot.counters) values.set(name, value);
  for (const [name, value] of snapshot.gauges) values.set(name, value);
  const stat = (cluster: string, name: string) => values.get(`cluster.${cluster}.${name}`) ?? 0;
  const mappings: Record<string, MappingStats> = {};
  for (const [resource, clusters] of [...clustersOf].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (!resource.startsWith('Mapping/')) continue;
    const sum = (name: string) => clusters.reduce((total, cluster) => total + stat(cluster, name), 0);
    const healthy = sum('membership_healthy');
    const total = sum('membership_total');
    const attempts = sum('update_attempt');
    const successes = sum('update_success');
    const upstream4xx = sum('upstream_rq_4xx');
    const upstream5xx = sum('upstream_rq_5xx');
    mappings[resource.slice('Mapping/'.length)] = {
      healthy_members: healthy,
      total_members: total,
      healthy_percent: percent(healthy, total),
      update_attempts: attempts,
      update_successes: successes,
      update_percent: percent(successes, attempts),
      upstream_ok: sum('upstream_rq_2xx'),
      upstream_4xx: upstream4xx,
      upstream_5xx: upstream5xx,
      upstream_bad: upstream4xx + upstream5xx,
    };
  }
  const seconds = updatedAt / 1000;
  return { last_update: seconds, last_attempt: seconds, update_errors: 0, mappings, services: mappings, envoy: statsTree(values) };
}
