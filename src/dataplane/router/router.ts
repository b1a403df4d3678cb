/**
 * `envoy.filters.http.router`, the terminal HTTP filter: answers what the route answers itself (direct
 * responses, redirects, `require_tls`), and forwards the rest. Forwarding is one UpstreamRequest per attempt,
 * whose outcome the router passes downstream (through the encoder filters) or retries; it owns the route timeout,
 * retries and their back-off, request mirrors, the body kept for retries, and the request-side rewrites (path,
 * host, header mutations, `x-envoy-*` headers). Proxying a request allocates this object, one UpstreamRequest and
 * the header objects, and no closures; retry state only when the request can be retried.
 */
import type { Socket } from 'node:net';
import type { envoy } from '../../generated/envoy.js';
import type { StatScope, StatsStore } from '../../stats/store.js';
import { GrpcStatus, isGrpcContentType, parseGrpcTimeout } from '../grpc.js';
import { ResponseFlag } from '../response-flags.js';
import { FilterDataStatus, FilterHeadersStatus, FilterTrailersStatus, type FilterFactoryContext, type StreamFilter } from '../http/filter.js';
import type { RouterFilterCallbacks } from '../http/connection-manager.js';
import { HCM_STATS } from '../http/stats.js';
import type { Cluster } from '../upstream/cluster.js';
import type { ClusterManager } from '../upstream/cluster-manager.js';
import { LocalOriginFailure } from '../upstream/health/outlier-detector.js';
import { STREAM_RESET } from '../upstream/pool-types.js';
import { isConnectTimeout, type Host } from '../upstream/host.js';
import type { UpstreamHeaders, UpstreamStreamController } from '../upstream/http1/types.js';
import type { Hash64 } from '../upstream/lb/hash.js';
import type { LoadBalancerContext } from '../upstream/load-balancer.js';
import { classifyUpstreamFailure, countUpstreamResponseCode, UpstreamFailure } from '../upstream/request-stats.js';
import type { ResourceManager } from '../upstream/resource-manager.js';
import { CLUSTER_STATS, HOST_STATS } from '../upstream/stats.js';
import type { Runtime } from '../runtime/runtime.js';
import type { HashPolicy, HashRequest } from './hash-policy.js';
import { applyHeaderMutations, type HeaderMap } from './header-mutation.js';
import { type RequestMirrors, startMirrors } from './request-mirror.js';
import { RequestBody, type RequestBodyOwner } from './request-body.js';
import { DEFAULT_RETRY_POLICY, RETRY_REQUEST_HEADERS, ResetReason, type RetryPolicy, RetryState, RetryStatus } from './retry-policy.js';
import { ActionKind, type ForwardAction, type RedirectActionCompiled, type WeightedClusterEntry } from './route-action.js';
import { type MatchContext, stripPort } from './route-table.js';
import { UpstreamRequest, type UpstreamRequestOwner } from './upstream-request.js';

const S = HCM_STATS.c;
const CS = CLUSTER_STATS.c;
const HS = HOST_STATS.c;

type RouterProto = envoy.extensions.filters.http.router.v3.Router;

/** Request headers that are hop-by-hop or that the proxy sets itself; never forwarded as received. */
const SKIPPED_REQUEST_HEADERS = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'expect', 'http2-settings']);

/** Response headers that are hop-by-hop. */
const HOP_BY_HOP_RESPONSE_HEADERS = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade'];

const UPSTREAM_FAILURE_PREFIX = 'upstream connect error or disconnect/reset before headers. reset reason: ';
const RETRIED_UPSTREAM_FAILURE_PREFIX = 'upstream connect error or disconnect/reset before headers. retried and the latest reset reason: ';
const NO_TRAILERS: HeaderMap = Object.freeze({}) as HeaderMap;
const EMPTY = Buffer.alloc(0);

/** The router's compiled configuration in one connection manager. */
export class RouterConfig {
  readonly suppressEnvoyHeaders: boolean;
  /** A trusted `x-envoy-expected-rq-timeout-ms` sets the route timeout. */
  readonly respectExpectedRqTimeout: boolean;
  /** `http.<stat_prefix>.`: the router's stats live beside the connection manager's, as Envoy's do. */
  readonly stats: StatScope;
  readonly clusters: ClusterManager;
  readonly runtime: Runtime;
  private readonly store: StatsStore;

  constructor(config: RouterProto, context: FilterFactoryContext) {
    this.suppressEnvoyHeaders = config.suppress_envoy_headers ?? false;
    this.respectExpectedRqTimeout = config.respect_expected_rq_timeout ?? false;
    this.store = context.stats;
    this.stats = context.stats.scope(HCM_STATS, `http.${context.statPrefix}.`);
    this.clusters = context.clusters;
    this.runtime = context.runtime;
  }

