/**
 * Outlier detection (passive health checking) as Envoy's `DetectorImpl` does it: each host's monitor counts the
 * results the request path reports (consecutive 5xx, gateway failures, local-origin failures, success-rate
 * buckets); consecutive errors eject at once, success rate and failure percentage are judged every `interval`,
 * when ejected hosts whose time is up return too. An ejection sets FAILED_OUTLIER_CHECK through the cluster.
 */
import type { envoy } from '../../../generated/envoy.js';
import type { StatScope } from '../../../stats/store.js';
import { HealthFlag, type Host } from '../host.js';
import type { RandomSource } from '../lb/policy.js';
import { EJECTION_KINDS, OUTLIER_DETECTION_STATS } from '../stats.js';

type OutlierDetectionConfig = envoy.config.cluster.v3.OutlierDetection;

const C = OUTLIER_DETECTION_STATS.c;

/** What the request path saw go wrong before any response arrived. */
export const LocalOriginFailure = {
  /** Connect failure, connection reset or protocol error. */
  CONNECT_FAILED: 0,
  /** The route timeout fired (or connecting timed out). */
  TIMEOUT: 1,
} as const;
export type LocalOriginFailureKind = (typeof LocalOriginFailure)[keyof typeof LocalOriginFailure];

/** Envoy's `OutlierEjectionType`, as indexes into EJECTION_KINDS. */
const enum Ejection {
  Consecutive5xx,
  ConsecutiveGatewayFailure,
  ConsecutiveLocalOriginFailure,
  SuccessRate,
  LocalOriginSuccessRate,
  FailurePercentage,
  FailurePercentageLocalOrigin,
}

const ENFORCED_STAT = EJECTION_KINDS.map((kind) => C[`ejections_enforced_${kind}`]);
const DETECTED_STAT = EJECTION_KINDS.map((kind) => C[`ejections_detected_${kind}`]);

/** The cluster side of an ejection: sets or clears a host's health flag and rebuilds load balancing. */
export interface HealthFlagSink {
  setHostHealthFlag(host: Host, flag: number, on: boolean): void;
}

/** `OutlierDetection` with Envoy's defaults applied. */
export interface OutlierSettings {
  consecutive5xx: number;
  consecutiveGatewayFailure: number;
  consecutiveLocalOriginFailure: number;
  splitExternalLocalOriginErrors: boolean;
  intervalMs: number;
  baseEjectionTimeMs: number;
  maxEjectionTimeMs: number;
  maxEjectionTimeJitterMs: number;
  maxEjectionPercent: number;
  alwaysEjectOneHost: boolean;
  successRateMinimumHosts: number;
  successRateRequestVolume: number;
  /** `success_rate_stdev_factor` / 1000. */
  successRateStdevFactor: number;
  failurePercentageThreshold: number;
  failurePercentageMinimumHosts: number;
  failurePercentageRequestVolume: number;
  successfulActiveHealthCheckUnejectHost: boolean;
  /** Per Ejection: the percentage of detections that are enforced. */
  enforcing: readonly number[];
}

export function outlierSettings(config: OutlierDetectionConfig): OutlierSettings {
  const baseEjectionTimeMs = config.base_ejection_time ?? 30_000;
  return {
    consecutive5xx: config.consecutive_5xx ?? 5,
    consecutiveGatewayFailure: config.consecutive_gateway_failure ?? 5,
    consecutiveLocalOriginFailure: config.consecutive_local_origin_failure ?? 5,
    splitExternalLocalOriginErrors: config.split_external_local_origin_errors ?? false,
    intervalMs: config.interval ?? 10_000,
    baseEjectionTimeMs,
    // Envoy never ejects for less than the base time, whatever the maximum says.
    maxEjectionTimeMs: Math.max(config.max_ejection_time ?? 300_000, baseEjectionTimeMs),
    maxEjectionTimeJitterMs: config.max_ejection_time_jitter ?? 0,
    maxEjectionPercent: Math.min(100, config.max_ejection_percent ?? 10),
    alwaysEjectOneHost: config.always_eject_one_host ?? false,
    successRateMinimumHosts: config.success_rate_minimum_hosts ?? 5,
    successRateRequestVolume: config.success_rate_request_volume ?? 100,
    successRateStdevFactor: (config.success_rate_stdev_factor ?? 1900) / 1000,
    failurePercentageThreshold: config.failure_percentage_threshold ?? 85,
    failurePercentageMinimumHosts: config.failure_percentage_minimum_hosts ?? 5,
    failurePercentageRequestVolume: config.failure_percentage_request_volume ?? 50,
    successfulActiveHealthCheckUnejectHost: config.successful_active_health_check_uneject_host ?? true,
    enforcing: [
      config.enforcing_consecutive_5xx ?? 100,
      config.enforcing_consecutive_gateway_failure ?? 0,
      config.enforcing_consecutive_local_origin_failure ?? 100,
      config.enforcing_success_rate ?? 100,
      config.enforcing_local_origin_success_rate ?? 100,
      config.enforcing_failure_percentage ?? 0,
      config.enforcing_failure_percentage_local_origin ?? 0,
    ],
  };
}

