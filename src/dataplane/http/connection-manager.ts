import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { BlockList } from 'node:net';
import type { Dispatcher } from 'undici';
import type { envoy } from '../../generated/envoy.js';
import type { ConfigError } from '../../config/errors.js';
import type { StatScope, StatsStore } from '../../stats/store.js';
import type { Logger } from '../../util/logger.js';
import { httpDate } from '../../util/http-date.js';
import { type AccessLogger, compileAccessLogs, connectionStreamInfo, emitAccessLogs } from '../access-log/access-log.js';
import type { AccessLogSinks } from '../access-log/sinks.js';
import { ResponseFlag } from '../response-flags.js';
import type { Runtime } from '../runtime/runtime.js';
import { applyHeaderMutation, applyHeaderMutations, type HeaderMap, type MutationChains } from '../router/header-mutation.js';
import type { HashPolicy, HashRequest } from '../router/hash-policy.js';
import { type RequestMirrors, startMirrors } from '../router/request-mirror.js';
import { ActionKind, type ForwardAction, type RedirectActionCompiled, type WeightedClusterEntry } from '../router/route-action.js';
import { type MatchContext, newMatchContext, type RouteEntry, RouteTable, stripPort, type VirtualHost } from '../router/route-table.js';
import { newStreamInfo, type RequestHead, type StreamInfo } from '../stream-info.js';
import type { Cluster } from '../upstream/cluster.js';
import type { ClusterManager } from '../upstream/cluster-manager.js';
import type { Host } from '../upstream/host.js';
import {
  classifyUpstreamFailure,
  countUpstreamRequestAssigned,
  countUpstreamRequestEnd,
  countUpstreamRequestStart,
  countUpstreamResponseCode,
  UpstreamFailure,
} from '../upstream/request-stats.js';
import { CLUSTER_STATS, HOST_STATS } from '../upstream/stats.js';
import type { Hash64 } from '../upstream/lb/hash.js';
import type { LoadBalancerContext } from '../upstream/load-balancer.js';
import { inBlockList } from '../cidr.js';
import { clientAddressFromXff, compileInternalAddresses, plainAddress } from './forwarded.js';
import { LocalReplyRenderer } from './local-reply.js';
import { compilePathNormalizer } from './path-normalization.js';
import { HCM_STATS, LISTENER_HTTP_STATS } from './stats.js';

const S = HCM_STATS.c;
const SG = HCM_STATS.g;
const SH = HCM_STATS.h;
const LS = LISTENER_HTTP_STATS.c;
const CS = CLUSTER_STATS.c;
const CH = CLUSTER_STATS.h;
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

const kStream = Symbol('portico.stream');
type TrackedResponse = ServerResponse & { [kStream]?: ActiveStream };
type TrackedRequest = IncomingMessage & { [kStream]?: ActiveStream };

/** What a connection manager keeps on each downstream socket: its manager, when it opened, streams in flight. */
const kConnection = Symbol('portico.connection');
interface ConnectionState {
  hcm: HttpConnectionManager;
  openedAt: number;
  activeStreams: number;
}
type TrackedSocket = Socket & { [kConnection]?: ConnectionState };

/**
 * Envoy's HTTP connection manager for HTTP/1.1: owns a Node HTTP server that is fed connections by its
 * listener, normalises and sanitises requests, selects routes and runs the router. Everything configurable is
 * resolved here once; per request only an ActiveStream is allocated.
 */
export class HttpConnectionManager {
  readonly server: http.Server;
  readonly statPrefix: string;
  readonly routeTable: RouteTable;
  readonly localReply: LocalReplyRenderer;
  readonly suppressEnvoyHeaders: boolean;
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
    this.routeTable = new RouteTable(config.route_config ?? {}, `${path}.route_config`, errors, context.runtime);
    this.localReply = new LocalReplyRenderer(config.local_reply_config, `${path}.local_reply_config`, errors, context.runtime);
    this.accessLogs = compileAccessLogs(config.access_log, `${path}.access_log`, errors, context);
    this.suppressEnvoyHeaders = router?.suppress_envoy_headers ?? false;
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

