/**
 * Envoy's async HTTP client: a request of the proxy's own (an authorization check, a JWKS fetch, a rate limit
 * call over HTTP) to a named cluster, through the same machinery as proxied requests: the cluster's load
 * balancer, health and outlier state, circuit breakers, TLS and HTTP/1.1 or HTTP/2 pools, and its `upstream_rq`
 * stats. The response is collected whole (bounded by `maxResponseBytes`) and handed to the caller's callbacks.
 * Not for the request path's hot loop: each request allocates its own small state.
 */
import type { Socket } from 'node:net';
import type { HeaderMap } from '../router/header-mutation.js';
import { UpstreamRequest, type UpstreamRequestOwner } from '../router/upstream-request.js';
import type { ClusterManager } from './cluster-manager.js';
import type { UpstreamHeaders, UpstreamStreamController } from './pool-types.js';
import { classifyUpstreamFailure, countUpstreamResponseCode, UpstreamFailure } from './request-stats.js';
import { CLUSTER_STATS, HOST_STATS } from './stats.js';

const CS = CLUSTER_STATS.c;
const HS = HOST_STATS.c;

export interface AsyncHttpRequest {
  method: string;
  path: string;
  /** Sent as `host` (HTTP/1.1) or `:authority` (HTTP/2). */
  authority: string;
  headers?: HeaderMap;
  body?: Buffer;
  /** The whole request, connection included; 0 waits for ever. */
  timeoutMs: number;
  /** A longer response fails with `response_too_large`; 1 MiB by default. */
  maxResponseBytes?: number;
}

export interface AsyncHttpResponse {
  status: number;
  headers: UpstreamHeaders;
  body: Buffer;
  /** Empty when the response had none. */
  trailers: UpstreamHeaders;
}

/** Why a request got no response. */
export type AsyncFailure = 'no_cluster' | 'no_healthy_upstream' | 'overflow' | 'timeout' | 'connect_failure' | 'reset' | 'response_too_large';

export interface AsyncHttpCallbacks {
  onSuccess(response: AsyncHttpResponse): void;
  onFailure(reason: AsyncFailure, message: string): void;
}

/** A request in flight: `cancel()` gives it up, and neither callback comes afterwards. */
export interface AsyncRequestHandle {
  cancel(): void;
}

const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;
const NOTHING_TO_CANCEL: AsyncRequestHandle = { cancel() {} };

export class AsyncHttpClient {
  constructor(private readonly clusters: ClusterManager) {}

  /** Sends `request` to a host of `cluster`. A failure known at once (no cluster, no host) is reported at once. */
  send(clusterName: string, request: AsyncHttpRequest, callbacks: AsyncHttpCallbacks): AsyncRequestHandle {
    const cluster = this.clusters.get(clusterName);
    if (cluster === undefined) {
      callbacks.onFailure('no_cluster', `unknown cluster "${clusterName}"`);
      return NOTHING_TO_CANCEL;
    }
    const host = cluster.chooseHost();
    if (host === undefined) {
      cluster.stats.counters[CS.upstream_cx_none_healthy]++;
      callbacks.onFailure('no_healthy_upstream', `no healthy host in cluster "${clusterName}"`);
      return NOTHING_TO_CANCEL;
    }
    const resources = cluster.resources.forPriority(false);
    if (!resources.requests.canCreate() || (host.wouldWaitForConnection() && !resources.pendingRequests.canCreate())) {
      cluster.stats.counters[CS.upstream_rq_pending_overflow]++;
      callbacks.onFailure('overflow', `cluster "${clusterName}" is over its circuit breaker limits`);
      return NOTHING_TO_CANCEL;
    }
    const exchange = new AsyncExchange(callbacks, request.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES);
    const attempt = new UpstreamRequest(exchange, cluster, host, resources, 0, 0);
    exchange.start(attempt, request.timeoutMs);
    attempt.dispatch({ method: request.method, path: request.path, headers: flatHeaders(request), body: request.body ?? null, upgrade: undefined });
    attempt.onDownstreamComplete();
    return exchange;
  }

