/**
 * The accounting of one upstream request on its cluster and host, as Envoy's router counts it: total, pending
 * and active while it runs, the response code family, success or error once it ends. Shared by every kind of
 * upstream request (proxied, mirrored), so that each counts the same way.
 */
import type { Cluster } from './cluster.js';
import { type Host, isConnectFailure } from './host.js';
import { PROTOCOL_ERROR } from './pool-types.js';
import { CLUSTER_STATS, HOST_STATS } from './stats.js';

const CS = CLUSTER_STATS.c;
const CG = CLUSTER_STATS.g;
const HS = HOST_STATS.c;
const HG = HOST_STATS.g;

/** A request was dispatched: it counts as pending until it gets a connection, and active until it ends. */
export function countUpstreamRequestStart(cluster: Cluster, host: Host): void {
  const stats = cluster.stats;
  stats.counters[CS.upstream_rq_total]++;
  stats.counters[CS.upstream_rq_pending_total]++;
  stats.gauges[CG.upstream_rq_active]++;
  stats.gauges[CG.upstream_rq_pending_active]++;
  host.stats.counters[HS.rq_total]++;
  host.stats.gauges[HG.rq_active]++;
}

/** The request got a connection: no longer pending. */
export function countUpstreamRequestAssigned(cluster: Cluster): void {
  cluster.stats.gauges[CG.upstream_rq_pending_active]--;
}

/** `upstream_rq_<code>`, `upstream_rq_<N>xx` and `upstream_rq_completed`, for a response from upstream or generated for it. */
export function countUpstreamResponseCode(cluster: Cluster, status: number): void {
  const stats = cluster.stats;
  stats.countCode(0, status);
  stats.counters[CS.upstream_rq_1xx + Math.floor(status / 100) - 1]++;
  stats.counters[CS.upstream_rq_completed]++;
}

/** The request ended, one way or another (its pending state, if any, must already be counted off). */
export function countUpstreamRequestEnd(cluster: Cluster, host: Host, success: boolean): void {
  cluster.stats.gauges[CG.upstream_rq_active]--;
  host.stats.gauges[HG.rq_active]--;
  host.stats.counters[success ? HS.rq_success : HS.rq_error]++;
}

export const enum UpstreamFailure {
  ConnectFailure,
  ProtocolError,
  Reset,
}

/** What went wrong with an upstream request the connection pool reports as failed. */
export function classifyUpstreamFailure(error: Error & { code?: string }): UpstreamFailure {
  if (isConnectFailure(error)) return UpstreamFailure.ConnectFailure;
  const code = error.code ?? '';
  if (code.startsWith('HPE_') || code === PROTOCOL_ERROR) return UpstreamFailure.ProtocolError;
  return UpstreamFailure.Reset;
}

/**
 * Counts a failed upstream request: a reset once the response started; otherwise its cause, and the 503 the
 * router answers for it.
 */
export function countUpstreamFailure(cluster: Cluster, error: Error & { code?: string }, responseStarted: boolean): void {
  const stats = cluster.stats;
  if (responseStarted) {
    stats.counters[CS.upstream_rq_rx_reset]++;
    return;
  }
  const failure = classifyUpstreamFailure(error);
  if (failure === UpstreamFailure.ProtocolError) stats.counters[CS.upstream_cx_protocol_error]++;
  else if (failure === UpstreamFailure.Reset) stats.counters[CS.upstream_rq_rx_reset]++;
  countUpstreamResponseCode(cluster, 503);
}