  release(): void {
    this.store.release(this.stats);
  }
}

function onRouteTimeoutTimer(router: Router): void {
  router.onRouteTimeout();
}

function onRetryTimer(router: Router): void {
  router.doRetry();
}

/** A timeout from a trusted `x-envoy-upstream-rq-*-timeout-ms` header; undefined when it is not a number. */
function headerTimeoutMs(value: string | string[] | undefined): number | undefined {
  return typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : undefined;
}

export class Router implements StreamFilter, UpstreamRequestOwner, RequestBodyOwner, LoadBalancerContext, HashRequest {
  private weighted: WeightedClusterEntry | undefined;
  private routeTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Route timeout (all attempts), and per-try timeout, in ms; 0 disables. */
  private timeoutMs = 0;
  private perTryTimeoutMs = 0;
  /** Set once the stream is over or answered: nothing more is forwarded either way. */
  private done = false;
  private action: ForwardAction | undefined;
  /** The cluster forwarded to, its circuit breakers at the route's priority, and the host of the latest attempt. */
  private cluster: Cluster | undefined;
  private resources: ResourceManager | undefined;
  private host: Host | undefined;
  /** The attempt in flight; undefined before the first, between attempts and once it finished. */
  private upstream: UpstreamRequest | undefined;
  /** Only for a request that can be retried. */
  private retry: RetryState | undefined;
  /** The request body as it reaches the router; undefined for a request without one. */
  private body: RequestBody | undefined;
  /** The whole downstream request has reached the router. */
  private downstreamComplete = false;
  /** When it did, for the timeout left to later attempts. */
  private downstreamCompleteAt = 0;
  private hashPolicy: HashPolicy | undefined;
  /** `Set-Cookie` values the hash policy generated, added to the upstream response. */
  private generatedCookies: string[] | undefined;
  /** Copies of this request sent by the route's mirror policies, which get its body as it arrives. */
  private mirrors: RequestMirrors | undefined;
  /** The route honours gRPC clients' `grpc-timeout`, which then carries the attempt's deadline upstream. */
  private grpcTimeoutHeader = false;
  /** The client's connection is full: upstream reading is paused until it drains. */
  private downstreamFull = false;

  constructor(
    private readonly config: RouterConfig,
    private readonly callbacks: RouterFilterCallbacks,
  ) {}

  // ---- request ------------------------------------------------------------------------------------------

  decodeHeaders(_head: unknown, endStream: boolean): FilterHeadersStatus {
    const callbacks = this.callbacks;
    const vhost = callbacks.virtualHost;
    const route = callbacks.route;
    const ctx = callbacks.matchContext;
    const head = callbacks.head;
    if (vhost === undefined || route === undefined || ctx === undefined) {
      this.config.stats.counters[S.no_route]++;
      callbacks.sendLocalReply(404, '', ResponseFlag.NR, 'route_not_found');
      return FilterHeadersStatus.StopIteration;
    }
    if (vhost.requireTls !== 'NONE' && head.scheme !== 'https' && (vhost.requireTls === 'ALL' || callbacks.external)) {
      callbacks.sendLocalReply(301, '', 0, 'via_upstream', `https://${head.authority}${head.path}`);
      return FilterHeadersStatus.StopIteration;
    }
    const action = route.action;
    switch (action.kind) {
      case ActionKind.DirectResponse:
        this.config.stats.counters[S.rq_direct_response]++;
        callbacks.sendLocalReply(action.status, action.body?.toString() ?? '', 0, 'direct_response');
        break;
      case ActionKind.Redirect:
        this.config.stats.counters[S.rq_redirect]++;
        callbacks.sendLocalReply(action.status, '', 0, 'redirect', this.redirectLocation(action));
        break;
      case ActionKind.Forward:
        if (action.idleTimeoutMs !== undefined) callbacks.setStreamIdleTimeout(action.idleTimeoutMs);
        this.forward(action, ctx, endStream);
    }
    return FilterHeadersStatus.StopIteration;
  }

  decodeData(chunk: Buffer, endStream: boolean): FilterDataStatus {
    if (!this.done) {
      this.mirrors?.write(chunk);
      this.body?.onData(chunk);
      if (endStream) this.onRequestComplete(undefined);
    }
    return FilterDataStatus.StopIterationNoBuffer;
  }

  decodeTrailers(trailers: HeaderMap): FilterTrailersStatus {
    if (!this.done) this.onRequestComplete(trailers);
    return FilterTrailersStatus.StopIteration;
  }

