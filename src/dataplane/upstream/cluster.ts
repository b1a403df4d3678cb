import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { ConfigError } from '../../config/errors.js';
import type { envoy } from '../../generated/envoy.js';
import type { StatScope, StatsStore } from '../../stats/store.js';
import type { Logger } from '../../util/logger.js';
import type { Runtime } from '../runtime/runtime.js';
import { type ClusterSettings, clusterSettings } from './cluster-settings.js';
import { compileHealthCheck, HealthChecker, type HealthCheckOwner } from './health/health-checker.js';
import { OutlierDetector } from './health/outlier-detector.js';
import { type EdsHealthStatus, Host, type HostHealthCheckConfig, type HostLocality } from './host.js';
import { compileLbPolicy, type LbPolicy, lbPolicyStats } from './lb/policy.js';
import { type LoadBalancerContext, PriorityLoadBalancer } from './load-balancer.js';
import { ClusterResources } from './resource-manager.js';
import { CLUSTER_STATS, HEALTH_CHECK_STATS, OUTLIER_DETECTION_STATS } from './stats.js';

const C = CLUSTER_STATS.c;
const G = CLUSTER_STATS.g;

type ClusterConfig = envoy.config.cluster.v3.Cluster;
type LbEndpoint = envoy.config.endpoint.v3.LbEndpoint;
type LocalityLbEndpoints = envoy.config.endpoint.v3.LocalityLbEndpoints;

/** An endpoint as configured, before DNS. */
interface EndpointSpec {
  address: string;
  port: number;
  hostname: string;
  healthy: boolean;
  edsHealthStatus: EdsHealthStatus;
  weight: number;
  priority: number;
  locality: HostLocality;
  healthCheckConfig: HostHealthCheckConfig;
}

/**
 * A cluster: its hosts (resolved for STRICT_DNS and LOGICAL_DNS, refreshed every `dns_refresh_rate`), its
 * settings and its load balancer. `chooseHost()` is on the request path; everything else is not.
 */
export class Cluster implements HealthCheckOwner {
  readonly name: string;
  readonly type: string;
  readonly settings: ClusterSettings;
  /** `cluster.<name>.` */
  readonly stats: StatScope;
  /** Circuit breakers, by routing priority. */
  readonly resources: ClusterResources;
  private readonly endpoints: EndpointSpec[];
  private hosts: Host[] = [];
  /** The addresses each endpoint resolved to last time, kept when a re-resolution fails. */
  private lastResolved: string[][] = [];
  private readonly lbPolicy: LbPolicy;
  /** `ring_hash_lb.` or `maglev_lb.` for the policies that report their structures. */
  private readonly lbStats: StatScope | undefined;
  private balancer: PriorityLoadBalancer;
  private readonly overprovisioningFactor: number;
  private readonly panicThreshold: number;
  private readonly localityWeighted: boolean;
  private refreshTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** The cluster's active health checker (`health_checks[0]`), if any. */
  private readonly healthChecker: HealthChecker | undefined;
  /** Its outlier detector (`outlier_detection`), if any; `/clusters` reads its success-rate figures. */
  readonly outlierDetector: OutlierDetector | undefined;

  constructor(
    config: ClusterConfig,
    private readonly log: Logger,
    private readonly statsStore: StatsStore,
    runtime?: Runtime,
    /** Where to report problems found compiling it, and the cluster's path in the configuration. */
    compile: { errors: ConfigError[]; path: string } = { errors: [], path: 'cluster' },
  ) {
    this.name = config.name ?? '';
    this.stats = statsStore.scope(CLUSTER_STATS, `cluster.${this.name}.`);
    this.type = config.type ?? 'STATIC';
    this.settings = clusterSettings(config, compile.path, compile.errors);
    this.resources = new ClusterResources(config.circuit_breakers, this.name, statsStore);
    this.overprovisioningFactor = config.load_assignment?.policy?.overprovisioning_factor ?? 140;
    const panicThreshold = config.common_lb_config?.healthy_panic_threshold?.value ?? 50;
    this.panicThreshold = runtime?.getInteger('upstream.healthy_panic_threshold', panicThreshold) ?? panicThreshold;
    const lbStats = lbPolicyStats(config);
    this.lbStats = lbStats && statsStore.scope(lbStats.schema, `cluster.${this.name}.${lbStats.scope}`);
    this.lbPolicy = compileLbPolicy(config, runtime, Math.random, this.lbStats);
    this.localityWeighted = config.common_lb_config?.locality_weighted_lb_config !== undefined;
    this.balancer = this.newBalancer();
    this.endpoints = (config.load_assignment?.endpoints ?? []).flatMap((locality) =>
      (locality.lb_endpoints ?? []).map((lbEndpoint) => endpointSpec(locality, lbEndpoint)),
    );
    const healthCheck = config.health_checks?.[0];
    if (healthCheck !== undefined) {
      const settings = compileHealthCheck(healthCheck, `${compile.path}.health_checks[0]`, compile.errors);
      const stats = statsStore.scope(HEALTH_CHECK_STATS, `cluster.${this.name}.health_check.`);
      this.healthChecker = new HealthChecker(settings, this.name, stats, this);
    }
    if (config.outlier_detection !== undefined) {
      const stats = statsStore.scope(OUTLIER_DETECTION_STATS, `cluster.${this.name}.outlier_detection.`);
      this.outlierDetector = new OutlierDetector(config.outlier_detection, stats, this);
    }
  }

