/**
 * One attempt at an upstream request (Envoy's UpstreamRequest): the host it went to, the handler that receives
 * its response from the host's connection pool, its per-try timers, and its accounting in the cluster's and host's stats and
 * circuit breakers. What to do with a response or a failure (forward it, retry) is the owner's decision.
 */
import type { Socket } from 'node:net';
import type { Cluster } from '../upstream/cluster.js';
import { LocalOriginFailure } from '../upstream/health/outlier-detector.js';
import { isConnectTimeout, type Host } from '../upstream/host.js';
import type { UpstreamHeaders, UpstreamRequestHead, UpstreamStreamController, UpstreamStreamHandler } from '../upstream/pool-types.js';
import type { ResourceManager } from '../upstream/resource-manager.js';
import { countUpstreamRequestAssigned, countUpstreamRequestEnd, countUpstreamRequestStart, countUpstreamResponseCode } from '../upstream/request-stats.js';
import { CLUSTER_STATS, HOST_STATS } from '../upstream/stats.js';

const CS = CLUSTER_STATS.c;
const CH = CLUSTER_STATS.h;
const HS = HOST_STATS.c;

/** The stream an attempt reports to. Calls stop once the owner abandons the attempt (`abandon`). */
export interface UpstreamRequestOwner {
  onUpstreamHeaders(attempt: UpstreamRequest, status: number, headers: UpstreamHeaders): void;
  onUpstreamData(attempt: UpstreamRequest, controller: UpstreamStreamController, chunk: Buffer): void;
  onUpstreamEnd(attempt: UpstreamRequest, trailers: UpstreamHeaders): void;
  /**
   * The upstream switched protocols (an upgrade request answered 101) and handed over its connection. The
   * attempt stays active until `complete()`.
   */
  onUpstreamUpgrade(attempt: UpstreamRequest, status: number, headers: UpstreamHeaders, socket: Socket): void;
  onUpstreamReset(attempt: UpstreamRequest, error: Error & { code?: string }): void;
  /** `per_try_timeout` (idle false) or `per_try_idle_timeout` (idle true) expired; the attempt is already abandoned. */
  onPerTryTimeout(attempt: UpstreamRequest, idle: boolean): void;
}

function onPerTryTimer(attempt: UpstreamRequest): void {
  attempt.onPerTryTimeout(false);
}

function onPerTryIdleTimer(attempt: UpstreamRequest): void {
  attempt.onPerTryTimeout(true);
}