  onAboveWriteBufferHighWatermark(): void {
    this.downstreamFull = true;
    this.upstream?.controller?.pause();
  }

  onBelowWriteBufferLowWatermark(): void {
    this.downstreamFull = false;
    this.upstream?.controller?.resume();
  }

  onDestroy(): void {
    // The client went away while an attempt was in flight: Envoy resets it (`upstream_rq_tx_reset`).
    if (this.upstream !== undefined && this.callbacks.info.responseFlags & ResponseFlag.DC) this.cluster!.stats.counters[CS.upstream_rq_tx_reset]++;
    this.done = true;
    this.clearTimers();
    this.abortUpstream('stream ended');
    this.body?.detach();
    this.mirrors?.release();
    this.retry?.release();
  }

  private forward(action: ForwardAction, ctx: MatchContext, endStream: boolean): void {
    const callbacks = this.callbacks;
    const head = callbacks.head;
    const headers = head.headers;
    const clusterName = this.chooseCluster(action, ctx);
    const cluster = clusterName === undefined ? undefined : this.config.clusters.get(clusterName);
    callbacks.info.upstreamCluster = clusterName ?? '';
    if (cluster === undefined) {
      this.config.stats.counters[S.no_cluster]++;
      callbacks.sendLocalReply(action.clusterNotFoundStatus, '', ResponseFlag.NC, 'cluster_not_found');
      return;
    }
    this.config.stats.counters[S.rq_total]++;
    this.hashPolicy = action.hashPolicy;
    const host = cluster.chooseHost(this);
    if (host === undefined) {
      cluster.stats.counters[CS.upstream_cx_none_healthy]++;
      callbacks.sendLocalReply(503, 'no healthy upstream', ResponseFlag.UH, 'no_healthy_upstream');
      return;
    }
    this.action = action;
    this.cluster = cluster;
    this.resources = cluster.resources.forPriority(action.highPriority);
    callbacks.info.upstreamRequestAttemptCount = 1;

    const originalPath = head.path;
    const rewritten = this.rewritePath(action, ctx);
    if (rewritten !== originalPath) {
      head.path = rewritten;
      if (!this.config.suppressEnvoyHeaders) headers['x-envoy-original-path'] = originalPath;
    }
    this.rewriteHost(action, host);
    applyHeaderMutations(callbacks.mutations!.request, headers, callbacks.info);
    if (callbacks.virtualHost!.includeAttemptCount) headers['x-envoy-attempt-count'] = '1';
    this.setupRetryAndTimeouts(action, cluster);
    if (!endStream) this.body = new RequestBody(this.retry !== undefined ? action.retryBufferLimit : 0, this);

    this.startAttempt(host);
    if (action.mirrorPolicies !== undefined) {
      // Once per stream, whatever the retries: the copy carries the headers of the first attempt.
      this.mirrors = startMirrors(action.mirrorPolicies, this.config, head, upstreamHeaders(headers), !endStream, this.timeoutMs, cluster);
    }
    if (endStream) this.onRequestComplete(undefined);
  }

  /**
   * The route's timeouts and retry policy, with what a trusted (internal) client asked for in `x-envoy-*`
   * headers (Envoy's FilterUtility::finalTimeout and RetryStateImpl); those headers do not go upstream. Headers
   * from other clients were removed with the internal-only headers.
   */
  private setupRetryAndTimeouts(action: ForwardAction, cluster: Cluster): void {
    const headers = this.callbacks.head.headers;
    const trusted = !this.callbacks.external;
    const policy = action.retryPolicy;
    let timeoutMs = action.timeoutMs;
    let perTryTimeoutMs = policy?.perTryTimeoutMs ?? 0;
    // Envoy's finalTimeout: with max_stream_duration.grpc_timeout_header_max on the route, a gRPC client's
    // grpc-timeout sets the route timeout (capped by the max unless it is 0, less the offset), before the
    // x-envoy-* headers of a trusted client do.
    if (action.grpcTimeoutHeaderMaxMs !== undefined && isGrpcContentType(headers['content-type'])) {
      this.grpcTimeoutHeader = true;
      let grpcTimeout = parseGrpcTimeout(headers['grpc-timeout']);
      if (grpcTimeout !== undefined) {
        if (action.grpcTimeoutHeaderMaxMs > 0 && grpcTimeout > action.grpcTimeoutHeaderMaxMs) grpcTimeout = action.grpcTimeoutHeaderMaxMs;
        if (action.grpcTimeoutHeaderOffsetMs < grpcTimeout) grpcTimeout -= action.grpcTimeoutHeaderOffsetMs;
        timeoutMs = grpcTimeout;
      }
    }
    if (trusted) {
      const expected = this.config.respectExpectedRqTimeout ? headerTimeoutMs(headers['x-envoy-expected-rq-timeout-ms']) : undefined;
      const requested = headerTimeoutMs(headers['x-envoy-upstream-rq-timeout-ms']);
      timeoutMs = expected ?? requested ?? timeoutMs;
      if (headers['x-envoy-upstream-rq-timeout-ms'] !== undefined) delete headers['x-envoy-upstream-rq-timeout-ms'];
      perTryTimeoutMs = headerTimeoutMs(headers['x-envoy-upstream-rq-per-try-timeout-ms']) ?? perTryTimeoutMs;
    }
    // A per-try timeout as long as the route's is no timeout of its own.
    if (timeoutMs > 0 && perTryTimeoutMs >= timeoutMs) perTryTimeoutMs = 0;
    this.timeoutMs = timeoutMs;
    this.perTryTimeoutMs = perTryTimeoutMs;
    this.setExpectedTimeoutHeader();
    if (policy !== undefined || (trusted && headers['x-envoy-retry-on'] !== undefined)) {
      const retry = new RetryState(policy ?? DEFAULT_RETRY_POLICY, trusted ? headers : undefined, cluster.stats, this.resources!);
      if (retry.retryOn !== 0 && this.retriableRequest(retry.policy.retriableRequestHeaders)) this.retry = retry;
    }
    if (trusted) for (const name of RETRY_REQUEST_HEADERS) if (headers[name] !== undefined) delete headers[name];
  }

