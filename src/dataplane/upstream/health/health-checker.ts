/**
 * Active health checking as Envoy's `HealthCheckerImplBase` does it: one session per host, each on its own timer.
 * Hosts start FAILED_ACTIVE_HC and the first passing check makes them healthy at once; after that
 * `healthy_threshold` passes in a row are needed. A wrong answer (unexpected status) fails a host at once; network
 * failures and timeouts count towards `unhealthy_threshold`. Until the cluster has made a connection, checks run
 * at the slower `no_traffic_*` intervals.
 */
import type { envoy } from '../../../generated/envoy.js';
import type { ConfigError } from '../../../config/errors.js';
import type { StatScope } from '../../../stats/store.js';
import { HealthFlag, type Host } from '../host.js';
import type { RandomSource } from '../lb/policy.js';
import { HEALTH_CHECK_STATS } from '../stats.js';
import { compileGrpcCheck, GrpcProbe } from './grpc-probe.js';
import { compileHttpCheck, HttpProbe } from './http-probe.js';
import type { HealthFlagSink } from './outlier-detector.js';
import { type HealthProbe, ProbeOutcome, type ProbeResult } from './probe.js';
import { compileTcpCheck, TcpProbe } from './tcp-probe.js';

type HealthCheckConfig = envoy.config.core.v3.HealthCheck;

const C = HEALTH_CHECK_STATS.c;
const G = HEALTH_CHECK_STATS.g;

/** The cluster's side: health flags, whether it has had traffic, and the outlier detector to tell of passes. */
export interface HealthCheckOwner extends HealthFlagSink {
  /** Envoy's `upstream_cx_total.used()`: until then the `no_traffic_*` intervals apply. */
  hasTraffic(): boolean;
  onActiveHealthCheckSuccess(host: Host): void;
}

/** `HealthCheck` with Envoy's defaults applied, and the probe it runs. */
export interface HealthCheckSettings {
  timeoutMs: number;
  intervalMs: number;
  initialJitterMs: number;
  intervalJitterMs: number;
  intervalJitterPercent: number;
  healthyThreshold: number;
  unhealthyThreshold: number;
  unhealthyIntervalMs: number;
  unhealthyEdgeIntervalMs: number;
  healthyEdgeIntervalMs: number;
  noTrafficIntervalMs: number;
  noTrafficHealthyIntervalMs: number;
  reuseConnection: boolean;
  /** `http_health_check.host`, empty for TCP. */
  authority: string;
  createProbe(): HealthProbe;
}

/** Compiles one `health_checks[]` entry; problems go to `errors` with `path`. */
export function compileHealthCheck(config: HealthCheckConfig, path: string, errors: ConfigError[]): HealthCheckSettings {
  const intervalMs = config.interval ?? 0;
  const unhealthyIntervalMs = config.unhealthy_interval ?? intervalMs;
  const noTrafficIntervalMs = config.no_traffic_interval ?? 60_000;
  const reuseConnection = config.reuse_connection ?? true;
  let createProbe: () => HealthProbe;
  let authority = '';
  if (config.http_health_check !== undefined) {
    const spec = compileHttpCheck(config.http_health_check, `${path}.http_health_check`, errors);
    authority = spec.host;
    createProbe = () => new HttpProbe(spec, reuseConnection);
  } else if (config.grpc_health_check !== undefined) {
    const spec = compileGrpcCheck(config.grpc_health_check);
    createProbe = () => new GrpcProbe(spec, reuseConnection);
  } else if (config.tcp_health_check !== undefined) {
    const spec = compileTcpCheck(config.tcp_health_check, `${path}.tcp_health_check`, errors);
    createProbe = () => new TcpProbe(spec, reuseConnection);
  } else {
    errors.push({ code: 'invalid_value', path, message: 'a health check needs http_health_check, grpc_health_check or tcp_health_check' });
    createProbe = () => new TcpProbe({ send: Buffer.alloc(0), receive: [] }, reuseConnection);
  }
  return {
    // timeout and interval are required and positive: the schema refuses anything else.
    timeoutMs: config.timeout ?? 0,
    intervalMs,
    initialJitterMs: config.initial_jitter ?? 0,
    intervalJitterMs: config.interval_jitter ?? 0,
    intervalJitterPercent: config.interval_jitter_percent ?? 0,
    // Both thresholds are required by the API; a missing one is reported by the schema.
    healthyThreshold: config.healthy_threshold ?? 1,
    unhealthyThreshold: config.unhealthy_threshold ?? 1,
    unhealthyIntervalMs,
    unhealthyEdgeIntervalMs: config.unhealthy_edge_interval ?? unhealthyIntervalMs,
    healthyEdgeIntervalMs: config.healthy_edge_interval ?? intervalMs,
    noTrafficIntervalMs,
    noTrafficHealthyIntervalMs: config.no_traffic_healthy_interval ?? noTrafficIntervalMs,
    reuseConnection,
    authority,
    createProbe,
  };
}