  /** `send` as a promise; it rejects with an Error whose `code` is the AsyncFailure. */
  fetch(clusterName: string, request: AsyncHttpRequest): Promise<AsyncHttpResponse> {
    return new Promise((resolve, reject) => {
      this.send(clusterName, request, {
        onSuccess: resolve,
        onFailure: (reason, message) => reject(Object.assign(new Error(message), { code: reason })),
      });
    });
  }
}

function flatHeaders(request: AsyncHttpRequest): string[] {
  const flat = ['host', request.authority];
  const headers = request.headers;
  if (headers === undefined) return flat;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    if (lower === 'host' || lower === ':authority') continue;
    if (Array.isArray(value)) for (const item of value) flat.push(lower, item);
    else flat.push(lower, String(value));
  }
  return flat;
}

function onExchangeTimeout(exchange: AsyncExchange): void {
  exchange.onTimeout();
}

/** One request's state: the attempt's owner, collecting its response. */
class AsyncExchange implements UpstreamRequestOwner, AsyncRequestHandle {
  private attempt: UpstreamRequest | undefined;
  private timer: NodeJS.Timeout | undefined;
  private status = 0;
  private headers: UpstreamHeaders = {};
  private readonly chunks: Buffer[] = [];
  private bytes = 0;
  /** A callback has come, or the caller cancelled: nothing more is reported. */
  private done = false;

  constructor(
    private readonly callbacks: AsyncHttpCallbacks,
    private readonly maxResponseBytes: number,
  ) {}

  start(attempt: UpstreamRequest, timeoutMs: number): void {
    this.attempt = attempt;
    if (timeoutMs > 0) this.timer = setTimeout(onExchangeTimeout, timeoutMs, this);
  }

  cancel(): void {
    if (this.done) return;
    this.attempt!.cluster.stats.counters[CS.upstream_rq_tx_reset]++;
    this.end();
    this.attempt!.abandon('async request cancelled');
  }

  onTimeout(): void {
    this.timer = undefined;
    if (this.done) return;
    const attempt = this.attempt!;
    attempt.cluster.stats.counters[CS.upstream_rq_timeout]++;
    attempt.host.stats.counters[HS.rq_timeout]++;
    if (this.status === 0) countUpstreamResponseCode(attempt.cluster, 504);
    this.fail('timeout', 'request timed out');
    attempt.abandon('async request timeout');
  }

  onUpstreamHeaders(attempt: UpstreamRequest, status: number, headers: UpstreamHeaders): void {
    this.status = status;
    this.headers = headers;
    attempt.chargeCode(status);
  }

  onUpstreamData(attempt: UpstreamRequest, _controller: UpstreamStreamController, chunk: Buffer): void {
    if (this.done) return;
    this.bytes += chunk.length;
    if (this.bytes > this.maxResponseBytes) {
      this.fail('response_too_large', `response larger than ${this.maxResponseBytes} bytes`);
      attempt.abandon('async response too large');
      return;
    }
    this.chunks.push(chunk);
  }

  onUpstreamEnd(_attempt: UpstreamRequest, trailers: UpstreamHeaders): void {
    if (this.done) return;
    this.end();
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.bytes);
    this.callbacks.onSuccess({ status: this.status, headers: this.headers, body, trailers });
  }

  onUpstreamUpgrade(attempt: UpstreamRequest, _status: number, _headers: UpstreamHeaders, socket: Socket): void {
    // Never asked for: the request carries no upgrade.
    socket.destroy();
    attempt.complete();
  }

  onUpstreamReset(attempt: UpstreamRequest, error: Error & { code?: string }): void {
    if (this.done) return;
    const stats = attempt.cluster.stats;
    const failure = classifyUpstreamFailure(error);
    if (this.status !== 0) stats.counters[CS.upstream_rq_rx_reset]++;
    else if (failure === UpstreamFailure.ProtocolError) stats.counters[CS.upstream_cx_protocol_error]++;
    else if (failure === UpstreamFailure.Reset) stats.counters[CS.upstream_rq_rx_reset]++;
    this.fail(failure === UpstreamFailure.ConnectFailure && this.status === 0 ? 'connect_failure' : 'reset', error.message);
  }

  onPerTryTimeout(): void {
    // No per-try timeout is set: the exchange's own timer covers the whole request.
  }

  private fail(reason: AsyncFailure, message: string): void {
    this.end();
    this.callbacks.onFailure(reason, message);
  }

  private end(): void {
    this.done = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