  /** `retriable_request_headers`: with any, only a request matching one of them may be retried. */
  private retriableRequest(matchers: RetryPolicy['retriableRequestHeaders']): boolean {
    if (matchers.length === 0) return true;
    for (const matches of matchers) if (matches(this.callbacks.head)) return true;
    return false;
  }

  /**
   * `x-envoy-expected-rq-timeout-ms`: the time the upstream has for this attempt (the per-try timeout, or what
   * is left of the route timeout since the request completed).
   */
  private setExpectedTimeoutHeader(): void {
    const global = this.timeoutMs;
    let expected = this.perTryTimeoutMs || global;
    if (expected === 0) return;
    if (global > 0 && this.downstreamCompleteAt > 0) {
      const elapsed = Math.floor(performance.now() - this.downstreamCompleteAt);
      expected = elapsed >= global ? 1 : Math.min(expected, global - elapsed);
    }
    const headers = this.callbacks.head.headers;
    // A gRPC upstream hears the deadline it has in its own header, as Envoy rewrites grpc-timeout.
    if (this.grpcTimeoutHeader) headers['grpc-timeout'] = `${expected}m`;
    if (!this.config.suppressEnvoyHeaders) headers['x-envoy-expected-rq-timeout-ms'] = String(expected);
  }


  /**
   * Dispatches an attempt to `host`, unless the cluster's circuit breakers refuse it: too many requests, or no
   * idle connection and too many requests already waiting for one (503 UO, `x-envoy-overloaded`).
   */
  private startAttempt(host: Host): void {
    const cluster = this.cluster!;
    const resources = this.resources!;
    const callbacks = this.callbacks;
    this.host = host;
    callbacks.info.upstreamHost = host.key;
    if (!resources.requests.canCreate() || (host.wouldWaitForConnection() && !resources.pendingRequests.canCreate())) {
      cluster.stats.counters[CS.upstream_rq_pending_overflow]++;
      countUpstreamResponseCode(cluster, 503);
      this.localReply(503, 'overflow', ResponseFlag.UO, 'upstream_reset_before_response_started{overflow}');
      return;
    }
    this.retry?.onHostAttempted(host);
    const policy = this.retry?.policy;
    const attempt = new UpstreamRequest(this, cluster, host, resources, this.perTryTimeoutMs, policy?.perTryIdleTimeoutMs ?? 0);
    this.upstream = attempt;
    const head = callbacks.head;
    attempt.dispatch({
      path: head.path,
      method: head.method,
      headers: upstreamHeaders(head.headers),
      body: this.body !== undefined ? this.body.forAttempt() : null,
      upgrade: callbacks.upgradeType,
    });
    if (this.downstreamComplete) attempt.onDownstreamComplete();
  }

  /** A 503 of the router's for a failed attempt, saying whether it was retried. */
  private localReply(status: number, reason: string, flag: number, details: string): void {
    const prefix = this.callbacks.info.upstreamRequestAttemptCount > 1 ? RETRIED_UPSTREAM_FAILURE_PREFIX : UPSTREAM_FAILURE_PREFIX;
    this.sendLocalReply(status, prefix + reason, flag, details);
  }

