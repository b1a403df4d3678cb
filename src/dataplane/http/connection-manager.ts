import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { BlockList, Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { envoy } from '../../generated/envoy.js';
import type { ConfigError } from '../../config/errors.js';
import type { StatScope, StatsStore } from '../../stats/store.js';
import type { Logger } from '../../util/logger.js';
import { httpDate } from '../../util/http-date.js';
import { type AccessLogger, compileAccessLogs, connectionStreamInfo, emitAccessLogs } from '../access-log/access-log.js';
import type { AccessLogSinks } from '../access-log/sinks.js';
import { ResponseFlag } from '../response-flags.js';
import { RequestBody, type RequestBodyOwner } from '../router/request-body.js';
import { DEFAULT_RETRY_POLICY, RETRY_REQUEST_HEADERS, ResetReason, type RetryPolicy, RetryState, RetryStatus } from '../router/retry-policy.js';
import { UpstreamRequest, type UpstreamRequestOwner } from '../router/upstream-request.js';
import type { UpstreamStreamController } from '../upstream/http1/types.js';
import type { Runtime } from '../runtime/runtime.js';
import { applyHeaderMutation, applyHeaderMutations, type HeaderMap, type MutationChains } from '../router/header-mutation.js';
import type { HashPolicy, HashRequest } from '../router/hash-policy.js';
import { type RequestMirrors, startMirrors } from '../router/request-mirror.js';
import { ActionKind, type ForwardAction, type RedirectActionCompiled, type WeightedClusterEntry } from '../router/route-action.js';
import { type MatchContext, newMatchContext, type RouteEntry, RouteTable, stripPort, type VirtualHost } from '../router/route-table.js';
import { newStreamInfo, type RequestHead, type StreamInfo } from '../stream-info.js';
import type { Cluster } from '../upstream/cluster.js';
import type { ClusterManager } from '../upstream/cluster-manager.js';
import { LocalOriginFailure } from '../upstream/health/outlier-detector.js';
import { isConnectTimeout, type Host } from '../upstream/host.js';
import { classifyUpstreamFailure, countUpstreamResponseCode, UpstreamFailure } from '../upstream/request-stats.js';
import type { ResourceManager } from '../upstream/resource-manager.js';
import { CLUSTER_STATS, HOST_STATS } from '../upstream/stats.js';
import type { Hash64 } from '../upstream/lb/hash.js';
import type { LoadBalancerContext } from '../upstream/load-balancer.js';
import { inBlockList } from '../cidr.js';
import { clientAddressFromXff, compileInternalAddresses, plainAddress } from './forwarded.js';
import { FilterHeadersStatus, type FilterCallbacks, type StreamFilter } from './filter.js';
import { HttpFilterChain } from './filter-chain.js';
import { LocalReplyRenderer } from './local-reply.js';
import { compilePathNormalizer } from './path-normalization.js';
import { HCM_STATS, LISTENER_HTTP_STATS } from './stats.js';
import {
  type DownstreamRequest,
  type DownstreamResponse,
  type DownstreamStreamHandler,
  HEADERS_TIMEOUT,
  Http1ServerConnection,
  type ServerConnectionOptions,
  type ServerConnectionOwner,
} from './http1/server-connection.js';
import { compileUpgradeConfigs, Tunnel, type UpgradeMap, upgradeAllowed } from './upgrade.js';

const S = HCM_STATS.c;
const SG = HCM_STATS.g;
const SH = HCM_STATS.h;
const LS = LISTENER_HTTP_STATS.c;
const CS = CLUSTER_STATS.c;
const HS = HOST_STATS.c;

type HcmConfig = envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager;
type RouterConfig = envoy.extensions.filters.http.router.v3.Router;

/** Services a connection manager uses, owned by the data plane. */
export interface ConnectionManagerContext {
  clusters: ClusterManager;
  runtime: Runtime;
  log: Logger;
  /** Port of the listener this manager serves, for `strip_matching_host_port`. */
  listenerPort: number;
  /** `https` when the filter chain terminates TLS. */
  scheme: 'http' | 'https';
  stats: StatsStore;
  /** `listener.<address>.` of the listener this manager serves (known once it is bound). */
  listenerStatPrefix: () => string;
  /** Identifies the listener's stats scope across configurations (the prefix may only be known once bound). */
  listenerStatKey: string;
  accessLogSinks: AccessLogSinks;
}

/** Request headers that are hop-by-hop or that the proxy sets itself; never forwarded as received. */
const SKIPPED_REQUEST_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'expect',
  'http2-settings',
]);

/** Response headers that are hop-by-hop. */
const HOP_BY_HOP_RESPONSE_HEADERS = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade'];

const UPSTREAM_FAILURE_PREFIX = 'upstream connect error or disconnect/reset before headers. reset reason: ';
const RETRIED_UPSTREAM_FAILURE_PREFIX = 'upstream connect error or disconnect/reset before headers. retried and the latest reset reason: ';

/**
 * Request headers that steer the router (retries, timeouts): Envoy honours them from internal clients only and
 * removes them from every other request (ConnectionManagerUtility::cleanInternalHeaders).
 */
const ENVOY_CONTROL_HEADERS = [
  ...RETRY_REQUEST_HEADERS,
  'x-envoy-upstream-rq-timeout-ms',
  'x-envoy-upstream-rq-timeout-alt-response',
  'x-envoy-expected-rq-timeout-ms',
  'x-envoy-upstream-alt-stat-name',
];

const kStream = Symbol('portico.stream');
/** A request body, and the stream it belongs to. */
type TrackedBody = Readable & { [kStream]?: ActiveStream };

/**
 * Envoy's HTTP connection manager for HTTP/1.1: runs the HTTP/1.1 codec on the connections its listener hands it,
 * normalises and sanitises requests, selects routes and runs the router. Everything configurable is resolved
 * here once; per request only an ActiveStream is allocated.
 */
export class HttpConnectionManager implements ServerConnectionOwner {
  private readonly connections = new Set<Http1ServerConnection>();
  private readonly codecOptions: ServerConnectionOptions;
  /** Set once this manager's filter chain is retired: picks the manager that serves further requests. */
  private successor: ((socket: Socket) => HttpConnectionManager | undefined) | undefined;
  readonly statPrefix: string;
  readonly routeTable: RouteTable;
  /** The HTTP filters before the router; undefined when the router is the only one. */
  readonly filterChain: HttpFilterChain | undefined;
  readonly localReply: LocalReplyRenderer;
  readonly suppressEnvoyHeaders: boolean;
  /** Router `respect_expected_rq_timeout`: a trusted `x-envoy-expected-rq-timeout-ms` sets the route timeout. */
  readonly respectExpectedRqTimeout: boolean;
  readonly useRemoteAddress: boolean;
  readonly xffTrustedHops: number;
  readonly skipXffAppend: boolean;
  readonly via: string | undefined;
  readonly internalAddresses: BlockList;
  readonly generateRequestId: boolean;
  readonly preserveExternalRequestId: boolean;
  readonly alwaysSetRequestIdInResponse: boolean;
  readonly serverName: string;
  readonly serverHeaderTransformation: string;
  readonly streamIdleTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly maxHeadersCount: number;
  readonly headersWithUnderscoresAction: string;
  readonly acceptHttp10: boolean;
  readonly defaultHostForHttp10: string | undefined;
  readonly enableTrailers: boolean;
  readonly normalizePath: ReturnType<typeof compilePathNormalizer>;
  readonly stripMatchingHostPort: boolean;
  readonly stripAnyHostPort: boolean;
  readonly appendXForwardedPort: boolean;
  readonly idleTimeoutMs: number;
  /** `upgrade_configs`: the upgrade types allowed unless a route says otherwise. */
  readonly upgrades: UpgradeMap | undefined;
  /** Set when the listener drains: every response then closes its connection. */
  draining = false;
  private closed = false;
  /** `http.<stat_prefix>.` */
  readonly stats: StatScope;
  /** `listener.<address>.http.<stat_prefix>.` */
  readonly listenerStats: StatScope;
  /** `access_log`: undefined when there is none, so a stream costs nothing more. */
  readonly accessLogs: readonly AccessLogger[] | undefined;