  /**
   * Resolves DNS names once and, with active health checks, checks every host once: the returned promise
   * settles when the cluster has its first host set with known health (Envoy's cluster warming).
   */
  async initialize(): Promise<void> {
    await this.resolve();
    if (this.type !== 'STATIC' && this.endpoints.some((e) => isIP(e.address) === 0)) this.scheduleRefresh();
    this.outlierDetector?.start();
    await this.healthChecker?.start();
  }

  /**
   * Sets or clears one of a host's health flags; when that changes whether the host is healthy, load balancing
   * and the membership gauges follow. Active health checks and outlier detection change flags only through here.
   */
  setHostHealthFlag(host: Host, flag: number, on: boolean): void {
    const flags = on ? host.healthFlags | flag : host.healthFlags & ~flag;
    if (flags === host.healthFlags) return;
    const wasHealthy = host.healthy;
    host.healthFlags = flags;
    if (host.healthy !== wasHealthy && !this.closed) this.refreshLoadBalancing();
  }

  hasTraffic(): boolean {
    return this.stats.counters[C.upstream_cx_total]! > 0;
  }

  onActiveHealthCheckSuccess(host: Host): void {
    this.outlierDetector?.onActiveHealthCheckSuccess(host);
  }

  /** The host for the next request, or undefined when the cluster has none. */
  chooseHost(context?: LoadBalancerContext): Host | undefined {
    return this.balancer.choose(context);
  }

  /**
   * Rebuilds load balancing (priority loads, panic, each level's policy) from the current hosts and their
   * health. Runs after every change of membership (DNS) and must run after any change of host health.
   */
  refreshLoadBalancing(): void {
    this.balancer = this.newBalancer();
    let healthy = 0;
    let maxWeight = 0;
    for (const host of this.hosts) {
      if (host.healthy) healthy++;
      if (host.weight > maxWeight) maxWeight = host.weight;
    }
    this.stats.setGauge(G.membership_total, this.hosts.length);
    this.stats.setGauge(G.membership_healthy, healthy);
    this.stats.setGauge(G.max_host_weight, maxWeight);
  }