  /**
   * Envoy marks a circuit breaker's refusal with `x-envoy-overloaded`, unless envoy headers are suppressed, and
   * answers a gRPC client's timeout with DEADLINE_EXCEEDED.
   */
  private sendLocalReply(status: number, body: string, flags: number, details: string): void {
    this.done = true;
    this.clearTimers();
    this.abortUpstream('local reply');
    if (flags & ResponseFlag.UO && !this.config.suppressEnvoyHeaders) this.callbacks.overloaded = true;
    this.callbacks.sendLocalReply(status, body, flags, details, undefined, flags & ResponseFlag.UT ? GrpcStatus.DeadlineExceeded : undefined);
  }

  /** Runs when the back-off after a failed attempt is over: the next attempt, on a host chosen again. */
  doRetry(): void {
    this.retryTimer = undefined;
    const retry = this.retry;
    if (this.done || retry === undefined) return;
    const cluster = this.cluster!;
    const callbacks = this.callbacks;
    const info = callbacks.info;
    info.upstreamRequestAttemptCount++;
    let host = cluster.chooseHost(this);
    for (let i = 0; host !== undefined && i < retry.policy.hostSelectionMaxAttempts && retry.rejectsHost(host); i++) {
      host = cluster.chooseHost(this);
    }
    if (host === undefined) {
      cluster.stats.counters[CS.upstream_cx_none_healthy]++;
      this.sendLocalReply(503, 'no healthy upstream', ResponseFlag.UH, 'no_healthy_upstream');
      return;
    }
    const head = callbacks.head;
    if (callbacks.virtualHost!.includeAttemptCount) head.headers['x-envoy-attempt-count'] = String(info.upstreamRequestAttemptCount);
    if (this.action!.autoHostRewrite && host.hostname !== '' && this.weighted?.hostRewriteLiteral === undefined) {
      head.authority = host.hostname;
      head.headers.host = host.hostname;
    }
    this.setExpectedTimeoutHeader();
    this.startAttempt(host);
  }

  /**
   * Whether an attempt whose outcome calls for a retry (`wanted`) is retried; if so, it is abandoned and the
   * retry is scheduled after a back-off. Otherwise the response flags say why not. As in Envoy, a response that
   * arrives before the whole request did is not retried (`rq_retry_skipped_request_not_complete`); a reset is,
   * the next attempt sending what was kept of the body and then the rest as it comes.
   */
  private retried(attempt: UpstreamRequest, wanted: boolean, response: boolean): boolean {
    const retry = this.retry!;
    if (wanted && response && !this.downstreamComplete) {
      this.config.stats.counters[S.rq_retry_skipped_request_not_complete]++;
      wanted = false;
    }
    const status = retry.shouldRetry(wanted);
    if (status === RetryStatus.Yes) {
      attempt.abandon('retrying');
      this.upstream = undefined;
      this.body?.detach();
      this.retryTimer = setTimeout(onRetryTimer, retry.nextBackOffMs(Math.random()), this);
      return true;
    }
    if (status === RetryStatus.Overflow) this.callbacks.info.responseFlags |= ResponseFlag.UO;
    else if (status === RetryStatus.LimitExceeded) this.callbacks.info.responseFlags |= ResponseFlag.URX;
    return false;
  }

  // RequestBodyOwner
  /** Envoy gives up retrying a request whose body outgrows the buffer (`retry_or_shadow_abandoned`). */
  onRequestBodyOverflow(): void {
    this.cluster!.stats.counters[CS.retry_or_shadow_abandoned]++;
    this.retry?.release();
    this.retry = undefined;
  }

  onRequestBodyFull(): void {
    this.callbacks.onDecoderFilterAboveWriteBufferHighWatermark();
  }

  onRequestBodyDrained(): void {
    this.callbacks.onDecoderFilterBelowWriteBufferLowWatermark();
  }

  // LoadBalancerContext and HashRequest: hashing load balancers ask for the request's hash.
  computeHashKey(out: Hash64): boolean {
    return this.hashPolicy !== undefined && this.hashPolicy.evaluate(this, out);
  }

  get head(): RouterFilterCallbacks['head'] {
    return this.callbacks.head;
  }

  get info(): RouterFilterCallbacks['info'] {
    return this.callbacks.info;
  }

  addResponseCookie(setCookie: string): void {
    (this.generatedCookies ??= []).push(setCookie);
  }