    const headersTimeout = config.request_headers_timeout ?? 0;
    this.server = http.createServer({
      maxHeaderSize: (config.max_request_headers_kb ?? 60) * 1024,
      requestTimeout: 0,
      headersTimeout,
      connectionsCheckingInterval: headersTimeout > 0 ? Math.max(10, Math.min(1000, headersTimeout / 4)) : 30_000,
      // The connection idle timeout is the socket timeout set between streams (handleConnection,
      // onDownstreamClose); Node's own keep-alive timer would also add a `Keep-Alive` header Envoy never sends.
      keepAliveTimeout: 0,
      requireHostHeader: false,
      insecureHTTPParser: false,
    });
    // One more than the limit, so that a request over the limit can be told apart and refused with 431.
    this.server.maxHeadersCount = this.maxHeadersCount + 1;
    if (common.max_requests_per_connection) this.server.maxRequestsPerSocket = common.max_requests_per_connection;
    this.server.on('request', (req: IncomingMessage, res: ServerResponse) => new ActiveStream(this, req, res).start());
    this.server.on('clientError', (err: Error & { code?: string }, socket: Socket) => this.onClientError(err, socket));
    this.server.on('timeout', onSocketTimeout);
    // The server never listens (the listener feeds it sockets), but Node only tracks connections (for
    // headersTimeout, closeIdleConnections and closeAllConnections) once 'listening' was emitted.
    this.server.emit('listening');
    this.idleTimeoutMs = common.idle_timeout ?? 3_600_000;
  }

  /**
   * Malformed requests (smuggling attempts, bad framing, oversized headers, garbage) never reach a stream: the
   * parser fails, and the connection gets Envoy's protocol-error reply (the status text as body) and is closed,
   * without touching other connections.
   */
  private onClientError(err: Error & { code?: string }, socket: Socket): void {
    if (!socket.writable || (socket as Socket & { _httpMessage?: unknown })._httpMessage) {
      socket.destroy();
      return;
    }
    const code = err.code ?? '';
    if (code === 'ECONNRESET' || code === 'HPE_INVALID_EOF_STATE') {
      socket.destroy();
      return;
    }
    const timeout = code === 'ERR_HTTP_REQUEST_TIMEOUT';
    this.stats.counters[timeout ? S.downstream_rq_header_timeout : S.downstream_cx_protocol_error]++;
    const status = timeout ? 408 : code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    const body = timeout ? '' : http.STATUS_CODES[status]!;
    socket.end(
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-length: ${body.length}\r\n` +
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

  /** Hands an accepted (and, with TLS, handshaken) connection to the HTTP server. */
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
    (socket as TrackedSocket)[kConnection] = { hcm: this, openedAt: performance.now(), activeStreams: 0 };
    // Registered before the HTTP server's own listeners, so streams still count as active when it runs.
    socket.once('close', onConnectionClose);
    this.server.emit('connection', socket);
  }

  /** Closes keep-alive connections that have no request in flight. */
  closeIdleConnections(): void {
    this.server.closeIdleConnections();
  }

  /** Destroys every connection. */
  close(): void {
    this.server.closeAllConnections();
    if (this.closed) return;
    this.closed = true;
    // Stops Node's connection-checking interval (the server itself never listened).
    this.server.close();
    this.context.stats.release(this.stats);
    this.context.stats.release(this.listenerStats);
  }
}

/** Connection teardown stats; a peer that sent FIN first closed it (remote), otherwise the proxy did (local). */
function onConnectionClose(this: TrackedSocket): void {
  const state = this[kConnection];
  if (state === undefined) return;
  const stats = state.hcm.stats;
  const remote = this.readableEnded;
  stats.gauges[SG.downstream_cx_active]--;
  stats.gauges[SG.downstream_cx_http1_active]--;
  if (state.hcm.context.scheme === 'https') stats.gauges[SG.downstream_cx_ssl_active]--;
  stats.counters[S.downstream_cx_destroy]++;
  stats.counters[remote ? S.downstream_cx_destroy_remote : S.downstream_cx_destroy_local]++;
  if (state.activeStreams > 0) {
    stats.counters[S.downstream_cx_destroy_active_rq]++;
    stats.counters[remote ? S.downstream_cx_destroy_remote_active_rq : S.downstream_cx_destroy_local_active_rq]++;
  }
  stats.counters[S.downstream_cx_rx_bytes_total] += this.bytesRead;
  stats.counters[S.downstream_cx_tx_bytes_total] += this.bytesWritten;
  stats.histograms[SH.downstream_cx_length_ms]!.record(performance.now() - state.openedAt);
}

/**
 * The socket timeout: during a stream it is the stream idle timeout (handled by the stream); between streams it
 * is the connection idle timeout, which closes the connection.
 */
function onSocketTimeout(socket: TrackedSocket): void {
  const state = socket[kConnection];
  if (state !== undefined && state.activeStreams > 0) return;
  if (state !== undefined) state.hcm.stats.counters[S.downstream_cx_idle_timeout]++;
  socket.destroy();
}

function onResponseClose(this: TrackedResponse): void {
  this[kStream]?.onDownstreamClose();
}

function onResponseDrain(this: TrackedResponse): void {
  this[kStream]?.onDownstreamDrain();
}

function onStreamIdleTimeout(this: TrackedResponse): void {
  this[kStream]?.onIdleTimeout();
}

function onRequestEnd(this: TrackedRequest): void {
  this[kStream]?.onRequestComplete();
}

/** %BYTES_RECEIVED%: request body bytes, counted as the upstream request reads them. */
function onRequestData(this: TrackedRequest, chunk: Buffer): void {
  const stream = this[kStream];
  if (stream === undefined) return;
  stream.info.bytesReceived += chunk.length;
  stream.mirrors?.write(chunk);
}

/** Whether a request head announces a body (a non-chunked transfer-encoding is refused before this matters). */
function announcesBody(headers: IncomingMessage['headers']): boolean {
  const length = headers['content-length'];
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

function onRouteTimeoutTimer(stream: ActiveStream): void {
  stream.onRouteTimeout();
}

function onRequestTimeoutTimer(stream: ActiveStream): void {
  stream.onRequestTimeout();
}

/**
 * One request/response exchange. It is also the undici dispatch handler of its upstream request, so proxying a
 * request allocates this object and the header objects, and no closures.
 */
class ActiveStream implements Dispatcher.DispatchHandler, LoadBalancerContext, HashRequest {
  readonly info: StreamInfo;
  readonly head: RequestHead;
  private route: RouteEntry | undefined;
  private vhost: VirtualHost | undefined;
  private weighted: WeightedClusterEntry | undefined;
  /** Header mutations of the route (or of its chosen weighted cluster), once a route is selected. */
  private mutations: MutationChains | undefined;
  private controller: Dispatcher.DispatchController | undefined;
  private upstreamStart = 0;
  private routeTimer: NodeJS.Timeout | undefined;
  private requestTimer: NodeJS.Timeout | undefined;
  private timeoutMs = 0;
  private external = false;
  private ended = false;
  /** Response trailers are forwarded only when both codecs enable them, as in Envoy. */
  private forwardTrailers = false;
  /** The upstream request's cluster and host, for its stats. */
  private cluster: Cluster | undefined;
  private host: Host | undefined;
  /** Dispatched and not yet written to a connection (Envoy's pending request). */
  private upstreamPending = false;
  /** Dispatched and not yet finished, one way or another. */
  private upstreamActive = false;
  private readonly hasBody: boolean;
  /** The route's hash policy, for hashing load balancers. */
  private hashPolicy: HashPolicy | undefined;
  /** `Set-Cookie` values the hash policy generated, added to the upstream response. */
  private generatedCookies: string[] | undefined;
  /** Copies of this request sent by the route's mirror policies, which get its body as it is read. */
  mirrors: RequestMirrors | undefined;

  private readonly socket: Socket;

  constructor(
    private readonly hcm: HttpConnectionManager,
    private readonly req: TrackedRequest,
    private readonly res: TrackedResponse,
  ) {
    const socket = req.socket;
    this.socket = socket;
    this.head = { method: req.method ?? 'GET', path: req.url ?? '/', authority: '', scheme: hcm.context.scheme, headers: req.headers };
    const info = newStreamInfo(this.head, 0);
    info.protocol = req.httpVersionMinor === 0 ? 'HTTP/1.0' : 'HTTP/1.1';
    info.downstreamDirectRemoteAddress = plainAddress(socket.remoteAddress);
    info.downstreamDirectRemotePort = socket.remotePort ?? 0;
    info.downstreamRemoteAddress = info.downstreamDirectRemoteAddress;
    info.downstreamRemotePort = info.downstreamDirectRemotePort;
    info.downstreamLocalAddress = plainAddress(socket.localAddress);
    info.downstreamLocalPort = socket.localPort ?? 0;
    if (hcm.context.scheme === 'https') info.requestedServerName = (socket as Socket & { servername?: string | false }).servername || '';
    this.hasBody = announcesBody(req.headers);
    // A request without a body is complete with its head (Envoy's REQUEST_DURATION is then 0).
    if (!this.hasBody) info.lastRequestByteMonotonic = info.startMonotonic;
    this.info = info;
    req[kStream] = this;
    res[kStream] = this;
    res.on('close', onResponseClose);
    const connection = (socket as TrackedSocket)[kConnection];
    if (connection !== undefined) connection.activeStreams++;
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
      this.hcm.context.log.error(`bug while handling ${this.head.method} ${this.head.path}: ${(err as Error).stack ?? err}`);
      this.sendLocalReply(500, '', 0, 'internal_error', true);
    }
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
    if (req.rawHeaders.length > 2 * hcm.maxHeadersCount) {
      this.sendLocalReply(431, '', 0, 'too_many_headers', true);
      return;
    }
    const te = headers['transfer-encoding'];
    if (te !== undefined && te.toLowerCase() !== 'chunked') {
      // Node's parser hands over the head of `Transfer-Encoding: xchunked` and only fails on the body; Envoy's
      // codec refuses transfer-codings it does not understand (400) before anything goes upstream.
      this.sendLocalReply(400, 'Bad Request', 0, 'invalid_transfer_encoding', true);
      return;
    }
    // Always set (0 disables): it replaces the connection idle timeout set when the connection was accepted.
    this.res.setTimeout(hcm.streamIdleTimeoutMs);
    if (hcm.streamIdleTimeoutMs > 0) this.res.on('timeout', onStreamIdleTimeout);
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
    if (headers.upgrade !== undefined && /\bupgrade\b/i.test(String(headers.connection ?? ''))) {
      this.sendLocalReply(403, '', 0, 'upgrade_failed');
      return;
    }
    if (hcm.stripAnyHostPort || (hcm.stripMatchingHostPort && authority.endsWith(`:${hcm.context.listenerPort}`))) {
      authority = stripPort(authority);
    }
    this.head.authority = authority;
    headers.host = authority;
    this.mutateRequestHeaders();

    const vhost = hcm.routeTable.selectVirtualHost(authority.toLowerCase());
    const ctx: MatchContext | undefined = vhost ? newMatchContext(this.head) : undefined;
    const route = vhost && ctx ? vhost.routes.match(ctx) : undefined;
    if (vhost === undefined || route === undefined || ctx === undefined) {
      hcm.stats.counters[S.no_route]++;
      this.sendLocalReply(404, '', ResponseFlag.NR, 'route_not_found');
      return;
    }
    this.vhost = vhost;
    this.route = route;
    this.mutations = route.mutations;
    this.info.routeName = route.name;
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
    if (this.external) for (const name of hcm.routeTable.internalOnlyHeaders) delete headers[name];
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
    this.info.upstreamHost = host.key;
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
    this.timeoutMs = action.timeoutMs;
    if (action.timeoutMs > 0 && !hcm.suppressEnvoyHeaders) headers['x-envoy-expected-rq-timeout-ms'] = String(action.timeoutMs);

    const req = this.req;
    const sentHeaders = upstreamHeaders(headers);
    this.upstreamStart = performance.now();
    this.startUpstream(cluster, host);
    host.dispatcher().dispatch(
      {
        path: this.head.path,
        method: this.head.method as Dispatcher.HttpMethod,
        headers: sentHeaders,
        body: this.hasBody ? req : null,
        headersTimeout: 0,
        bodyTimeout: 0,
        reset: host.closeAfterEachRequest,
      },
      this,
    );
    if (action.mirrorPolicies !== undefined) {
      const body = this.hasBody ? req : undefined;
      this.mirrors = startMirrors(action.mirrorPolicies, hcm.context, this.head, sentHeaders, body, this.timeoutMs, cluster);
    }
    if (!this.hasBody || req.complete) this.onRequestComplete();
    else req.on('end', onRequestEnd);
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

  // ---- upstream request stats ----------------------------------------------------------------------------

  private startUpstream(cluster: Cluster, host: Host): void {
    this.cluster = cluster;
    this.host = host;
    this.upstreamPending = true;
    this.upstreamActive = true;
    countUpstreamRequestStart(cluster, host);
  }

  /** The request got a connection: no longer pending. */
  private upstreamAssigned(): void {
    if (!this.upstreamPending) return;
    this.upstreamPending = false;
    countUpstreamRequestAssigned(this.cluster!);
  }

  /** `upstream_rq_<code>`, `upstream_rq_<N>xx` and `upstream_rq_completed`, for a response from upstream or generated for it. */
  private chargeUpstreamCode(status: number): void {
    countUpstreamResponseCode(this.cluster!, status);
  }

  /** Ends the upstream request's accounting, once, however it ended. */
  private finishUpstream(success: boolean): void {
    if (!this.upstreamActive) return;
    this.upstreamActive = false;
    this.upstreamAssigned();
    countUpstreamRequestEnd(this.cluster!, this.host!, success);
  }

  // ---- undici dispatch handler ---------------------------------------------------------------------------

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.upstreamAssigned();
    if (this.ended) {
      controller.abort(new Error('downstream request ended'));
      return;
    }
    // undici starts reading the body right after this call: counting from here sees every chunk, and adds a
    // listener to a stream that is about to flow anyway. Once only, should undici ever call this again.
    if (this.hasBody && this.controller === undefined) this.req.on('data', onRequestData);
    this.controller = controller;
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    this.controller = controller;
    if (statusCode < 200 || this.ended) return;
    this.chargeUpstreamCode(statusCode);
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
      headers['x-envoy-upstream-service-time'] = String(Math.round(performance.now() - this.upstreamStart));
    }
    if (this.generatedCookies !== undefined) {
      const upstream = headers['set-cookie'];
      headers['set-cookie'] = upstream === undefined ? this.generatedCookies : ([] as string[]).concat(upstream, this.generatedCookies);
    }
    this.finalizeResponseHeaders(headers);
    this.info.responseCode = statusCode;
    this.info.responseCodeDetails = 'via_upstream';
    this.info.responseHeaders = headers;
    this.info.firstResponseByteMonotonic = performance.now();
    res.writeHead(statusCode, headers);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.info.bytesSent += chunk.length;
    if (!this.res.write(chunk)) {
      controller.pause();
      if (this.res.listenerCount('drain') === 0) this.res.on('drain', onResponseDrain);
    }
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: Record<string, string | string[] | undefined>): void {
    this.clearTimers();
    this.cluster!.stats.histograms[CH.upstream_rq_time]!.record(performance.now() - this.upstreamStart);
    this.finishUpstream(this.info.responseCode < 500);
    if (this.ended) return;
    if (this.forwardTrailers) {
      if (Object.keys(trailers).length > 0) {
        this.res.addTrailers(trailers as Record<string, string>);
        this.info.responseTrailers = trailers as Record<string, string>;
      }
    }
    this.info.lastResponseByteMonotonic = performance.now();
    this.ended = true;
    this.res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error & { code?: string }): void {
    this.clearTimers();
    this.finishUpstream(false);
    // Ended: the proxy aborted the request itself (timeouts, downstream gone) and counted why.
    if (this.ended) return;
    const cluster = this.cluster!.stats;
    if (this.res.headersSent) {
      // The response has started: Envoy resets the stream, which on HTTP/1.1 closes the connection.
      cluster.counters[CS.upstream_rq_rx_reset]++;
      this.hcm.stats.counters[S.rq_reset_after_downstream_response_started]++;
      this.info.responseFlags |= ResponseFlag.UR;
      this.ended = true;
      this.res.destroy();
      return;
    }
    const failure = classifyUpstreamFailure(error);
    this.chargeUpstreamCode(503);
    if (error.code === 'UND_ERR_CONNECT_TIMEOUT') {
      this.info.upstreamTransportFailureReason = error.message;
      this.sendLocalReply(503, UPSTREAM_FAILURE_PREFIX + 'connection timeout', ResponseFlag.UF, 'upstream_reset_before_response_started{connection_timeout}');
    } else if (failure === UpstreamFailure.ConnectFailure) {
      this.info.upstreamTransportFailureReason = error.message;
      this.sendLocalReply(503, UPSTREAM_FAILURE_PREFIX + 'connection failure', ResponseFlag.UF, 'upstream_reset_before_response_started{connection_failure}');
    } else if (failure === UpstreamFailure.ProtocolError) {
      cluster.counters[CS.upstream_cx_protocol_error]++;
      this.sendLocalReply(503, UPSTREAM_FAILURE_PREFIX + 'protocol error', ResponseFlag.UPE, 'upstream_reset_before_response_started{protocol_error}');
    } else {
      cluster.counters[CS.upstream_rq_rx_reset]++;
      this.sendLocalReply(503, UPSTREAM_FAILURE_PREFIX + 'connection termination', ResponseFlag.UC, 'upstream_reset_before_response_started{connection_termination}');
    }
  }

  // ---- timers and downstream events ------------------------------------------------------------------------

  onRequestComplete(): void {
    clearTimeout(this.requestTimer);
    this.requestTimer = undefined;
    if (this.info.lastRequestByteMonotonic === 0) this.info.lastRequestByteMonotonic = performance.now();
    if (this.timeoutMs > 0 && !this.ended) this.routeTimer = setTimeout(onRouteTimeoutTimer, this.timeoutMs, this);
  }

  // The timeouts answer (or reset) before aborting the upstream request: the abort reports back through
  // onResponseError synchronously, which would otherwise answer first with a 503 reset.
  onRouteTimeout(): void {
    this.routeTimer = undefined;
    this.cluster!.stats.counters[CS.upstream_rq_timeout]++;
    this.host!.stats.counters[HS.rq_timeout]++;
    if (this.res.headersSent) {
      this.info.responseFlags |= ResponseFlag.UT;
      this.ended = true;
      this.res.destroy();
    } else {
      this.chargeUpstreamCode(504);
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
    this.controller?.resume();
  }

  onDownstreamClose(): void {
    if (this.res.writableFinished) {
      // Back to the connection idle timeout until the next request on this connection.
      if (!this.socket.destroyed) this.socket.setTimeout(this.hcm.idleTimeoutMs);
    } else if (this.ended) {
      // The proxy reset the stream itself (upstream reset or timeout after the response started).
      this.hcm.stats.counters[S.downstream_rq_tx_reset]++;
    } else {
      this.info.responseFlags |= ResponseFlag.DC;
      this.ended = true;
      this.hcm.stats.counters[S.downstream_rq_rx_reset]++;
      if (this.upstreamActive) this.cluster!.stats.counters[CS.upstream_rq_tx_reset]++;
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
    const connection = (this.socket as TrackedSocket)[kConnection];
    if (connection !== undefined) connection.activeStreams--;
    this.mirrors?.release();
    const hcm = this.hcm;
    const stats = hcm.stats;
    stats.gauges[SG.downstream_rq_active]--;
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
  }

  private abortUpstream(reason: string): void {
    const controller = this.controller;
    if (controller !== undefined && !controller.aborted) controller.abort(new Error(reason));
  }

  private clearTimers(): void {
    if (this.routeTimer !== undefined) clearTimeout(this.routeTimer);
    if (this.requestTimer !== undefined) clearTimeout(this.requestTimer);
    this.routeTimer = this.requestTimer = undefined;
  }

  // ---- responses ---------------------------------------------------------------------------------------

  /** `server`, response header mutations and `x-request-id`, on proxied and local responses alike. */
  private finalizeResponseHeaders(headers: HeaderMap): void {
    const hcm = this.hcm;
    const transformation = hcm.serverHeaderTransformation;
    if (transformation === 'OVERWRITE' || (transformation === 'APPEND_IF_ABSENT' && headers.server === undefined)) {
      headers.server = hcm.serverName;
    }
    if (this.mutations !== undefined) applyHeaderMutations(this.mutations.response, headers, this.info);
    if (hcm.alwaysSetRequestIdInResponse && this.info.requestId) headers['x-request-id'] = this.info.requestId;
    if (this.vhost?.includeAttemptCountInResponse && this.info.upstreamRequestAttemptCount > 0) {
      headers['x-envoy-attempt-count'] = String(this.info.upstreamRequestAttemptCount);
    }
    if (hcm.via) headers.via = headers.via ? `${headers.via}, ${hcm.via}` : hcm.via;
    if (hcm.draining) {
      headers.connection = 'close';
      hcm.stats.counters[S.downstream_cx_drain_close]++;
    }
  }

  /**
   * Envoy's sendLocalReply: a response generated by the proxy (404 NR, 503 UH, redirects, direct responses...),
   * passed through `local_reply_config`. Once the response has started, the stream is reset instead.
   */
  sendLocalReply(status: number, body: string, flags: number, details: string, closeConnection = false, location?: string): void {
    this.clearTimers();
    this.info.responseFlags |= flags;
    this.info.responseCodeDetails = details;
    const res = this.res;
    if (res.headersSent || this.ended) {
      this.ended = true;
      res.destroy();
      return;
    }
    this.ended = true;
    const reply = this.hcm.localReply.render(this.info, status, body);
    const headers: HeaderMap = {};
    if (location !== undefined) headers.location = location;
    const length = Buffer.byteLength(reply.body);
    if (length > 0) headers['content-type'] = reply.contentType;
    headers['content-length'] = length;
    this.finalizeResponseHeaders(headers);
    if (reply.headers) applyHeaderMutation(reply.headers, headers, this.info);
    if (closeConnection) headers.connection = 'close';
    headers.date = httpDate();
    this.info.responseCode = reply.status;
    this.info.responseHeaders = headers;
    const head = this.head.method === 'HEAD';
    this.info.bytesSent = head ? 0 : length;
    res.writeHead(reply.status, headers);
    res.end(head ? undefined : reply.body);
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