  constructor(
    config: HcmConfig,
    path: string,
    errors: ConfigError[],
    readonly context: ConnectionManagerContext,
  ) {
    const common = config.common_http_protocol_options ?? {};
    const http1 = config.http_protocol_options ?? {};
    const router = config.http_filters?.at(-1)?.typed_config?.value as RouterConfig | undefined;
    this.statPrefix = config.stat_prefix ?? '';
    this.stats = context.stats.scope(HCM_STATS, `http.${this.statPrefix}.`);
    this.listenerStats = context.stats.scope(
      LISTENER_HTTP_STATS,
      () => `${context.listenerStatPrefix()}http.${this.statPrefix}.`,
      `${context.listenerStatKey} http.${this.statPrefix}.`,
    );
    const filterContext = { stats: context.stats, statPrefix: this.statPrefix, runtime: context.runtime, log: context.log };
    this.filterChain = HttpFilterChain.compile(config.http_filters, filterContext, path, errors);
    this.routeTable = new RouteTable(config.route_config ?? {}, `${path}.route_config`, errors, context.runtime, this.filterChain);
    this.localReply = new LocalReplyRenderer(config.local_reply_config, `${path}.local_reply_config`, errors, context.runtime);
    this.accessLogs = compileAccessLogs(config.access_log, `${path}.access_log`, errors, context);
    this.suppressEnvoyHeaders = router?.suppress_envoy_headers ?? false;
    this.respectExpectedRqTimeout = router?.respect_expected_rq_timeout ?? false;
    this.useRemoteAddress = config.use_remote_address ?? false;
    this.xffTrustedHops = config.xff_num_trusted_hops ?? 0;
    this.skipXffAppend = config.skip_xff_append ?? false;
    this.via = config.via || undefined;
    this.internalAddresses = compileInternalAddresses(config.internal_address_config);
    this.generateRequestId = config.generate_request_id ?? true;
    this.preserveExternalRequestId = config.preserve_external_request_id ?? false;
    this.alwaysSetRequestIdInResponse = config.always_set_request_id_in_response ?? false;
    this.serverName = config.server_name ?? 'envoy';
    this.serverHeaderTransformation = config.server_header_transformation ?? 'OVERWRITE';
    this.streamIdleTimeoutMs = config.stream_idle_timeout ?? 300_000;
    this.requestTimeoutMs = config.request_timeout ?? 0;
    this.maxHeadersCount = common.max_headers_count ?? 100;
    this.headersWithUnderscoresAction = common.headers_with_underscores_action ?? 'ALLOW';
    this.acceptHttp10 = http1.accept_http_10 ?? false;
    this.defaultHostForHttp10 = http1.default_host_for_http_10 || undefined;
    this.enableTrailers = http1.enable_trailers ?? false;
    this.normalizePath = compilePathNormalizer(config);
    this.stripMatchingHostPort = config.strip_matching_host_port ?? false;
    this.stripAnyHostPort = config.strip_any_host_port ?? false;
    this.appendXForwardedPort = config.append_x_forwarded_port ?? false;
    this.upgrades = compileUpgradeConfigs(config.upgrade_configs, `${path}.upgrade_configs`, errors);

    this.codecOptions = {
      maxHeaderSize: (config.max_request_headers_kb ?? 60) * 1024,
      headersTimeoutMs: config.request_headers_timeout ?? 0,
      maxRequestsPerConnection: common.max_requests_per_connection ?? 0,
    };
    this.idleTimeoutMs = common.idle_timeout ?? 3_600_000;
  }

  // ServerConnectionOwner
  onRequest(connection: Http1ServerConnection, request: DownstreamRequest, response: DownstreamResponse): void {
    const successor = this.successor;
    if (successor !== undefined) {
      // A request on a connection of a retired chain: served by the chain selected now, and the connection
      // closes after it.
      response.keepAlive = false;
      const current = successor(connection.socket);
      if (current !== undefined && current !== this) {
        new ActiveStream(current, request, response).start();
        return;
      }
    }
    new ActiveStream(this, request, response).start();
  }