  private chooseCluster(action: ForwardAction, ctx: MatchContext): string | undefined {
    const headers = this.callbacks.head.headers;
    if (action.cluster !== undefined) return action.cluster;
    if (action.clusterHeader !== undefined) {
      const value = headers[action.clusterHeader];
      return typeof value === 'string' && value !== '' ? value : undefined;
    }
    const entries = action.weightedClusters!;
    let pick: number;
    const fromHeader = action.weightHeader !== undefined ? Number(headers[action.weightHeader]) : NaN;
    if (Number.isInteger(fromHeader) && fromHeader >= 0) pick = fromHeader % action.totalWeight;
    else pick = Math.floor(ctx.random * action.totalWeight);
    let index = 0;
    while (index < entries.length - 1 && pick >= entries[index]!.cumulativeWeight) index++;
    const entry = entries[index]!;
    this.weighted = entry;
    this.callbacks.mutations = this.callbacks.route!.weightedMutations![index]!;
    if (entry.clusterHeader !== undefined) {
      const value = headers[entry.clusterHeader];
      return typeof value === 'string' && value !== '' ? value : undefined;
    }
    return entry.name;
  }

  private rewritePath(action: ForwardAction, ctx: MatchContext): string {
    const path = this.callbacks.head.path;
    const route = this.callbacks.route!;
    const query = path.length > ctx.pathOnly.length ? path.slice(ctx.pathOnly.length) : '';
    if (action.prefixRewrite !== undefined) {
      if (route.isPrefixMatch) return action.prefixRewrite + path.slice(route.matchedPrefixLength());
      return action.prefixRewrite + query;
    }
    if (action.regexRewrite !== undefined) return action.regexRewrite(ctx.pathOnly) + query;
    return path;
  }

  private rewriteHost(action: ForwardAction, host: Host): void {
    const head = this.callbacks.head;
    const headers = head.headers;
    const original = head.authority;
    let authority: string | undefined;
    if (this.weighted?.hostRewriteLiteral !== undefined) authority = this.weighted.hostRewriteLiteral;
    else if (action.hostRewriteLiteral !== undefined) authority = action.hostRewriteLiteral;
    else if (action.autoHostRewrite) authority = host.hostname || undefined;
    else if (action.hostRewriteHeader !== undefined) {
      const value = headers[action.hostRewriteHeader];
      if (typeof value === 'string' && value !== '') authority = value;
    } else if (action.hostRewritePathRegex !== undefined) {
      const q = head.path.indexOf('?');
      authority = action.hostRewritePathRegex(q < 0 ? head.path : head.path.slice(0, q));
    }
    if (authority === undefined || authority === original) return;
    head.authority = authority;
    headers.host = authority;
    if (action.appendXForwardedHost) {
      const xfh = headers['x-forwarded-host'];
      headers['x-forwarded-host'] = xfh ? `${xfh},${original}` : original;
    }
  }

  private redirectLocation(action: RedirectActionCompiled): string {
    const head = this.callbacks.head;
    const route = this.callbacks.route!;
    const forwardedProto = head.headers['x-forwarded-proto'];
    const original = typeof forwardedProto === 'string' ? forwardedProto : head.scheme;
    const scheme = action.scheme ?? original;
    let host = action.host ?? head.authority;
    if (action.port !== undefined) {
      // Envoy always writes port_redirect, even the scheme's default port.
      host = `${stripPort(host)}:${action.port}`;
    } else if (scheme !== original) {
      // On a scheme change only the default port of the request's own scheme is dropped.
      if ((original === 'http' && host.endsWith(':80')) || (original === 'https' && host.endsWith(':443'))) host = stripPort(host);
    }
    const fullPath = head.path;
    const q = fullPath.indexOf('?');
    const pathOnly = q < 0 ? fullPath : fullPath.slice(0, q);
    let query = q < 0 || action.stripQuery ? '' : fullPath.slice(q);
    let path = pathOnly;
    if (action.path !== undefined) {
      path = action.path;
      const pq = path.indexOf('?');
      if (pq >= 0) {
        query = path.slice(pq);
        path = path.slice(0, pq);
      }
    } else if (action.prefixRewrite !== undefined && route.isPrefixMatch) {
      path = action.prefixRewrite + pathOnly.slice(route.matchedPrefixLength());
    } else if (action.prefixRewrite !== undefined) {
      path = action.prefixRewrite;
    } else if (action.regexRewrite !== undefined) {
      path = action.regexRewrite(pathOnly);
    }
    return `${scheme}://${host}${path}${query}`;
  }

  // ---- upstream attempts (UpstreamRequestOwner) ----------------------------------------------------------

