/**
 * Circuit breakers as Envoy's ResourceManagerImpl: per cluster and routing priority (DEFAULT, HIGH), counters of
 * open connections, pending requests, requests and retries against their `thresholds`. Counting is a field
 * increment; the `circuit_breakers.<priority>.*_open` gauges (and `remaining_*` with `track_remaining`) follow
 * every change.
 */
import type { envoy } from '../../generated/envoy.js';
import { defineStats, type StatScope, type StatsStore } from '../../stats/store.js';

type Thresholds = envoy.config.cluster.v3.CircuitBreakers.Thresholds;

export const CIRCUIT_BREAKER_STATS = defineStats({
  counters: [],
  gauges: ['cx_open', 'cx_pool_open', 'rq_pending_open', 'rq_open', 'rq_retry_open'],
  histograms: [],
});

/** With `track_remaining`, the same scope also holds how much of each resource is left. */
export const CIRCUIT_BREAKER_REMAINING_STATS = defineStats({
  counters: [],
  gauges: ['cx_open', 'cx_pool_open', 'rq_pending_open', 'rq_open', 'rq_retry_open', 'remaining_cx', 'remaining_pending', 'remaining_rq', 'remaining_retries', 'remaining_cx_pools'],
  histograms: [],
});

const G = CIRCUIT_BREAKER_REMAINING_STATS.g;

/** Envoy's unlimited `max_connection_pools`. */
const UNLIMITED = 0xffff_ffff;

/** One limited resource; `openGauge` and `remainingGauge` index the priority's stat scope (-1: none). */
export class Resource {
  count = 0;

  constructor(
    private readonly limit: number,
    private readonly stats: StatScope,
    private readonly openGauge: number,
    private readonly remainingGauge: number,
  ) {}

  max(): number {
    return this.limit;
  }

  canCreate(): boolean {
    return this.count < this.max();
  }

  inc(): void {
    this.count++;
    this.update();
  }

  dec(): void {
    this.count--;
    this.update();
  }

  /** Refreshes the gauges (also when the limit moves, as a retry budget's does). */
  update(): void {
    const max = this.max();
    this.stats.setGauge(this.openGauge, this.count >= max ? 1 : 0);
    if (this.remainingGauge >= 0) this.stats.setGauge(this.remainingGauge, Math.max(0, max - this.count));
  }
}

/**
 * Retries under a `retry_budget`: at most `budget_percent` of the requests active and pending, and never fewer
 * than `min_retry_concurrency`.
 */
class RetryBudget extends Resource {
  constructor(
    private readonly percent: number,
    private readonly minConcurrency: number,
    private readonly manager: ResourceManager,
    stats: StatScope,
    openGauge: number,
    remainingGauge: number,
  ) {
    super(0, stats, openGauge, remainingGauge);
  }

  override max(): number {
    return retryBudgetMax(this.percent, this.minConcurrency, this.manager.requests.count + this.manager.pendingRequests.count);
  }
}

/** Envoy's retry budget: `max(budget_percent % × active, min_retry_concurrency)`. */
export function retryBudgetMax(percent: number, minConcurrency: number, active: number): number {
  return Math.max(Math.floor((percent / 100) * active), minConcurrency);
}

/** The resources of one cluster at one routing priority. */
export class ResourceManager {
  readonly connections: Resource;
  readonly pendingRequests: Resource;
  readonly requests: Resource;
  readonly retries: Resource;
  /** Not limited (`max_connection_pools` is refused); kept for its gauges. */
  readonly connectionPools: Resource;
  private readonly budget: boolean;

  constructor(
    thresholds: Thresholds | undefined,
    /** `cluster.<name>.circuit_breakers.<default|high>.` */
    readonly stats: StatScope,
  ) {
    const track = thresholds?.track_remaining === true;
    const remaining = (index: number) => (track ? index : -1);
    this.connections = new Resource(thresholds?.max_connections ?? 1024, stats, G.cx_open, remaining(G.remaining_cx));
    this.pendingRequests = new Resource(thresholds?.max_pending_requests ?? 1024, stats, G.rq_pending_open, remaining(G.remaining_pending));
    this.requests = new Resource(thresholds?.max_requests ?? 1024, stats, G.rq_open, remaining(G.remaining_rq));
    this.connectionPools = new Resource(UNLIMITED, stats, G.cx_pool_open, remaining(G.remaining_cx_pools));
    const budget = thresholds?.retry_budget;
    this.budget = budget !== undefined;
    this.retries =
      budget === undefined
        ? new Resource(thresholds?.max_retries ?? 3, stats, G.rq_retry_open, remaining(G.remaining_retries))
        : new RetryBudget(budget.budget_percent?.value ?? 20, budget.min_retry_concurrency ?? 3, this, stats, G.rq_retry_open, remaining(G.remaining_retries));
    for (const resource of [this.connections, this.pendingRequests, this.requests, this.connectionPools, this.retries]) resource.update();
  }

  /** The limits as `/clusters` shows them (a retry budget's current one). */
  limits(): Array<[string, number]> {
    return [
      ['max_connections', this.connections.max()],
      ['max_pending_requests', this.pendingRequests.max()],
      ['max_requests', this.requests.max()],
      ['max_retries', this.retries.max()],
    ];
  }

  /** Request counts moved: a retry budget's limit moves with them. */
  requestsChanged(): void {
    if (this.budget) this.retries.update();
  }
}

/** The resource managers of a cluster, by routing priority. */
export class ClusterResources {
  readonly byPriority: readonly [ResourceManager, ResourceManager];
  /** `per_host_thresholds[].max_connections`: the most connections one host's pool opens. */
  readonly maxConnectionsPerHost: number;
  private readonly scopes: StatScope[];

  constructor(config: envoy.config.cluster.v3.CircuitBreakers | undefined, clusterName: string, private readonly store: StatsStore) {
    const thresholds = config?.thresholds ?? [];
    const find = (priority: string) => thresholds.find((t) => (t.priority ?? 'DEFAULT') === priority);
    this.scopes = [];
    const manager = (priority: string, label: string) => {
      const t = find(priority);
      const schema = t?.track_remaining ? CIRCUIT_BREAKER_REMAINING_STATS : CIRCUIT_BREAKER_STATS;
      const scope = store.scope(schema, `cluster.${clusterName}.circuit_breakers.${label}.`);
      this.scopes.push(scope);
      return new ResourceManager(t, scope);
    };
    this.byPriority = [manager('DEFAULT', 'default'), manager('HIGH', 'high')];
    const perHost = (config?.per_host_thresholds ?? []).find((t) => (t.priority ?? 'DEFAULT') === 'DEFAULT')?.max_connections;
    this.maxConnectionsPerHost = perHost ?? UNLIMITED;
  }

  /** DEFAULT (0) or HIGH (1). */
  forPriority(high: boolean): ResourceManager {
    return this.byPriority[high ? 1 : 0];
  }

  release(): void {
    for (const scope of this.scopes) this.store.release(scope);
  }
}