  /** Every current host, for admin output and tests. */
  allHosts(): readonly Host[] {
    return this.hosts;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.refreshTimer);
    const checker = this.healthChecker;
    if (checker !== undefined) {
      checker.close();
      this.statsStore.release(checker.stats);
    }
    const detector = this.outlierDetector;
    if (detector !== undefined) {
      detector.close();
      this.statsStore.release(detector.stats);
    }
    if (this.lbStats !== undefined) this.statsStore.release(this.lbStats);
    this.statsStore.release(this.stats);
    this.resources.release();
    await Promise.all(this.hosts.map((h) => h.close()));
  }

  private scheduleRefresh(): void {
    this.refreshTimer = setTimeout(() => {
      this.resolve()
        .catch((err: Error) => this.log.warn(`cluster ${this.name}: DNS refresh failed: ${err.message}`))
        .finally(() => {
          if (!this.closed) this.scheduleRefresh();
        });
    }, this.settings.dnsRefreshRateMs);
    this.refreshTimer.unref();
  }

  private async resolve(): Promise<void> {
    this.stats.counters[C.update_attempt]++;
    const resolved = await Promise.all(this.endpoints.map((e, i) => this.resolveEndpoint(e, this.lastResolved[i] ?? [])));
    this.lastResolved = resolved;
    if (this.closed) return;
    const previous = new Map(this.hosts.map((h) => [`${h.key}/${h.hostname}`, h]));
    const next: Host[] = [];
    resolved.forEach((addresses, i) => {
      const spec = this.endpoints[i]!;
      // LOGICAL_DNS keeps one host and moves its address; STRICT_DNS has a host per address.
      const chosen = this.type === 'LOGICAL_DNS' ? addresses.slice(0, 1) : addresses;
      for (const address of chosen) {
        if (this.type === 'LOGICAL_DNS') {
          const existing = this.hosts[0];
          if (existing) {
            existing.moveTo(address);
            next.push(existing);
            continue;
          }
        }
        const keyHost = new Host(address, spec.port, spec.hostname, spec.weight, spec.priority, spec.healthy, this.settings, this.stats, spec, this.resources.forPriority(false).connections);
        next.push(previous.get(`${keyHost.key}/${keyHost.hostname}`) ?? keyHost);
      }
    });
    const kept = new Set(next);
    for (const host of this.hosts) {
      if (kept.has(host)) continue;
      this.healthChecker?.removeHost(host);
      this.outlierDetector?.removeHost(host);
      void host.close();
    }
    const known = new Set(this.hosts);
    for (const host of next) {
      if (known.has(host)) continue;
      this.healthChecker?.addHost(host);
      this.outlierDetector?.addHost(host);
    }
    const changed = next.length !== this.hosts.length || next.some((host, i) => host !== this.hosts[i]);
    this.hosts = next;
    this.refreshLoadBalancing();
    this.countUpdate(changed);
  }

  /** The `update_*` and `membership_change` stats of a (re-)resolution. */
  private countUpdate(changed: boolean): void {
    const stats = this.stats;
    stats.counters[C.update_success]++;
    if (this.hosts.length === 0) stats.counters[C.update_empty]++;
    if (changed) stats.counters[C.membership_change]++;
    else stats.counters[C.update_no_rebuild]++;
  }

  private async resolveEndpoint(spec: EndpointSpec, previous: string[]): Promise<string[]> {
    if (isIP(spec.address) !== 0) return [spec.address];
    try {
      const family = this.settings.dnsLookupFamily;
      const results = await lookup(spec.address, { all: true, family: family === 'V4_ONLY' ? 4 : family === 'V6_ONLY' ? 6 : 0 });
      return orderByFamily(results, family);
    } catch (err) {
      this.log.warn(`cluster ${this.name}: cannot resolve ${spec.address}: ${(err as Error).message}`);
      // Keep serving the previous addresses of this name rather than dropping them on a transient failure.
      return previous;
    }
  }

  private newBalancer(): PriorityLoadBalancer {
    return new PriorityLoadBalancer(this.hosts, this.lbPolicy, Math.random, this.overprovisioningFactor, this.panicThreshold, {
      localityWeighted: this.localityWeighted,
      stats: this.stats,
    });
  }
}

/** The configured health status; UNKNOWN shows as HEALTHY, as in Envoy's admin output. */
function edsHealthStatus(lbEndpoint: LbEndpoint): EdsHealthStatus {
  const status = lbEndpoint.health_status ?? 'UNKNOWN';
  return status === 'UNKNOWN' ? 'HEALTHY' : status;
}

function endpointSpec(locality: LocalityLbEndpoints, lbEndpoint: LbEndpoint): EndpointSpec {
  const endpoint = lbEndpoint.endpoint;
  const socket = endpoint?.address?.socket_address ?? {};
  const address = socket.address ?? '';
  const status = edsHealthStatus(lbEndpoint);
  const healthCheck = endpoint?.health_check_config;
  return {
    address,
    port: socket.port_value ?? 0,
    // An IP endpoint has no host name unless it is given one: auto_host_rewrite then leaves Host alone.
    hostname: endpoint?.hostname || (isIP(address) === 0 ? address : ''),
    // UNHEALTHY, DRAINING and TIMEOUT fail EDS health, as in Envoy.
    healthy: status === 'HEALTHY' || status === 'DEGRADED',
    edsHealthStatus: status,
    weight: lbEndpoint.load_balancing_weight ?? 1,
    priority: locality.priority ?? 0,
    locality: {
      region: locality.locality?.region ?? '',
      zone: locality.locality?.zone ?? '',
      subZone: locality.locality?.sub_zone ?? '',
      weight: locality.load_balancing_weight ?? 0,
    },
    healthCheckConfig: {
      port: healthCheck?.port_value ?? 0,
      address: healthCheck?.address?.socket_address?.address ?? '',
      hostname: healthCheck?.hostname ?? '',
      disabled: healthCheck?.disable_active_health_check ?? false,
    },
  };
}

/** Envoy's lookup families: AUTO prefers IPv6, V4_PREFERRED prefers IPv4, ALL keeps both. */
function orderByFamily(results: { address: string; family: number }[], family: string): string[] {
  if (family === 'ALL' || results.length <= 1) return results.map((r) => r.address);
  const v4 = results.filter((r) => r.family === 4).map((r) => r.address);
  const v6 = results.filter((r) => r.family === 6).map((r) => r.address);
  if (family === 'AUTO') return v6.length ? v6 : v4;
  if (family === 'V4_PREFERRED') return v4.length ? v4 : v6;
  return [...v4, ...v6];
}

export type { ClusterConfig };