const enum Transition {
  Unchanged,
  /** A result towards a threshold that was not reached yet: the edge intervals apply. */
  ChangePending,
  Changed,
}

/** What the request path may tell a host's health check: the host asked to be failed (`x-envoy-immediate-health-check-fail`). */
export interface HostHealthCheck {
  onImmediateFailure(): void;
}

/** One host's checks. */
class HealthCheckSession implements HostHealthCheck {
  private numHealthy = 0;
  private numUnhealthy = 0;
  private firstCheck = true;
  private intervalTimer: NodeJS.Timeout | undefined;
  private timeoutTimer: NodeJS.Timeout | undefined;
  private readonly probe: HealthProbe;
  private closed = false;
  /** Resolved by the first result. */
  readonly firstResult: Promise<void>;
  private settleFirst!: () => void;

  constructor(
    private readonly checker: HealthChecker,
    readonly host: Host,
  ) {
    this.probe = checker.settings.createProbe();
    this.firstResult = new Promise((resolve) => (this.settleFirst = resolve));
    if (this.isHealthy()) checker.stats.gauges[G.healthy]++;
  }

  start(): void {
    const jitter = this.checker.settings.initialJitterMs;
    this.schedule(jitter > 0 ? Math.floor(this.checker.random() * jitter) : 0);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.intervalTimer);
    clearTimeout(this.timeoutTimer);
    this.probe.close();
    if (this.isHealthy()) this.checker.stats.gauges[G.healthy]--;
    this.settleFirst();
  }

  onImmediateFailure(): void {
    this.checker.owner.setHostHealthFlag(this.host, HealthFlag.EXCLUDED_VIA_IMMEDIATE_HC_FAIL, true);
    this.setUnhealthy(true, false);
    this.checker.stats.counters[C.passive_failure]++;
  }

  private isHealthy(): boolean {
    return (this.host.healthFlags & HealthFlag.FAILED_ACTIVE_HC) === 0;
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    this.intervalTimer = setTimeout(() => this.runCheck(), delayMs);
    this.intervalTimer.unref();
  }

  private runCheck(): void {
    const checker = this.checker;
    const host = this.host;
    checker.stats.counters[C.attempt]++;
    this.timeoutTimer = setTimeout(() => this.onTimeout(), checker.settings.timeoutMs);
    this.timeoutTimer.unref();
    const config = host.healthCheckConfig;
    const target = {
      address: config.address || host.address,
      port: config.port || host.port,
      authority: config.hostname || checker.settings.authority || checker.clusterName,
    };
    this.probe.check(target, (result) => this.onResult(result));
  }

  private onTimeout(): void {
    this.probe.abort();
    this.checker.owner.setHostHealthFlag(this.host, HealthFlag.ACTIVE_HC_TIMEOUT, true);
    this.onResult({ outcome: ProbeOutcome.NETWORK_FAILURE, immediateFail: false });
  }

  private onResult(result: ProbeResult): void {
    if (this.closed) return;
    clearTimeout(this.timeoutTimer);
    const owner = this.checker.owner;
    owner.setHostHealthFlag(this.host, HealthFlag.EXCLUDED_VIA_IMMEDIATE_HC_FAIL, result.immediateFail);
    const passed = result.outcome === ProbeOutcome.HEALTHY;
    const transition = passed ? this.setHealthy() : this.setUnhealthy(result.outcome === ProbeOutcome.ACTIVE_FAILURE, result.outcome === ProbeOutcome.NETWORK_FAILURE);
    this.schedule(this.checker.nextInterval(passed, transition));
    if (passed) owner.onActiveHealthCheckSuccess(this.host);
    this.settleFirst();
  }

  private setHealthy(): Transition {
    const checker = this.checker;
    this.numUnhealthy = 0;
    let transition = Transition.Unchanged;
    checker.owner.setHostHealthFlag(this.host, HealthFlag.ACTIVE_HC_TIMEOUT, false);
    if (!this.isHealthy()) {
      // The very first result makes a host healthy at once, as in Envoy: faster startup.
      if (this.firstCheck || ++this.numHealthy === checker.settings.healthyThreshold) {
        checker.owner.setHostHealthFlag(this.host, HealthFlag.FAILED_ACTIVE_HC, false);
        checker.stats.gauges[G.healthy]++;
        transition = Transition.Changed;
      } else {
        transition = Transition.ChangePending;
      }
    }
    checker.stats.counters[C.success]++;
    this.firstCheck = false;
    return transition;
  }

  /** `immediate`: an answer that fails the host whatever the threshold (a wrong status, or the host's own request). */
  private setUnhealthy(immediate: boolean, network: boolean): Transition {
    const checker = this.checker;
    this.numHealthy = 0;
    let transition = Transition.Unchanged;
    if (this.isHealthy()) {
      if (immediate || ++this.numUnhealthy === checker.settings.unhealthyThreshold) {
        checker.owner.setHostHealthFlag(this.host, HealthFlag.FAILED_ACTIVE_HC, true);
        checker.stats.gauges[G.healthy]--;
        transition = Transition.Changed;
      } else {
        transition = Transition.ChangePending;
      }
    }
    checker.stats.counters[C.failure]++;
    if (network) checker.stats.counters[C.network_failure]++;
    this.firstCheck = false;
    return transition;
  }
}