export class UpstreamRequest implements UpstreamStreamHandler {
  controller: UpstreamStreamController | undefined;
  /** `performance.now()` at dispatch, for `x-envoy-upstream-service-time` and `upstream_rq_time`. */
  readonly startTime = performance.now();
  /** The request reached a connection (onRequestStart): a reset is no longer "before request". */
  sent = false;
  /** Response status, once headers arrived. */
  status = 0;
  /** The owner no longer wants to hear from this attempt (retried, timed out, downstream gone). */
  private abandoned = false;
  /** Dispatched and not yet written to a connection (Envoy's pending request). */
  private pending = true;
  /** Dispatched and not yet finished, one way or another. */
  private active = true;
  private downstreamComplete = false;
  private perTryTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly owner: UpstreamRequestOwner,
    readonly cluster: Cluster,
    readonly host: Host,
    private readonly resources: ResourceManager,
    private readonly perTryTimeoutMs: number,
    private readonly perTryIdleTimeoutMs: number,
  ) {
    countUpstreamRequestStart(cluster, host);
    resources.pendingRequests.inc();
    resources.requestsChanged();
  }

  dispatch(head: UpstreamRequestHead): void {
    this.host.pool().dispatch(head, this);
  }

  /** The downstream request is complete: the per-try timeout runs from here (or from the connection, if later). */
  onDownstreamComplete(): void {
    this.downstreamComplete = true;
    if (this.sent) this.armPerTryTimer();
  }

  /** Stops reporting to the owner and aborts the attempt, whatever state it is in. */
  abandon(reason: string): void {
    if (this.abandoned) return;
    this.abandoned = true;
    this.clearTimers();
    this.controller?.abort(new Error(reason));
  }

  chargeCode(status: number): void {
    countUpstreamResponseCode(this.cluster, status);
  }

  /** The same under `retry.`, for a response that was retried instead of forwarded. */
  chargeRetriedCode(status: number): void {
    const stats = this.cluster.stats;
    stats.countCode(1, status);
    stats.counters[CS['retry.upstream_rq_1xx'] + Math.floor(status / 100) - 1]++;
    stats.counters[CS['retry.upstream_rq_completed']]++;
  }

  // ---- the pool's handler ---------------------------------------------------------------------------------

  onRequestStart(controller: UpstreamStreamController): void {
    this.assigned();
    this.controller = controller;
    if (this.abandoned) {
      controller.abort(new Error('upstream request abandoned'));
      return;
    }
    this.sent = true;
    if (this.downstreamComplete) this.armPerTryTimer();
    if (this.perTryIdleTimeoutMs > 0) this.idleTimer = setTimeout(onPerTryIdleTimer, this.perTryIdleTimeoutMs, this);
  }

  onResponseStart(_controller: UpstreamStreamController, statusCode: number, headers: UpstreamHeaders): void {
    if (this.abandoned) return;
    this.status = statusCode;
    this.idleTimer?.refresh();
    const host = this.host;
    host.outlier?.onResponse(statusCode);
    if (headers['x-envoy-immediate-health-check-fail'] !== undefined) host.healthCheck?.onImmediateFailure();
    this.owner.onUpstreamHeaders(this, statusCode, headers);
  }

  onResponseData(controller: UpstreamStreamController, chunk: Buffer): void {
    if (this.abandoned) return;
    this.idleTimer?.refresh();
    this.owner.onUpstreamData(this, controller, chunk);
  }

  onResponseEnd(_controller: UpstreamStreamController, trailers: UpstreamHeaders): void {
    this.complete();
    if (!this.abandoned) this.owner.onUpstreamEnd(this, trailers);
  }

  onRequestUpgrade(_controller: UpstreamStreamController, statusCode: number, headers: UpstreamHeaders, socket: Socket): void {
    this.clearTimers();
    this.status = statusCode;
    this.host.outlier?.onResponse(statusCode);
    if (this.abandoned) {
      socket.destroy();
      this.complete();
      return;
    }
    this.owner.onUpstreamUpgrade(this, statusCode, headers, socket);
  }

  onResponseError(_controller: UpstreamStreamController, error: Error & { code?: string }): void {
    this.clearTimers();
    this.finish(false);
    // Abandoned: the proxy aborted the attempt itself (timeouts, client gone) and reported why.
    if (this.abandoned) return;
    this.host.outlier?.onLocalOriginFailure(isConnectTimeout(error) ? LocalOriginFailure.TIMEOUT : LocalOriginFailure.CONNECT_FAILED);
    this.owner.onUpstreamReset(this, error);
  }

  // ---- timers and accounting -----------------------------------------------------------------------------

  onPerTryTimeout(idle: boolean): void {
    if (idle) this.idleTimer = undefined;
    else this.perTryTimer = undefined;
    const stats = this.cluster.stats;
    stats.counters[idle ? CS.upstream_rq_per_try_idle_timeout : CS.upstream_rq_per_try_timeout]++;
    this.host.stats.counters[HS.rq_timeout]++;
    this.host.outlier?.onLocalOriginFailure(LocalOriginFailure.TIMEOUT);
    // Abandoned first: the abort reports back through onResponseError synchronously.
    this.abandon(idle ? 'per-try idle timeout' : 'per-try timeout');
    this.owner.onPerTryTimeout(this, idle);
  }

  private armPerTryTimer(): void {
    if (this.perTryTimeoutMs > 0 && this.perTryTimer === undefined && !this.abandoned) {
      this.perTryTimer = setTimeout(onPerTryTimer, this.perTryTimeoutMs, this);
    }
  }

  private clearTimers(): void {
    if (this.perTryTimer !== undefined) clearTimeout(this.perTryTimer);
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.perTryTimer = this.idleTimer = undefined;
  }

  /**
   * The response is over; or the connection an upgrade handed over has closed, which ends the attempt as it
   * ends Envoy's upstream request.
   */
  complete(): void {
    this.clearTimers();
    this.cluster.stats.histograms[CH.upstream_rq_time]!.record(performance.now() - this.startTime);
    this.finish(this.status < 500);
  }

  /** The request got a connection: no longer pending, now one of the cluster's requests. */
  private assigned(): void {
    if (!this.pending) return;
    this.pending = false;
    countUpstreamRequestAssigned(this.cluster);
    const resources = this.resources;
    resources.pendingRequests.dec();
    resources.requests.inc();
  }

  /** Ends the attempt's accounting, once, however it ended. */
  private finish(success: boolean): void {
    if (!this.active) return;
    this.active = false;
    const resources = this.resources;
    if (this.pending) {
      this.pending = false;
      countUpstreamRequestAssigned(this.cluster);
        resources.pendingRequests.dec();
    } else {
      resources.requests.dec();
    }
    resources.requestsChanged();
    countUpstreamRequestEnd(this.cluster, this.host, success);
  }
}