  /**
   * Malformed requests (smuggling attempts, bad framing, oversized headers, garbage) never reach a stream: the
   * parser fails, and the connection gets Envoy's protocol-error reply (the status text as body) and is closed,
   * without touching other connections.
   */
  onProtocolError(connection: Http1ServerConnection, code: string): void {
    const socket = connection.socket;
    if (!socket.writable || code === 'HPE_INVALID_EOF_STATE') {
      socket.destroy();
      return;
    }
    const timeout = code === HEADERS_TIMEOUT;
    this.stats.counters[timeout ? S.downstream_rq_header_timeout : S.downstream_cx_protocol_error]++;
    const status = timeout ? 408 : code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    const body = timeout ? '' : STATUS_CODES[status]!;
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-length: ${body.length}\r\n` +
        `${body ? 'content-type: text/plain\r\n' : ''}date: ${httpDate()}\r\nserver: ${this.serverName}\r\n` +
        `connection: close\r\n\r\n${body}`,
    );
    if (this.accessLogs !== undefined) {
      // No stream exists for a request the parser refused, but Envoy logs it: a protocol error (DPE).
      const info = connectionStreamInfo(socket, 'HTTP/1.1');
      info.responseCode = status;
      if (!timeout) info.responseFlags = ResponseFlag.DPE;
      info.bytesSent = body.length;
      info.lastResponseByteMonotonic = performance.now();
      emitAccessLogs(this.accessLogs, info);
    }
  }

  /** The connection timed out with no stream in flight: Envoy's idle_timeout. */
  onIdleTimeout(connection: Http1ServerConnection): void {
    this.stats.counters[S.downstream_cx_idle_timeout]++;
    connection.socket.destroy();
  }

  /** Connection teardown stats; a peer that sent FIN first closed it (remote), otherwise the proxy did (local). */
  onClose(connection: Http1ServerConnection, activeRequest: boolean): void {
    this.connections.delete(connection);
    const socket = connection.socket;
    const stats = this.stats;
    const remote = socket.readableEnded;
    stats.gauges[SG.downstream_cx_active]--;
    stats.gauges[SG.downstream_cx_http1_active]--;
    if (this.context.scheme === 'https') stats.gauges[SG.downstream_cx_ssl_active]--;
    stats.counters[S.downstream_cx_destroy]++;
    stats.counters[remote ? S.downstream_cx_destroy_remote : S.downstream_cx_destroy_local]++;
    if (activeRequest) {
      stats.counters[S.downstream_cx_destroy_active_rq]++;
      stats.counters[remote ? S.downstream_cx_destroy_remote_active_rq : S.downstream_cx_destroy_local_active_rq]++;
    }
    stats.counters[S.downstream_cx_rx_bytes_total] += socket.bytesRead;
    stats.counters[S.downstream_cx_tx_bytes_total] += socket.bytesWritten;
    stats.histograms[SH.downstream_cx_length_ms]!.record(performance.now() - connection.openedAt);
  }

  /** Runs the HTTP/1.1 codec on an accepted (and, with TLS, handshaken) connection. */
  handleConnection(socket: Socket): void {
    // Envoy's idle_timeout: a connection with no stream in flight is closed after it. Each stream replaces it
    // with the stream idle timeout, and puts it back when it ends.
    socket.setTimeout(this.idleTimeoutMs);
    const stats = this.stats;
    stats.counters[S.downstream_cx_total]++;
    stats.counters[S.downstream_cx_http1_total]++;
    stats.gauges[SG.downstream_cx_active]++;
    stats.gauges[SG.downstream_cx_http1_active]++;
    if (this.context.scheme === 'https') {
      stats.counters[S.downstream_cx_ssl_total]++;
      stats.gauges[SG.downstream_cx_ssl_active]++;
    }
    this.connections.add(new Http1ServerConnection(this, socket, this.codecOptions));
  }

  /**
   * Retires this manager (its filter chain left the listener's configuration): a further request on one of its
   * connections is served by the manager `select` picks for the connection now, and closes the connection.
   */
  retire(select: (socket: Socket) => HttpConnectionManager | undefined): void {
    this.successor = select;
  }

  /** Closes keep-alive connections that have no request in flight. */
  closeIdleConnections(): void {
    for (const connection of this.connections) if (connection.idle) connection.socket.destroy();
  }

  /** Destroys every connection. */
  close(): void {
    for (const connection of this.connections) connection.socket.destroy();
    if (this.closed) return;
    this.closed = true;
    this.context.stats.release(this.stats);
    this.context.stats.release(this.listenerStats);
    this.filterChain?.release();
  }
}

function onRequestEnd(this: TrackedBody): void {
  this[kStream]?.onRequestComplete();
}

/** %BYTES_RECEIVED%: request body bytes, counted as the upstream request reads them. */
function onRequestData(this: TrackedBody, chunk: Buffer): void {
  const stream = this[kStream];
  if (stream === undefined) return;
  stream.info.bytesReceived += chunk.length;
  stream.mirrors?.write(chunk);
}

function onRouteTimeoutTimer(stream: ActiveStream): void {
  stream.onRouteTimeout();
}

function onRequestTimeoutTimer(stream: ActiveStream): void {
  stream.onRequestTimeout();
}

function onRetryTimer(stream: ActiveStream): void {
  stream.doRetry();
}

/** A timeout from a trusted `x-envoy-upstream-rq-*-timeout-ms` header; undefined when it is not a number. */
function headerTimeoutMs(value: string | string[] | undefined): number | undefined {
  return typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : undefined;
}

/**
 * One request/response exchange, and Envoy's router for it: each upstream attempt is an UpstreamRequest, whose
 * outcome this stream forwards downstream or retries. Proxying a request allocates this object, one
 * UpstreamRequest and the header objects, and no closures; retry state and a body buffer only when the request
 * can be retried.
 */
class ActiveStream implements UpstreamRequestOwner, RequestBodyOwner, LoadBalancerContext, HashRequest, FilterCallbacks, DownstreamStreamHandler {
  readonly info: StreamInfo;
  readonly head: RequestHead;
  private route: RouteEntry | undefined;
  private vhost: VirtualHost | undefined;
  private matchContext: MatchContext | undefined;
  /** This stream's HTTP filters (the router excepted); undefined when the chain has none. */
  private filters: StreamFilter[] | undefined;
  /** The filter whose decodeHeaders returned StopIteration, to resume after. */
  private stoppedFilter = 0;
  private weighted: WeightedClusterEntry | undefined;
  /** Header mutations of the route (or of its chosen weighted cluster), once a route is selected. */
  private mutations: MutationChains | undefined;
  private routeTimer: NodeJS.Timeout | undefined;
  private requestTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Route timeout (all attempts), and per-try timeout, in ms; 0 disables. */
  private timeoutMs = 0;
  private perTryTimeoutMs = 0;
  private external = false;
  private ended = false;
  /** Response trailers are forwarded only when both codecs enable them, as in Envoy. */
  private forwardTrailers = false;
  private action: ForwardAction | undefined;
  /** The cluster forwarded to, its circuit breakers at the route's priority, and the host of the latest attempt. */
  private cluster: Cluster | undefined;
  private resources: ResourceManager | undefined;
  private host: Host | undefined;
  /** The attempt in flight; undefined before the first, between attempts and once it finished. */
  private upstream: UpstreamRequest | undefined;
  /** Only for a request that can be retried. */
  private retry: RetryState | undefined;
  /** The request body, kept for retries; undefined when the upstream connection reads the request directly. */
  private body: RequestBody | undefined;
  /** The whole downstream request has arrived. */
  private downstreamComplete = false;
  /** When it did, for the timeout left to later attempts. */
  private downstreamCompleteAt = 0;
  /** The route's hash policy, for hashing load balancers. */
  private hashPolicy: HashPolicy | undefined;
  /** `Set-Cookie` values the hash policy generated, added to the upstream response. */
  private generatedCookies: string[] | undefined;
  /** Copies of this request sent by the route's mirror policies, which get its body as it is read. */
  mirrors: RequestMirrors | undefined;
  /** The `Upgrade` header of an upgrade request; set once the upgrade is allowed (`upgradeAccepted`). */
  private readonly upgradeType: string | undefined;
  private upgradeAccepted = false;
  /** The raw byte tunnel, once the upstream switched protocols. */
  private tunnel: Tunnel | undefined;

  private readonly socket: Socket;

  constructor(
    private readonly hcm: HttpConnectionManager,
    private readonly req: DownstreamRequest,
    private readonly res: DownstreamResponse,
  ) {
    const socket = req.socket;
    this.socket = socket;
    this.head = { method: req.method, path: req.url, authority: '', scheme: hcm.context.scheme, headers: req.headers };
    const info = newStreamInfo(this.head, 0);
    info.protocol = req.versionMinor === 0 ? 'HTTP/1.0' : 'HTTP/1.1';
    info.downstreamDirectRemoteAddress = plainAddress(socket.remoteAddress);
    info.downstreamDirectRemotePort = socket.remotePort ?? 0;
    info.downstreamRemoteAddress = info.downstreamDirectRemoteAddress;
    info.downstreamRemotePort = info.downstreamDirectRemotePort;
    info.downstreamLocalAddress = plainAddress(socket.localAddress);
    info.downstreamLocalPort = socket.localPort ?? 0;
    if (hcm.context.scheme === 'https') info.requestedServerName = (socket as Socket & { servername?: string | false }).servername || '';
    this.upgradeType = req.upgrade ? String(req.headers.upgrade) : undefined;
    // What follows an upgrade request's head is the upgraded protocol's, not a body.
    const body = req.body;
    // A request without a body is complete with its head (Envoy's REQUEST_DURATION is then 0).
    if (body === undefined) info.lastRequestByteMonotonic = info.startMonotonic;
    else (body as TrackedBody)[kStream] = this;
    this.info = info;
    res.handler = this;
    const stats = hcm.stats;
    stats.counters[S.downstream_rq_total]++;
    stats.counters[S.downstream_rq_http1_total]++;
    stats.gauges[SG.downstream_rq_active]++;
  }

  /** Handles a request whose head has arrived; a bug becomes a 500 for this request, never a crash. */
  start(): void {
    try {
      this.decodeHeaders();
    } catch (err) {
      this.onBug(err);
    }
  }

  /** A bug (in Portico or an HTTP filter): logged, counted, and a 500 for this request when it can still get one. */
  private onBug(err: unknown): void {
    this.hcm.context.log.error(`bug while handling ${this.head.method} ${this.head.path}: ${(err as Error).stack ?? err}`);
    this.hcm.stats.counters[S.rq_internal_error]++;
    // No filter runs on this reply: one of them may be what threw.
    this.filters = undefined;
    this.sendLocalReply(500, '', 0, 'internal_error', true);
  }

  /** Runs when the request head has arrived: validation, sanitising, routing and dispatch. */
  private decodeHeaders(): void {
    const hcm = this.hcm;
    const req = this.req;
    const headers = this.head.headers;
    if (this.info.protocol === 'HTTP/1.0' && !hcm.acceptHttp10) {
      this.sendLocalReply(426, '', 0, 'low_version', true);
      return;
    }
    if (req.headerCount > hcm.maxHeadersCount) {
      this.sendLocalReply(431, '', 0, 'too_many_headers', true);
      return;
    }
    const te = headers['transfer-encoding'];
    if (te !== undefined && te.toLowerCase() !== 'chunked') {
      // llhttp hands over the head of `Transfer-Encoding: xchunked` and only fails on the body; Envoy's
      // codec refuses transfer-codings it does not understand (400) before anything goes upstream.
      this.sendLocalReply(400, 'Bad Request', 0, 'invalid_transfer_encoding', true);
      return;
    }
    // Always set (0 disables): it replaces the connection idle timeout set when the connection was accepted.
    this.res.setTimeout(hcm.streamIdleTimeoutMs);
    if (hcm.requestTimeoutMs > 0) {
      this.requestTimer = setTimeout(onRequestTimeoutTimer, hcm.requestTimeoutMs, this);
    }
    let authority = headers.host;
    if (authority === undefined && this.info.protocol === 'HTTP/1.0') authority = hcm.defaultHostForHttp10;
    if (authority === undefined) {
      this.sendLocalReply(400, 'missing host header', 0, 'missing_host_header', true);
      return;
    }
    let path = this.head.path;
    if (path.charCodeAt(0) !== 47 /* / */) {
      const absolute = /^https?:\/\/([^/?#]*)([^#]*)/i.exec(path);
      hcm.stats.counters[S.downstream_rq_non_relative_path]++;
      if (absolute === null) {
        this.sendLocalReply(404, '', ResponseFlag.NR, 'absolute_path_rejected');
        return;
      }
      authority = absolute[1]!;
      path = absolute[2] || '/';
    }
    if (path.includes('#')) {
      // Envoy refuses fragments in the request target rather than guessing what was meant.
      this.sendLocalReply(400, '', 0, 'invalid_url');
      return;
    }
    if (hcm.normalizePath !== undefined) {
      const q = path.indexOf('?');
      const normalized = hcm.normalizePath(q < 0 ? path : path.slice(0, q));
      const fullPath = q < 0 ? normalized.path : normalized.path + path.slice(q);
      if (normalized.action === 'reject') {
        this.sendLocalReply(400, '', 0, 'path_normalization_failed');
        return;
      }
      if (normalized.action === 'redirect') {
        hcm.stats.counters[S.downstream_rq_redirected_with_normalized_path]++;
        this.sendLocalReply(307, '', 0, 'path_normalization_redirect', false, fullPath);
        return;
      }
      path = fullPath;
    }
    this.head.path = path;
    if (hcm.headersWithUnderscoresAction !== 'ALLOW' && !this.dropOrRejectUnderscores()) return;
    if (hcm.stripAnyHostPort || (hcm.stripMatchingHostPort && authority.endsWith(`:${hcm.context.listenerPort}`))) {
      authority = stripPort(authority);
    }
    this.head.authority = authority;
    headers.host = authority;
    this.mutateRequestHeaders();

    const vhost = hcm.routeTable.selectVirtualHost(authority.toLowerCase());
    const ctx: MatchContext | undefined = vhost ? newMatchContext(this.head) : undefined;
    const route = vhost && ctx ? vhost.routes.match(ctx) : undefined;
    if (this.upgradeType !== undefined && !this.acceptUpgrade(route)) return;
    this.vhost = vhost;
    this.route = route;
    this.matchContext = ctx;
    if (route !== undefined) {
      this.mutations = route.mutations;
      this.info.routeName = route.name;
    }
    const chain = hcm.filterChain;
    if (chain !== undefined) {
      this.filters = chain.createStreamFilters(this, route);
      if (!this.decodeFilterHeaders(0)) return;
    }
    this.routeRequest();
  }

  /** Runs the filters' decodeHeaders from `first` on; false when one stopped the chain or answered. */
  private decodeFilterHeaders(first: number): boolean {
    const filters = this.filters!;
    const headers = this.head.headers;
    for (let i = first; i < filters.length; i++) {
      const status = filters[i]!.decodeHeaders(headers);
      if (this.ended) return false;
      if (status === FilterHeadersStatus.StopIteration) {
        this.stoppedFilter = i;
        return false;
      }
    }
    return true;
  }

  // FilterCallbacks
  continueDecoding(): void {
    if (this.ended || this.filters === undefined) return;
    try {
      if (this.decodeFilterHeaders(this.stoppedFilter + 1)) this.routeRequest();
    } catch (err) {
      this.onBug(err);
    }
  }

  /** The router, after the filters: the request is answered by the proxy or forwarded. */
  private routeRequest(): void {
    const hcm = this.hcm;
    const vhost = this.vhost;
    const route = this.route;
    const ctx = this.matchContext;
    if (vhost === undefined || route === undefined || ctx === undefined) {
      hcm.stats.counters[S.no_route]++;
      this.sendLocalReply(404, '', ResponseFlag.NR, 'route_not_found');
      return;
    }
    const authority = this.head.authority;
    const path = this.head.path;
    if (vhost.requireTls !== 'NONE' && this.head.scheme !== 'https' && (vhost.requireTls === 'ALL' || this.external)) {
      this.sendLocalReply(301, '', 0, 'via_upstream', false, `https://${authority}${path}`);
      return;
    }
    const action = route.action;
    switch (action.kind) {
      case ActionKind.DirectResponse:
        hcm.stats.counters[S.rq_direct_response]++;
        this.sendLocalReply(action.status, action.body?.toString() ?? '', 0, 'direct_response');
        return;
      case ActionKind.Redirect:
        hcm.stats.counters[S.rq_redirect]++;
        this.sendLocalReply(action.status, '', 0, 'redirect', false, this.redirectLocation(action));
        return;
      case ActionKind.Forward:
        if (action.idleTimeoutMs !== undefined) this.res.setTimeout(action.idleTimeoutMs);
        this.forward(action, ctx);
    }
  }

  /**
   * Whether the route (else the connection manager) allows this upgrade; if not, Envoy's 403 with an empty body
   * (the connection closes after it, as after any answer to an upgrade request).
   */
  private acceptUpgrade(route: RouteEntry | undefined): boolean {
    const hcm = this.hcm;
    const routeUpgrades = route?.action.kind === ActionKind.Forward ? route.action.upgrades : undefined;
    if (!upgradeAllowed(this.upgradeType!, hcm.upgrades, routeUpgrades)) {
      hcm.stats.counters[S.downstream_rq_ws_on_non_ws_route]++;
      this.sendLocalReply(403, '', 0, 'upgrade_failed');
      return false;
    }
    this.upgradeAccepted = true;
    hcm.stats.counters[S.downstream_cx_upgrades_total]++;
    hcm.stats.gauges[SG.downstream_cx_upgrades_active]++;
    return true;
  }

  /** Applies `headers_with_underscores_action`; false when the request was refused. */
  private dropOrRejectUnderscores(): boolean {
    const headers = this.head.headers;
    for (const name of Object.keys(headers)) {
      if (!name.includes('_')) continue;
      if (this.hcm.headersWithUnderscoresAction === 'REJECT_REQUEST') {
        this.sendLocalReply(400, '', 0, 'unexpected_underscore', true);
        return false;
      }
      delete headers[name];
    }
    return true;
  }

  /** x-forwarded-for / -proto / -port, x-request-id, x-envoy-internal and friends, as Envoy sets them. */
  private mutateRequestHeaders(): void {
    const hcm = this.hcm;
    const headers = this.head.headers;
    const info = this.info;
    const peer = info.downstreamDirectRemoteAddress;
    const xffHeader = headers['x-forwarded-for'];
    const xff = Array.isArray(xffHeader) ? xffHeader.join(',') : xffHeader;
    // As Envoy's mutateRequestHeaders: a request is internal only when, after appending, XFF holds a single
    // internal address. Without use_remote_address and without XFF it is external, even from loopback.
    let internal: boolean;
    if (hcm.useRemoteAddress) {
      const client = hcm.xffTrustedHops > 0 ? clientAddressFromXff(xff, hcm.xffTrustedHops - 1) ?? peer : peer;
      info.downstreamRemoteAddress = client;
      if (!hcm.skipXffAppend) headers['x-forwarded-for'] = xff ? `${xff},${peer}` : peer;
      internal = xff === undefined && inBlockList(hcm.internalAddresses, client);
      // A trusted hop's x-forwarded-proto is kept; an untrusted one is overwritten.
      if (hcm.xffTrustedHops === 0 || headers['x-forwarded-proto'] === undefined) headers['x-forwarded-proto'] = this.head.scheme;
      if (!internal) headers['x-envoy-external-address'] = client;
    } else {
      const fromXff = clientAddressFromXff(xff, hcm.xffTrustedHops);
      info.downstreamRemoteAddress = fromXff ?? peer;
      const single = fromXff !== undefined && hcm.xffTrustedHops === 0 && !xff!.includes(',');
      internal = single && inBlockList(hcm.internalAddresses, fromXff);
      headers['x-forwarded-proto'] ??= this.head.scheme;
    }
    // Like Envoy, every non-internal request loses internal-only headers and counts as external for
    // require_tls EXTERNAL_ONLY, whether or not use_remote_address is set.
    this.external = !internal;
    if (internal) headers['x-envoy-internal'] = 'true';
    else delete headers['x-envoy-internal'];
    const untrustedPort = hcm.useRemoteAddress && hcm.xffTrustedHops === 0;
    if (hcm.appendXForwardedPort && (untrustedPort || headers['x-forwarded-port'] === undefined)) {
      headers['x-forwarded-port'] = String(info.downstreamLocalPort);
    }
    const edge = hcm.useRemoteAddress && this.external;
    let requestId = headers['x-request-id'];
    if (hcm.generateRequestId && (requestId === undefined || (edge && !hcm.preserveExternalRequestId))) {
      requestId = randomUUID();
      headers['x-request-id'] = requestId;
    }
    info.requestId = typeof requestId === 'string' ? requestId : '';
    if (hcm.via) headers.via = headers.via ? `${headers.via}, ${hcm.via}` : hcm.via;
    if (this.external) {
      for (const name of ENVOY_CONTROL_HEADERS) if (headers[name] !== undefined) delete headers[name];
      for (const name of hcm.routeTable.internalOnlyHeaders) delete headers[name];
    }
  }

  private forward(action: ForwardAction, ctx: MatchContext): void {
    const hcm = this.hcm;
    const headers = this.head.headers;
    const clusterName = this.chooseCluster(action, ctx);
    const cluster = clusterName === undefined ? undefined : hcm.context.clusters.get(clusterName);
    this.info.upstreamCluster = clusterName ?? '';
    if (cluster === undefined) {
      hcm.stats.counters[S.no_cluster]++;
      this.sendLocalReply(action.clusterNotFoundStatus, '', ResponseFlag.NC, 'cluster_not_found');
      return;
    }
    hcm.stats.counters[S.rq_total]++;
    this.hashPolicy = action.hashPolicy;
    const host = cluster.chooseHost(this);
    if (host === undefined) {
      cluster.stats.counters[CS.upstream_cx_none_healthy]++;
      this.sendLocalReply(503, 'no healthy upstream', ResponseFlag.UH, 'no_healthy_upstream');
      return;
    }
    this.action = action;
    this.cluster = cluster;
    this.resources = cluster.resources.forPriority(action.highPriority);
    // Envoy's upstream HTTP/1 codec ignores trailers unless the cluster enables them too.
    this.forwardTrailers = hcm.enableTrailers && cluster.settings.enableTrailers;
    this.info.upstreamRequestAttemptCount = 1;

    const originalPath = this.head.path;
    const rewritten = this.rewritePath(action, ctx);
    if (rewritten !== originalPath) {
      this.head.path = rewritten;
      if (!hcm.suppressEnvoyHeaders) headers['x-envoy-original-path'] = originalPath;
    }
    this.rewriteHost(action, host);
    applyHeaderMutations(this.mutations!.request, headers, this.info);
    if (this.vhost!.includeAttemptCount) headers['x-envoy-attempt-count'] = '1';
    this.setupRetryAndTimeouts(action, cluster);

    const req = this.req;
    this.startAttempt(host);
    if (action.mirrorPolicies !== undefined) {
      // Once per stream, whatever the retries: the copy carries the headers of the first attempt.
      const body = this.req.body;
      this.mirrors = startMirrors(action.mirrorPolicies, hcm.context, this.head, upstreamHeaders(this.head.headers), body, this.timeoutMs, cluster);
    }
    if (req.body === undefined || req.complete) this.onRequestComplete();
    else req.body.on('end', onRequestEnd);
  }

  /**
   * The route's timeouts and retry policy, with what a trusted (internal) client asked for in `x-envoy-*`
   * headers (Envoy's FilterUtility::finalTimeout and RetryStateImpl); those headers do not go upstream. Headers
   * from other clients were removed with the internal-only headers.
   */
  private setupRetryAndTimeouts(action: ForwardAction, cluster: Cluster): void {
    const headers = this.head.headers;
    const trusted = !this.external;
    const policy = action.retryPolicy;
    let timeoutMs = action.timeoutMs;
    let perTryTimeoutMs = policy?.perTryTimeoutMs ?? 0;
    if (trusted) {
      const expected = this.hcm.respectExpectedRqTimeout ? headerTimeoutMs(headers['x-envoy-expected-rq-timeout-ms']) : undefined;
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
      if (retry.retryOn !== 0 && this.retriableRequest(retry.policy.retriableRequestHeaders)) {
        this.retry = retry;
        if (this.req.body !== undefined) this.body = new RequestBody(this.req.body, action.retryBufferLimit, this);
      }
    }
    if (trusted) for (const name of RETRY_REQUEST_HEADERS) if (headers[name] !== undefined) delete headers[name];
  }

  /** `retriable_request_headers`: with any, only a request matching one of them may be retried. */
  private retriableRequest(matchers: RetryPolicy['retriableRequestHeaders']): boolean {
    if (matchers.length === 0) return true;
    for (const matches of matchers) if (matches(this.head)) return true;
    return false;
  }

  /**
   * `x-envoy-expected-rq-timeout-ms`: the time the upstream has for this attempt (the per-try timeout, or what
   * is left of the route timeout since the request completed).
   */
  private setExpectedTimeoutHeader(): void {
    if (this.hcm.suppressEnvoyHeaders) return;
    const global = this.timeoutMs;
    let expected = this.perTryTimeoutMs || global;
    if (expected === 0) return;
    if (global > 0 && this.downstreamCompleteAt > 0) {
      const elapsed = Math.floor(performance.now() - this.downstreamCompleteAt);
      expected = elapsed >= global ? 1 : Math.min(expected, global - elapsed);
    }
    this.head.headers['x-envoy-expected-rq-timeout-ms'] = String(expected);
  }

  /**
   * Dispatches an attempt to `host`, unless the cluster's circuit breakers refuse it: too many requests, or no
   * idle connection and too many requests already waiting for one (503 UO, `x-envoy-overloaded`).
   */
  private startAttempt(host: Host): void {
    const cluster = this.cluster!;
    const resources = this.resources!;
    this.host = host;
    this.info.upstreamHost = host.key;
    if (!resources.requests.canCreate() || (host.wouldWaitForConnection() && !resources.pendingRequests.canCreate())) {
      cluster.stats.counters[CS.upstream_rq_pending_overflow]++;
      countUpstreamResponseCode(cluster, 503);
      const prefix = this.info.upstreamRequestAttemptCount > 1 ? RETRIED_UPSTREAM_FAILURE_PREFIX : UPSTREAM_FAILURE_PREFIX;
      this.sendLocalReply(503, prefix + 'overflow', ResponseFlag.UO, 'upstream_reset_before_response_started{overflow}');
      return;
    }
    this.retry?.onHostAttempted(host);
    const policy = this.retry?.policy;
    const attempt = new UpstreamRequest(this, cluster, host, resources, this.perTryTimeoutMs, policy?.perTryIdleTimeoutMs ?? 0);
    this.upstream = attempt;
    const body = this.body;
    attempt.dispatch({
      path: this.head.path,
      method: this.head.method,
      headers: upstreamHeaders(this.head.headers),
      body: body !== undefined ? body.forAttempt() : (this.req.body ?? null),
      upgrade: this.upgradeType,
    });
    if (this.downstreamComplete) attempt.onDownstreamComplete();
  }

  /** Runs when the back-off after a failed attempt is over: the next attempt, on a host chosen again. */
  doRetry(): void {
    this.retryTimer = undefined;
    const retry = this.retry;
    if (this.ended || retry === undefined) return;
    const cluster = this.cluster!;
    const info = this.info;
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
    const headers = this.head.headers;
    if (this.vhost!.includeAttemptCount) headers['x-envoy-attempt-count'] = String(info.upstreamRequestAttemptCount);
    if (this.action!.autoHostRewrite && host.hostname !== '' && this.weighted?.hostRewriteLiteral === undefined) {
      this.head.authority = host.hostname;
      headers.host = host.hostname;
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
    if (wanted && response && !(this.body !== undefined ? this.body.complete : this.downstreamComplete)) {
      this.hcm.stats.counters[S.rq_retry_skipped_request_not_complete]++;
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
    if (status === RetryStatus.Overflow) this.info.responseFlags |= ResponseFlag.UO;
    else if (status === RetryStatus.LimitExceeded) this.info.responseFlags |= ResponseFlag.URX;
    return false;
  }

  // RequestBodyOwner: the body kept for retries.
  onRequestBodyData(chunk: Buffer): void {
    this.info.bytesReceived += chunk.length;
    this.mirrors?.write(chunk);
  }

  /** Envoy gives up retrying a request whose body outgrows the buffer (`retry_or_shadow_abandoned`). */
  onRequestBodyOverflow(): void {
    this.cluster!.stats.counters[CS.retry_or_shadow_abandoned]++;
    this.retry?.release();
    this.retry = undefined;
  }

  // LoadBalancerContext and HashRequest: hashing load balancers ask for the request's hash.
  computeHashKey(out: Hash64): boolean {
    return this.hashPolicy !== undefined && this.hashPolicy.evaluate(this, out);
  }

  addResponseCookie(setCookie: string): void {
    (this.generatedCookies ??= []).push(setCookie);
  }

  private chooseCluster(action: ForwardAction, ctx: MatchContext): string | undefined {
    const headers = this.head.headers;
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
    this.mutations = this.route!.weightedMutations![index]!;
    if (entry.clusterHeader !== undefined) {
      const value = headers[entry.clusterHeader];
      return typeof value === 'string' && value !== '' ? value : undefined;
    }
    return entry.name;
  }

  private rewritePath(action: ForwardAction, ctx: MatchContext): string {
    const path = this.head.path;
    const route = this.route!;
    const query = path.length > ctx.pathOnly.length ? path.slice(ctx.pathOnly.length) : '';
    if (action.prefixRewrite !== undefined) {
      if (route.isPrefixMatch) return action.prefixRewrite + path.slice(route.matchedPrefixLength());
      return action.prefixRewrite + query;
    }
    if (action.regexRewrite !== undefined) return action.regexRewrite(ctx.pathOnly) + query;
    return path;
  }

  private rewriteHost(action: ForwardAction, host: Host): void {
    const headers = this.head.headers;
    const original = this.head.authority;
    let authority: string | undefined;
    if (this.weighted?.hostRewriteLiteral !== undefined) authority = this.weighted.hostRewriteLiteral;
    else if (action.hostRewriteLiteral !== undefined) authority = action.hostRewriteLiteral;
    else if (action.autoHostRewrite) authority = host.hostname || undefined;
    else if (action.hostRewriteHeader !== undefined) {
      const value = headers[action.hostRewriteHeader];
      if (typeof value === 'string' && value !== '') authority = value;
    } else if (action.hostRewritePathRegex !== undefined) {
      const q = this.head.path.indexOf('?');
      authority = action.hostRewritePathRegex(q < 0 ? this.head.path : this.head.path.slice(0, q));
    }
    if (authority === undefined || authority === original) return;
    this.head.authority = authority;
    headers.host = authority;
    if (action.appendXForwardedHost) {
      const xfh = headers['x-forwarded-host'];
      headers['x-forwarded-host'] = xfh ? `${xfh},${original}` : original;
    }
  }

  private redirectLocation(action: RedirectActionCompiled): string {
    const forwardedProto = this.head.headers['x-forwarded-proto'];
    const original = typeof forwardedProto === 'string' ? forwardedProto : this.head.scheme;
    const scheme = action.scheme ?? original;
    let host = action.host ?? this.head.authority;
    if (action.port !== undefined) {
      // Envoy always writes port_redirect, even the scheme's default port.
      host = `${stripPort(host)}:${action.port}`;
    } else if (scheme !== original) {
      // On a scheme change only the default port of the request's own scheme is dropped.
      if ((original === 'http' && host.endsWith(':80')) || (original === 'https' && host.endsWith(':443'))) host = stripPort(host);
    }
    const fullPath = this.head.path;
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
    } else if (action.prefixRewrite !== undefined && this.route!.isPrefixMatch) {
      path = action.prefixRewrite + pathOnly.slice(this.route!.matchedPrefixLength());
    } else if (action.prefixRewrite !== undefined) {
      path = action.prefixRewrite;
    } else if (action.regexRewrite !== undefined) {
      path = action.regexRewrite(pathOnly);
    }
    return `${scheme}://${host}${path}${query}`;
  }

  // ---- upstream attempts (UpstreamRequestOwner) ----------------------------------------------------------

  onUpstreamRequestStart(): void {
    // Without a body buffer, the upstream connection reads the request itself, right after this call: counting
    // from here sees every chunk, and adds a listener to a stream that is about to flow anyway. There is a single
    // attempt.
    if (this.req.body !== undefined && this.body === undefined) this.req.body.on('data', onRequestData);
  }

  onUpstreamHeaders(attempt: UpstreamRequest, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (this.ended) return;
    if (this.retry !== undefined && this.retried(attempt, this.retry.wouldRetryFromResponse(statusCode, headers), true)) {
      attempt.chargeRetriedCode(statusCode);
      return;
    }
    attempt.chargeCode(statusCode);
    const hcm = this.hcm;
    const res = this.res;
    // Envoy disarms request_timeout once the response starts.
    if (this.requestTimer !== undefined) {
      clearTimeout(this.requestTimer);
      this.requestTimer = undefined;
    }
    for (const name of HOP_BY_HOP_RESPONSE_HEADERS) if (headers[name] !== undefined) delete headers[name];
    if (!this.forwardTrailers && headers.trailer !== undefined) delete headers.trailer;
    if (!hcm.suppressEnvoyHeaders) {
      headers['x-envoy-upstream-service-time'] = String(Math.round(performance.now() - attempt.startTime));
    }
    if (this.generatedCookies !== undefined) {
      const upstream = headers['set-cookie'];
      headers['set-cookie'] = upstream === undefined ? this.generatedCookies : ([] as string[]).concat(upstream, this.generatedCookies);
    }
    if (!this.finalizeResponseHeaders(statusCode, headers)) return;
    this.info.responseCode = statusCode;
    this.info.responseCodeDetails = 'via_upstream';
    this.info.responseHeaders = headers;
    this.info.firstResponseByteMonotonic = performance.now();
    res.writeHead(statusCode, headers);
  }

  /**
   * A 101 to an upgrade request: forwarded with the upgrade headers, then bytes flow both ways. The route timeout
   * covered the wait for this response and ends here; the stream idle timeout stays, on the downstream socket.
   */
  onUpstreamUpgrade(attempt: UpstreamRequest, statusCode: number, headers: Record<string, string | string[] | undefined>, socket: Socket): void {
    this.upstream = undefined;
    this.clearTimers();
    if (this.ended) {
      socket.destroy();
      attempt.complete();
      return;
    }
    attempt.chargeCode(statusCode);
    const upgrade = headers.upgrade ?? this.upgradeType!;
    for (const name of HOP_BY_HOP_RESPONSE_HEADERS) if (headers[name] !== undefined) delete headers[name];
    if (!this.finalizeResponseHeaders(statusCode, headers)) {
      // A filter threw and the client got a 500 instead: no tunnel.
      socket.destroy();
      attempt.complete();
      return;
    }
    headers.connection = 'upgrade';
    headers.upgrade = upgrade;
    const info = this.info;
    info.responseCode = statusCode;
    info.responseCodeDetails = 'via_upstream';
    info.responseHeaders = headers;
    info.firstResponseByteMonotonic = performance.now();
    this.res.writeHead(statusCode, headers);
    this.res.end();
    this.tunnel = new Tunnel(this.socket, socket, this.req.upgradeHead!, attempt);
  }

  onUpstreamData(_attempt: UpstreamRequest, controller: UpstreamStreamController, chunk: Buffer): void {
    this.info.bytesSent += chunk.length;
    if (!this.res.write(chunk)) controller.pause();
  }

  onUpstreamEnd(_attempt: UpstreamRequest, trailers: Record<string, string | string[] | undefined>): void {
    this.upstream = undefined;
    this.clearTimers();
    if (this.ended) return;
    if (this.forwardTrailers) {
      if (Object.keys(trailers).length > 0) {
        this.res.addTrailers(trailers);
        this.info.responseTrailers = trailers as Record<string, string>;
      }
    }
    this.info.lastResponseByteMonotonic = performance.now();
    this.ended = true;
    this.res.end();
  }

  onUpstreamReset(attempt: UpstreamRequest, error: Error & { code?: string }): void {
    this.upstream = undefined;
    this.body?.detach();
    if (this.ended) return;
    const cluster = this.cluster!.stats;
    if (this.res.headersSent) {
      // The response has started: Envoy resets the stream, which on HTTP/1.1 closes the connection.
      this.clearTimers();
      cluster.counters[CS.upstream_rq_rx_reset]++;
      this.hcm.stats.counters[S.rq_reset_after_downstream_response_started]++;
      this.info.responseFlags |= ResponseFlag.UR;
      this.ended = true;
      this.res.destroy();
      return;
    }
    let reason: ResetReason;
    let message: string;
    let flag: number;
    let details: string;
    const failure = classifyUpstreamFailure(error);
    if (failure === UpstreamFailure.ConnectFailure) {
      const timeout = isConnectTimeout(error);
      this.info.upstreamTransportFailureReason = error.message;
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
    } else {
      cluster.counters[CS.upstream_rq_rx_reset]++;
      reason = ResetReason.Reset;
      message = 'connection termination';
      flag = ResponseFlag.UC;
      details = 'upstream_reset_before_response_started{connection_termination}';
    }
    if (this.retry !== undefined && this.retried(attempt, this.retry.wouldRetryFromReset(reason, attempt.sent), false)) return;
    attempt.chargeCode(503);
    const prefix = this.info.upstreamRequestAttemptCount > 1 ? RETRIED_UPSTREAM_FAILURE_PREFIX : UPSTREAM_FAILURE_PREFIX;
    this.sendLocalReply(503, prefix + message, flag, details);
  }

  /** The attempt ran out of time: retried like a reset, else 504 UT (or a reset once the response started). */
  onPerTryTimeout(attempt: UpstreamRequest, idle: boolean): void {
    this.upstream = undefined;
    this.body?.detach();
    if (this.ended) return;
    if (this.res.headersSent) {
      this.clearTimers();
      this.info.responseFlags |= ResponseFlag.UT;
      this.ended = true;
      this.res.destroy();
      return;
    }
    if (this.retry !== undefined && this.retried(attempt, this.retry.wouldRetryFromReset(ResetReason.Reset, true), false)) return;
    attempt.chargeCode(504);
    this.sendLocalReply(504, 'upstream request timeout', ResponseFlag.UT, idle ? 'upstream_per_try_idle_timeout' : 'upstream_per_try_timeout');
  }

  // ---- timers and downstream events ------------------------------------------------------------------------

  onRequestComplete(): void {
    clearTimeout(this.requestTimer);
    this.requestTimer = undefined;
    const now = performance.now();
    if (this.info.lastRequestByteMonotonic === 0) this.info.lastRequestByteMonotonic = now;
    this.downstreamComplete = true;
    this.downstreamCompleteAt = now;
    if (this.ended) return;
    if (this.timeoutMs > 0) this.routeTimer = setTimeout(onRouteTimeoutTimer, this.timeoutMs, this);
    this.upstream?.onDownstreamComplete();
  }

  // The timeouts answer (or reset) before aborting the upstream request: the abort reports back through
  // onResponseError synchronously, which would otherwise answer first with a 503 reset.
  onRouteTimeout(): void {
    this.routeTimer = undefined;
    const cluster = this.cluster!.stats;
    cluster.counters[CS.upstream_rq_timeout]++;
    // Between attempts (in a back-off) no host is waited for.
    if (this.upstream !== undefined) {
      this.host!.stats.counters[HS.rq_timeout]++;
      this.host!.outlier?.onLocalOriginFailure(LocalOriginFailure.TIMEOUT);
    }
    if (this.res.headersSent) {
      this.clearTimers();
      this.info.responseFlags |= ResponseFlag.UT;
      this.ended = true;
      this.res.destroy();
    } else {
      countUpstreamResponseCode(this.cluster!, 504);
      this.sendLocalReply(504, 'upstream request timeout', ResponseFlag.UT, 'upstream_response_timeout');
    }
    this.abortUpstream('route timeout');
  }

  onRequestTimeout(): void {
    this.requestTimer = undefined;
    if (this.ended) return;
    this.hcm.stats.counters[S.downstream_rq_timeout]++;
    if (this.res.headersSent) {
      this.ended = true;
      this.res.destroy();
    } else {
      this.sendLocalReply(this.req.complete ? 504 : 408, 'request timeout', 0, 'request_overall_timeout', !this.req.complete);
    }
    this.abortUpstream('request timeout');
  }

  onIdleTimeout(): void {
    if (this.ended) {
      this.res.destroy();
      return;
    }
    this.hcm.stats.counters[S.downstream_rq_idle_timeout]++;
    if (this.res.headersSent) {
      this.info.responseFlags |= ResponseFlag.SI;
      this.ended = true;
      this.res.destroy();
    } else {
      this.sendLocalReply(this.req.complete ? 504 : 408, 'stream timeout', ResponseFlag.SI, 'stream_idle_timeout', !this.req.complete);
    }
    this.abortUpstream('stream idle timeout');
  }

  onDownstreamDrain(): void {
    this.upstream?.controller?.resume();
  }

  onDownstreamClose(): void {
    if (this.res.finished) {
      // Back to the connection idle timeout until the next request on this connection.
      if (!this.socket.destroyed) this.socket.setTimeout(this.hcm.idleTimeoutMs);
    } else if (this.ended) {
      // The proxy reset the stream itself (upstream reset or timeout after the response started).
      this.hcm.stats.counters[S.downstream_rq_tx_reset]++;
    } else {
      this.info.responseFlags |= ResponseFlag.DC;
      this.ended = true;
      this.hcm.stats.counters[S.downstream_rq_rx_reset]++;
      if (this.upstream !== undefined) this.cluster!.stats.counters[CS.upstream_rq_tx_reset]++;
      this.clearTimers();
      this.abortUpstream('downstream connection closed');
    }
    this.onStreamComplete();
  }

  /** Runs once per stream, when its response has been sent or the stream was reset: stats and access logs. */
  private onStreamComplete(): void {
    const info = this.info;
    const now = performance.now();
    if (info.lastResponseByteMonotonic === 0) info.lastResponseByteMonotonic = now;
    this.mirrors?.release();
    const hcm = this.hcm;
    const stats = hcm.stats;
    stats.gauges[SG.downstream_rq_active]--;
    if (this.upgradeAccepted) stats.gauges[SG.downstream_cx_upgrades_active]--;
    if (this.tunnel !== undefined) {
      info.bytesReceived = this.tunnel.bytesReceived;
      info.bytesSent = this.tunnel.bytesSent;
    }
    stats.histograms[SH.downstream_rq_time]!.record(now - info.startMonotonic);
    const status = info.responseCode;
    if (status >= 100 && status < 600) {
      const codeClass = Math.floor(status / 100) - 1;
      stats.counters[S.downstream_rq_completed]++;
      stats.counters[S.downstream_rq_1xx + codeClass]++;
      const listener = hcm.listenerStats;
      listener.counters[LS.downstream_rq_completed]++;
      listener.counters[LS.downstream_rq_1xx + codeClass]++;
    }
    if (hcm.accessLogs !== undefined) emitAccessLogs(hcm.accessLogs, info);
    this.retry?.release();
  }

  private abortUpstream(reason: string): void {
    this.upstream?.abandon(reason);
    this.upstream = undefined;
  }

  private clearTimers(): void {
    if (this.routeTimer !== undefined) clearTimeout(this.routeTimer);
    if (this.requestTimer !== undefined) clearTimeout(this.requestTimer);
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.routeTimer = this.requestTimer = this.retryTimer = undefined;
  }

  // ---- responses ---------------------------------------------------------------------------------------

  /**
   * `server`, response header mutations, the filters' encodeHeaders and `x-request-id`, on proxied and local
   * responses alike. False when a filter threw: the stream was answered with a 500 instead.
   */
  private finalizeResponseHeaders(status: number, headers: HeaderMap): boolean {
    const hcm = this.hcm;
    const transformation = hcm.serverHeaderTransformation;
    if (transformation === 'OVERWRITE' || (transformation === 'APPEND_IF_ABSENT' && headers.server === undefined)) {
      headers.server = hcm.serverName;
    }
    if (this.mutations !== undefined) applyHeaderMutations(this.mutations.response, headers, this.info);
    const filters = this.filters;
    if (filters !== undefined) {
      // As Envoy's encoder filters: after the route's mutations, in reverse chain order.
      try {
        for (let i = filters.length - 1; i >= 0; i--) filters[i]!.encodeHeaders(status, headers);
      } catch (err) {
        this.onBug(err);
        return false;
      }
    }
    if (hcm.alwaysSetRequestIdInResponse && this.info.requestId) headers['x-request-id'] = this.info.requestId;
    if (this.vhost?.includeAttemptCountInResponse && this.info.upstreamRequestAttemptCount > 0) {
      headers['x-envoy-attempt-count'] = String(this.info.upstreamRequestAttemptCount);
    }
    if (hcm.via) headers.via = headers.via ? `${headers.via}, ${hcm.via}` : hcm.via;
    if (hcm.draining) {
      headers.connection = 'close';
      hcm.stats.counters[S.downstream_cx_drain_close]++;
    }
    return true;
  }

  /**
   * Envoy's sendLocalReply: a response generated by the proxy (404 NR, 503 UH, redirects, direct responses...),
   * passed through `local_reply_config`. Once the response has started, the stream is reset instead.
   */
  sendLocalReply(status: number, body: string, flags: number, details: string, closeConnection = false, location?: string): void {
    this.clearTimers();
    this.abortUpstream('local reply');
    this.info.responseFlags |= flags;
    this.info.responseCodeDetails = details;
    const res = this.res;
    if (res.headersSent || this.ended) {
      this.ended = true;
      res.destroy();
      return;
    }
    const reply = this.hcm.localReply.render(this.info, status, body);
    const headers: HeaderMap = {};
    if (location !== undefined) headers.location = location;
    // A circuit breaker refused the request (not a retry's overflow, which answers with the upstream's response).
    if (flags & ResponseFlag.UO && !this.hcm.suppressEnvoyHeaders) headers['x-envoy-overloaded'] = 'true';
    const length = Buffer.byteLength(reply.body);
    if (length > 0) headers['content-type'] = reply.contentType;
    headers['content-length'] = length;
    this.sendResponse(reply.status, headers, reply.body, length, reply.headers, closeConnection);
  }

  // FilterCallbacks
  sendHeaders(status: number, headers: HeaderMap, details: string): void {
    if (this.ended || this.res.headersSent) return;
    this.clearTimers();
    this.info.responseCodeDetails = details;
    headers['content-length'] = 0;
    this.sendResponse(status, headers, '', 0, undefined, false);
  }

  /** Writes a whole response made by the proxy: a local reply, or a filter's own. */
  private sendResponse(
    status: number,
    headers: HeaderMap,
    body: string,
    length: number,
    replyMutations: Parameters<typeof applyHeaderMutation>[0] | undefined,
    closeConnection: boolean,
  ): void {
    // A filter that throws on these headers gets the stream answered with a 500 instead.
    if (!this.finalizeResponseHeaders(status, headers)) return;
    this.ended = true;
    if (replyMutations) applyHeaderMutation(replyMutations, headers, this.info);
    if (closeConnection) headers.connection = 'close';
    headers.date = httpDate();
    this.info.responseCode = status;
    this.info.responseHeaders = headers;
    const head = this.head.method === 'HEAD';
    this.info.bytesSent = head ? 0 : length;
    this.res.writeHead(status, headers);
    this.res.end(head ? undefined : body);
    this.info.lastResponseByteMonotonic = performance.now();
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