/** A cluster's active health checker: a session per host, from `start()` until `close()`. */
export class HealthChecker {
  private readonly sessions = new Map<Host, HealthCheckSession>();
  private started = false;

  constructor(
    readonly settings: HealthCheckSettings,
    readonly clusterName: string,
    /** `cluster.<name>.health_check.` */
    readonly stats: StatScope,
    readonly owner: HealthCheckOwner,
    readonly random: RandomSource = Math.random,
  ) {}

  /** Starts checking `host` (unless its endpoint disables active checks); it is unhealthy until a check passes. */
  addHost(host: Host): void {
    if (host.healthCheckConfig.disabled || this.sessions.has(host)) return;
    // Set directly: the host is not in load balancing yet, and the cluster rebuilds it once it adds its hosts.
    host.healthFlags |= HealthFlag.FAILED_ACTIVE_HC;
    const session = new HealthCheckSession(this, host);
    this.sessions.set(host, session);
    host.healthCheck = session;
    if (this.started) session.start();
  }

  removeHost(host: Host): void {
    const session = this.sessions.get(host);
    if (session === undefined) return;
    this.sessions.delete(host);
    session.close();
    host.healthCheck = undefined;
  }

  /** Starts every session; resolves once each host has had a result (Envoy's cluster warming waits for it). */
  start(): Promise<void> {
    this.started = true;
    for (const session of this.sessions.values()) session.start();
    return Promise.all([...this.sessions.values()].map((s) => s.firstResult)).then(() => undefined);
  }

  close(): void {
    this.started = false;
    for (const host of [...this.sessions.keys()]) this.removeHost(host);
  }

  /** Envoy's `HealthCheckerImplBase::interval()`, with jitter. */
  nextInterval(passed: boolean, transition: Transition): number {
    const s = this.settings;
    let base: number;
    if (this.owner.hasTraffic()) {
      if (passed) base = transition === Transition.ChangePending ? s.healthyEdgeIntervalMs : s.intervalMs;
      else base = transition === Transition.ChangePending ? s.unhealthyEdgeIntervalMs : s.unhealthyIntervalMs;
    } else {
      base = passed && transition !== Transition.ChangePending ? s.noTrafficHealthyIntervalMs : s.noTrafficIntervalMs;
    }
    const percentJitter = Math.floor((s.intervalJitterPercent * base) / 100);
    if (percentJitter > 0) base += Math.floor(this.random() * percentJitter);
    if (s.intervalJitterMs > 0) base += Math.floor(this.random() * s.intervalJitterMs);
    return Math.max(1, base);
  }
}