  onUpstreamHeaders(attempt: UpstreamRequest, statusCode: number, headers: UpstreamHeaders): void {
    if (this.done) return;
    if (this.retry !== undefined && this.retried(attempt, this.retry.wouldRetryFromResponse(statusCode, headers), true)) {
      attempt.chargeRetriedCode(statusCode);
      return;
    }
    attempt.chargeCode(statusCode);
    for (const name of HOP_BY_HOP_RESPONSE_HEADERS) if (headers[name] !== undefined) delete headers[name];
    if (!this.cluster!.settings.enableTrailers && headers.trailer !== undefined) delete headers.trailer;
    if (!this.config.suppressEnvoyHeaders) {
      headers['x-envoy-upstream-service-time'] = String(Math.round(performance.now() - attempt.startTime));
    }
    if (this.generatedCookies !== undefined) {
      const upstream = headers['set-cookie'];
      headers['set-cookie'] = upstream === undefined ? this.generatedCookies : ([] as string[]).concat(upstream, this.generatedCookies);
    }
    this.callbacks.info.responseCodeDetails = 'via_upstream';
    this.callbacks.encodeHeaders({ status: statusCode, headers }, false);
    if (this.downstreamFull) attempt.controller?.pause();
  }

  /**
   * A 101 to an upgrade request: forwarded with the upgrade headers, then bytes flow both ways. The route timeout
   * covered the wait for this response and ends here; the stream idle timeout stays, on the downstream socket.
   */
  onUpstreamUpgrade(attempt: UpstreamRequest, statusCode: number, headers: UpstreamHeaders, socket: Socket): void {
    this.upstream = undefined;
    this.clearTimers();
    if (this.done) {
      socket.destroy();
      attempt.complete();
      return;
    }
    attempt.chargeCode(statusCode);
    const upgrade = headers.upgrade ?? this.callbacks.upgradeType!;
    for (const name of HOP_BY_HOP_RESPONSE_HEADERS) if (headers[name] !== undefined) delete headers[name];
    headers.upgrade = upgrade;
    this.callbacks.info.responseCodeDetails = 'via_upstream';
    this.callbacks.upgradeResponse({ status: statusCode, headers }, socket, attempt);
  }

  onUpstreamData(_attempt: UpstreamRequest, _controller: UpstreamStreamController, chunk: Buffer): void {
    if (!this.done) this.callbacks.encodeData(chunk, false);
  }

  onUpstreamEnd(_attempt: UpstreamRequest, trailers: UpstreamHeaders): void {
    this.upstream = undefined;
    this.clearTimers();
    if (this.done) return;
    this.done = true;
    if (this.cluster!.settings.enableTrailers && trailers !== NO_TRAILERS && Object.keys(trailers).length > 0) this.callbacks.encodeTrailers(trailers);
    else this.callbacks.encodeData(EMPTY, true);
  }

  onUpstreamReset(attempt: UpstreamRequest, error: Error & { code?: string }): void {
    this.upstream = undefined;
    this.body?.detach();
    if (this.done) return;
    const cluster = this.cluster!.stats;
    if (this.callbacks.responseStarted) {
      // The response has started: Envoy resets the stream, which on HTTP/1.1 closes the connection.
      this.clearTimers();
      cluster.counters[CS.upstream_rq_rx_reset]++;
      this.config.stats.counters[S.rq_reset_after_downstream_response_started]++;
      this.callbacks.info.responseFlags |= ResponseFlag.UR;
      this.done = true;
      this.callbacks.resetStream();
      return;
    }
    let reason: ResetReason;
    let message: string;
    let flag: number;
    let details: string;
    const failure = classifyUpstreamFailure(error);
    if (failure === UpstreamFailure.ConnectFailure) {
      const timeout = isConnectTimeout(error);
      this.callbacks.info.upstreamTransportFailureReason = error.message;
      reason = ResetReason.ConnectFailure;
      message = timeout ? 'connection timeout' : 'connection failure';
      flag = ResponseFlag.UF;
      details = timeout ? 'upstream_reset_before_response_started{connection_timeout}' : 'upstream_reset_before_response_started{connection_failure}';
    } else if (failure === UpstreamFailure.ProtocolError) {
      cluster.counters[CS.upstream_cx_protocol_error]++;
      reason = ResetReason.ProtocolError;
      message = 'protocol error';
      flag = ResponseFlag.UPE;
      details = 'upstream_reset_before_response_started{protocol_error}';
    } else if (error.code === STREAM_RESET) {
      // An HTTP/2 upstream reset this stream alone (RST_STREAM, or refused it going away): Envoy's remote reset.
      cluster.counters[CS.upstream_rq_rx_reset]++;
      reason = ResetReason.Reset;
      message = 'remote reset';
      flag = ResponseFlag.UR;
      details = 'upstream_reset_before_response_started{remote_reset}';
    } else {
      cluster.counters[CS.upstream_rq_rx_reset]++;
      reason = ResetReason.Reset;
      message = 'connection termination';
      flag = ResponseFlag.UC;
      details = 'upstream_reset_before_response_started{connection_termination}';
    }
    if (this.retry !== undefined && this.retried(attempt, this.retry.wouldRetryFromReset(reason, attempt.sent), false)) return;
    attempt.chargeCode(503);
    this.localReply(503, message, flag, details);
  }