/** Envoy's success-rate threshold: mean − factor × population standard deviation of the hosts' rates. */
export function successRateEjectionThreshold(rates: readonly number[], stdevFactor: number): { mean: number; threshold: number } {
  let sum = 0;
  for (const rate of rates) sum += rate;
  const mean = sum / rates.length;
  let variance = 0;
  for (const rate of rates) variance += (rate - mean) ** 2;
  variance /= rates.length;
  return { mean, threshold: mean - stdevFactor * Math.sqrt(variance) };
}

/**
 * Requests and successes of one origin (external: HTTP status codes; local: connecting and resets) in the
 * current interval, and in the last complete one, which the interval's analysis reads.
 */
class SuccessRateBuckets {
  total = 0;
  success = 0;
  lastTotal = 0;
  lastSuccess = 0;
  /** Shown by `/clusters`: the last computed rate, -1 when none was. */
  rate = -1;

  rotate(): void {
    this.lastTotal = this.total;
    this.lastSuccess = this.success;
    this.total = 0;
    this.success = 0;
  }
}

/**
 * One host's counters. The request path calls `onResponse` and `onLocalOriginFailure`: plain number updates,
 * except when a count reaches its threshold.
 */
export class HostOutlierMonitor {
  consecutive5xx = 0;
  consecutiveGatewayFailure = 0;
  consecutiveLocalOriginFailure = 0;
  readonly external = new SuccessRateBuckets();
  readonly localOrigin = new SuccessRateBuckets();
  /** Grows with each ejection (capped), shrinks by one per interval without one: ejection time = base × this. */
  ejectTimeBackoff = 0;
  lastEjectionTime = 0;
  jitterMs = 0;
  numEjections = 0;

  constructor(
    private readonly detector: OutlierDetector,
    readonly host: Host,
  ) {}

  /** A response (status line) from the host. */
  onResponse(status: number): void {
    const settings = this.detector.settings;
    // Getting a response means the connection worked: a local-origin success when the two origins are split.
    if (settings.splitExternalLocalOriginErrors) this.localOriginSuccess();
    this.putHttpResponseCode(status);
  }

  /** The request failed before a response: connect failure, reset, timeout. */
  onLocalOriginFailure(kind: LocalOriginFailureKind): void {
    if (!this.detector.settings.splitExternalLocalOriginErrors) {
      // Without the split, Envoy counts these as the 5xx a proxy would answer for them.
      this.putHttpResponseCode(kind === LocalOriginFailure.TIMEOUT ? 504 : 503);
      return;
    }
    this.localOrigin.total++;
    if (++this.consecutiveLocalOriginFailure === this.detector.settings.consecutiveLocalOriginFailure) {
      this.detector.onConsecutiveError(this, Ejection.ConsecutiveLocalOriginFailure);
    }
  }

  resetConsecutiveCounters(): void {
    this.consecutive5xx = 0;
    this.consecutiveGatewayFailure = 0;
    this.consecutiveLocalOriginFailure = 0;
  }

  private localOriginSuccess(): void {
    this.localOrigin.total++;
    this.localOrigin.success++;
    this.consecutiveLocalOriginFailure = 0;
  }

  private putHttpResponseCode(status: number): void {
    this.external.total++;
    if (status < 500 || status > 599) {
      this.external.success++;
      this.consecutive5xx = 0;
      this.consecutiveGatewayFailure = 0;
      return;
    }
    const settings = this.detector.settings;
    if (status >= 502 && status <= 504) {
      if (++this.consecutiveGatewayFailure === settings.consecutiveGatewayFailure) {
        this.detector.onConsecutiveError(this, Ejection.ConsecutiveGatewayFailure);
      }
    } else {
      this.consecutiveGatewayFailure = 0;
    }
    if (++this.consecutive5xx === settings.consecutive5xx) this.detector.onConsecutiveError(this, Ejection.Consecutive5xx);
  }
}