  /** The attempt ran out of time: retried like a reset, else 504 UT (or a reset once the response started). */
  onPerTryTimeout(attempt: UpstreamRequest, idle: boolean): void {
    this.upstream = undefined;
    this.body?.detach();
    if (this.done) return;
    if (this.callbacks.responseStarted) {
      this.resetAfterTimeout();
      return;
    }
    if (this.retry !== undefined && this.retried(attempt, this.retry.wouldRetryFromReset(ResetReason.Reset, true), false)) return;
    attempt.chargeCode(504);
    this.sendLocalReply(504, 'upstream request timeout', ResponseFlag.UT, idle ? 'upstream_per_try_idle_timeout' : 'upstream_per_try_timeout');
  }

  private resetAfterTimeout(): void {
    this.clearTimers();
    this.callbacks.info.responseFlags |= ResponseFlag.UT;
    this.done = true;
    this.callbacks.resetStream();
  }

  // ---- timers ----------------------------------------------------------------------------------------------

  private onRequestComplete(trailers: HeaderMap | undefined): void {
    if (this.downstreamComplete) return;
    const now = performance.now();
    this.downstreamComplete = true;
    this.downstreamCompleteAt = now;
    // Envoy's upstream HTTP/1 codec sends request trailers only when the cluster enables them.
    this.body?.onEnd(this.cluster?.settings.enableTrailers === true ? trailers : undefined);
    this.mirrors?.end();
    if (this.timeoutMs > 0 && this.cluster !== undefined) this.routeTimer = setTimeout(onRouteTimeoutTimer, this.timeoutMs, this);
    this.upstream?.onDownstreamComplete();
  }

  // The timeouts answer (or reset) before aborting the upstream request: the abort reports back through
  // onResponseError synchronously, which would otherwise answer first with a 503 reset.
  onRouteTimeout(): void {
    this.routeTimer = undefined;
    if (this.done) return;
    const cluster = this.cluster!.stats;
    cluster.counters[CS.upstream_rq_timeout]++;
    // Between attempts (in a back-off) no host is waited for.
    if (this.upstream !== undefined) {
      this.host!.stats.counters[HS.rq_timeout]++;
      this.host!.outlier?.onLocalOriginFailure(LocalOriginFailure.TIMEOUT);
    }
    if (this.callbacks.responseStarted) {
      this.resetAfterTimeout();
      this.abortUpstream('route timeout');
    } else {
      countUpstreamResponseCode(this.cluster!, 504);
      this.sendLocalReply(504, 'upstream request timeout', ResponseFlag.UT, 'upstream_response_timeout');
    }
  }

  private abortUpstream(reason: string): void {
    const upstream = this.upstream;
    this.upstream = undefined;
    upstream?.abandon(reason);
  }

  private clearTimers(): void {
    if (this.routeTimer !== undefined) clearTimeout(this.routeTimer);
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.routeTimer = this.retryTimer = undefined;
  }
}

/** Request headers for the upstream: everything received except hop-by-hop headers, as a flat list. */
function upstreamHeaders(headers: HeaderMap): string[] {
  const out: string[] = [];
  const nominated = connectionNominatedHeaders(headers.connection);
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || SKIPPED_REQUEST_HEADERS.has(name)) continue;
    if (nominated !== undefined && nominated.includes(name)) continue;
    if (Array.isArray(value)) for (const v of value) out.push(name, v);
    else out.push(name, String(value));
  }
  const te = headers.te;
  if (typeof te === 'string' && te.toLowerCase().includes('trailers')) out.push('te', 'trailers');
  return out;
}

/** Header names a `Connection` header marks as hop-by-hop, beyond the usual `close` / `keep-alive`. */
function connectionNominatedHeaders(connection: HeaderMap[string]): string[] | undefined {
  if (typeof connection !== 'string') return undefined;
  const lower = connection.toLowerCase();
  if (lower === 'keep-alive' || lower === 'close') return undefined;
  const names = lower.split(',').map((t) => t.trim()).filter((t) => t !== '' && t !== 'close' && t !== 'keep-alive');
  return names.length > 0 ? names : undefined;
}