/** The cluster-wide figures `/clusters` prints (`outlier::success_rate_average`, ...); -1 when not computed. */
export interface OutlierSuccessRateFigures {
  successRateAverage: number;
  successRateEjectionThreshold: number;
  localOriginSuccessRateAverage: number;
  localOriginSuccessRateEjectionThreshold: number;
}

/** A cluster's outlier detector. Its timer runs from `start()` to `close()`. */
export class OutlierDetector {
  readonly settings: OutlierSettings;
  readonly figures: OutlierSuccessRateFigures = {
    successRateAverage: -1,
    successRateEjectionThreshold: -1,
    localOriginSuccessRateAverage: -1,
    localOriginSuccessRateEjectionThreshold: -1,
  };
  private readonly monitors = new Set<HostOutlierMonitor>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    config: OutlierDetectionConfig,
    /** `cluster.<name>.outlier_detection.` */
    readonly stats: StatScope,
    private readonly sink: HealthFlagSink,
    private readonly random: RandomSource = Math.random,
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.settings = outlierSettings(config);
  }

  addHost(host: Host): void {
    const monitor = new HostOutlierMonitor(this, host);
    host.outlier = monitor;
    this.monitors.add(monitor);
  }

  /** The host left the cluster: it no longer counts, nor does its ejection. */
  removeHost(host: Host): void {
    const monitor = host.outlier;
    if (monitor === undefined || !this.monitors.delete(monitor)) return;
    host.outlier = undefined;
    if (host.healthFlags & HealthFlag.FAILED_OUTLIER_CHECK) this.stats.gauges[OUTLIER_DETECTION_STATS.g.ejections_active]--;
  }

  start(): void {
    this.timer = setInterval(() => this.onInterval(this.clock()), this.settings.intervalMs);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** An active health check passed: with `successful_active_health_check_uneject_host`, an ejected host returns. */
  onActiveHealthCheckSuccess(host: Host): void {
    const monitor = host.outlier;
    if (!this.settings.successfulActiveHealthCheckUnejectHost || monitor === undefined) return;
    if (host.healthFlags & HealthFlag.FAILED_OUTLIER_CHECK) this.uneject(monitor);
  }

  /** A monitor's consecutive count reached its threshold. */
  onConsecutiveError(monitor: HostOutlierMonitor, type: Ejection): void {
    if (monitor.host.healthFlags & HealthFlag.FAILED_OUTLIER_CHECK) return;
    this.stats.counters[DETECTED_STAT[type]!]++;
    if (type === Ejection.Consecutive5xx) this.stats.counters[C.ejections_consecutive_5xx]++;
    this.eject(monitor, type, this.clock());
    // Reset so that a new bout is detected even without a success in between.
    if (type === Ejection.Consecutive5xx) monitor.consecutive5xx = 0;
    else if (type === Ejection.ConsecutiveGatewayFailure) monitor.consecutiveGatewayFailure = 0;
    else monitor.consecutiveLocalOriginFailure = 0;
  }

  /** One analysis sweep: returns hosts whose ejection time is up, then judges the last interval's rates. */
  onInterval(now: number): void {
    for (const monitor of this.monitors) {
      this.checkForUneject(monitor, now);
      monitor.external.rotate();
      monitor.localOrigin.rotate();
    }
    this.processSuccessRates(false, now);
    if (this.settings.splitExternalLocalOriginErrors) this.processSuccessRates(true, now);
  }

  private checkForUneject(monitor: HostOutlierMonitor, now: number): void {
    if (!(monitor.host.healthFlags & HealthFlag.FAILED_OUTLIER_CHECK)) {
      if (monitor.ejectTimeBackoff > 0) monitor.ejectTimeBackoff--;
      return;
    }
    const { baseEjectionTimeMs, maxEjectionTimeMs } = this.settings;
    const ejectionTime = Math.min(baseEjectionTimeMs * monitor.ejectTimeBackoff, maxEjectionTimeMs) + monitor.jitterMs;
    if (ejectionTime <= now - monitor.lastEjectionTime) this.uneject(monitor);
  }

  private uneject(monitor: HostOutlierMonitor): void {
    this.stats.gauges[OUTLIER_DETECTION_STATS.g.ejections_active]--;
    // Counters close to their threshold would otherwise eject again after very few new errors.
    monitor.resetConsecutiveCounters();
    this.sink.setHostHealthFlag(monitor.host, HealthFlag.FAILED_OUTLIER_CHECK, false);
  }

  private eject(monitor: HostOutlierMonitor, type: Ejection, now: number): void {
    const settings = this.settings;
    const active = this.stats.gauges[OUTLIER_DETECTION_STATS.g.ejections_active]!;
    // Envoy compares the share ejected before this ejection, so one host can always be ejected.
    const allowed = (100 * active) / this.monitors.size < settings.maxEjectionPercent || (settings.alwaysEjectOneHost && active === 0);
    if (!allowed) {
      this.stats.counters[C.ejections_overflow]++;
      return;
    }
    if (type === Ejection.Consecutive5xx || type === Ejection.SuccessRate) this.stats.counters[C.ejections_total]++;
    if (!(this.random() * 100 < settings.enforcing[type]!)) return;
    this.stats.gauges[OUTLIER_DETECTION_STATS.g.ejections_active]++;
    this.stats.counters[C.ejections_enforced_total]++;
    this.stats.counters[ENFORCED_STAT[type]!]++;
    if (monitor.ejectTimeBackoff * settings.baseEjectionTimeMs < settings.maxEjectionTimeMs + settings.baseEjectionTimeMs) {
      monitor.ejectTimeBackoff++;
    }
    monitor.numEjections++;
    monitor.lastEjectionTime = now;
    monitor.jitterMs = settings.maxEjectionTimeJitterMs > 0 ? Math.floor(this.random() * settings.maxEjectionTimeJitterMs) : 0;
    this.sink.setHostHealthFlag(monitor.host, HealthFlag.FAILED_OUTLIER_CHECK, true);
  }

  /** Success rate and failure percentage over the hosts not ejected, for one origin. */
  private processSuccessRates(localOrigin: boolean, now: number): void {
    const settings = this.settings;
    const figures = this.figures;
    const bucketsOf = (monitor: HostOutlierMonitor): SuccessRateBuckets => (localOrigin ? monitor.localOrigin : monitor.external);
    if (localOrigin) figures.localOriginSuccessRateAverage = figures.localOriginSuccessRateEjectionThreshold = -1;
    else figures.successRateAverage = figures.successRateEjectionThreshold = -1;
    for (const monitor of this.monitors) bucketsOf(monitor).rate = -1;
    const hostCount = this.monitors.size;
    if (hostCount < settings.successRateMinimumHosts && hostCount < settings.failurePercentageMinimumHosts) return;

    const successRateHosts: Array<[HostOutlierMonitor, number]> = [];
    const failurePercentageHosts: Array<[HostOutlierMonitor, number]> = [];
    const shownVolume = Math.min(settings.successRateRequestVolume, settings.failurePercentageRequestVolume);
    for (const monitor of this.monitors) {
      if (monitor.host.healthFlags & HealthFlag.FAILED_OUTLIER_CHECK) continue;
      const buckets = bucketsOf(monitor);
      const volume = buckets.lastTotal;
      if (volume === 0) continue;
      const rate = (buckets.lastSuccess * 100) / volume;
      if (volume >= shownVolume) buckets.rate = rate;
      if (volume >= settings.successRateRequestVolume) successRateHosts.push([monitor, rate]);
      if (volume >= settings.failurePercentageRequestVolume) failurePercentageHosts.push([monitor, rate]);
    }

    if (successRateHosts.length > 0 && successRateHosts.length >= settings.successRateMinimumHosts) {
      const { mean, threshold } = successRateEjectionThreshold(
        successRateHosts.map(([, rate]) => rate),
        settings.successRateStdevFactor,
      );
      if (localOrigin) [figures.localOriginSuccessRateAverage, figures.localOriginSuccessRateEjectionThreshold] = [mean, threshold];
      else [figures.successRateAverage, figures.successRateEjectionThreshold] = [mean, threshold];
      const type = localOrigin ? Ejection.LocalOriginSuccessRate : Ejection.SuccessRate;
      for (const [monitor, rate] of successRateHosts) {
        if (rate >= threshold) continue;
        if (!localOrigin) this.stats.counters[C.ejections_success_rate]++;
        this.detectAndEject(monitor, type, now);
      }
    }

    if (failurePercentageHosts.length > 0 && failurePercentageHosts.length >= settings.failurePercentageMinimumHosts) {
      const type = localOrigin ? Ejection.FailurePercentageLocalOrigin : Ejection.FailurePercentage;
      for (const [monitor, rate] of failurePercentageHosts) {
        if (100 - rate >= settings.failurePercentageThreshold) this.detectAndEject(monitor, type, now);
      }
    }
  }

  private detectAndEject(monitor: HostOutlierMonitor, type: Ejection, now: number): void {
    // Success rate may already have ejected the host that failure percentage now finds too.
    if (monitor.host.healthFlags & HealthFlag.FAILED_OUTLIER_CHECK) return;
    this.stats.counters[DETECTED_STAT[type]!]++;
    this.eject(monitor, type, now);
  }
}
