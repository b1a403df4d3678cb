import { randomUUID } from 'node:crypto';
import type { TokenBuckets } from '../ratelimit/token-bucket.js';
import { STATUS_CODES } from 'node:http';
import type { BlockList, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Readable } from 'node:stream';
import type { envoy } from '../../generated/envoy.js';
import type { ConfigError } from '../../config/errors.js';
import type { StatScope, StatsStore } from '../../stats/store.js';
import type { Logger } from '../../util/logger.js';
import { httpDate } from '../../util/http-date.js';
import { listen, type Listeners, unlisten } from '../../util/listeners.js';
import { type AccessLogger, compileAccessLogs, connectionStreamInfo, emitAccessLogs } from '../access-log/access-log.js';
import type { AccessLogSinks } from '../access-log/sinks.js';
import { ResponseFlag } from '../response-flags.js';
import { RETRY_REQUEST_HEADERS } from '../router/retry-policy.js';
import type { Runtime } from '../runtime/runtime.js';
import { applyHeaderMutation, applyHeaderMutations, type HeaderMap, type MutationChains } from '../router/header-mutation.js';
import { ActionKind } from '../router/route-action.js';
import { type MatchContext, newMatchContext, type RouteEntry, RouteTable, stripPort, type VirtualHost } from '../router/route-table.js';
import { newStreamInfo, type RequestHead, type StreamInfo } from '../stream-info.js';
import type { ClusterManager } from '../upstream/cluster-manager.js';
import { http2Settings } from '../upstream/cluster-settings.js';
import { inBlockList } from '../cidr.js';
import { grpcMessage, httpToGrpcStatus, isGrpcContentType } from '../grpc.js';
import { clientAddressFromXff, compileInternalAddresses, plainAddress } from './forwarded.js';
import type { DecoderFilterCallbacks, EncoderFilterCallbacks, HttpFilterRegistry, ResponseHead, StreamFilter } from './filter.js';
import { type FilterCallbacksSource, HttpFilterChain } from './filter-chain.js';
import { DECODE_CALLS, ENCODE_CALLS, type FilterCalls, FilterIteration, type FilterIterationOwner } from './filter-manager.js';
import { LocalReplyRenderer } from './local-reply.js';
import { compilePathNormalizer } from './path-normalization.js';
import { HCM_STATS, LISTENER_HTTP_STATS } from './stats.js';
import type { CodecRequest, CodecResponse, CodecStreamHandler } from './codec.js';
import {
  type DownstreamResponse,
  HEADERS_TIMEOUT,
  Http1ServerConnection,
  type ServerConnectionOptions,
  type ServerConnectionOwner,
} from './http1/server-connection.js';
import { type Http2ConnectionOptions, type Http2ConnectionOwner, Http2Response, Http2ServerConnection } from './http2/server-connection.js';
import { type PrefaceOwner, sniffPreface } from './http2/preface.js';
import { compileUpgradeConfigs, Tunnel, type TunnelOwner, type UpgradeMap, upgradeAllowed } from './upgrade.js';
import type { InitManager } from '../init-manager.js';

const S = HCM_STATS.c;
const SG = HCM_STATS.g;
const SH = HCM_STATS.h;
const LS = LISTENER_HTTP_STATS.c;

type HcmConfig = envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager;

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
  /** The HTTP filter extensions the program was composed with. */
  httpFilters: HttpFilterRegistry;
  /** The bootstrap's `node.cluster`, for the filters. */
  localCluster: string;
  init: InitManager;
  tokenBuckets: TokenBuckets;
  /** The listener's `per_connection_buffer_limit_bytes`: what filters may buffer of a body. */
  bufferLimit: number;
}

/** Envoy's default downstream `max_concurrent_streams`: no limit but the protocol's. */
const MAX_STREAMS = 2_147_483_647;

/** Envoy's default `per_connection_buffer_limit_bytes`. */
export const DEFAULT_BUFFER_LIMIT = 1024 * 1024;
const EMPTY = Buffer.alloc(0);

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
 * Envoy's HTTP connection manager: runs the downstream codec on the connections its listener hands it,
 * normalises and sanitises requests, selects routes and runs the HTTP filters, the router last. It holds no
 * routing, retry or upstream logic: that is the router's (src/dataplane/router/router.ts). Everything
 * configurable is resolved here once; per request an ActiveStream, its filters and their handles are allocated.
 */
export class HttpConnectionManager implements ServerConnectionOwner, Http2ConnectionOwner, PrefaceOwner {
  private readonly connections = new Set<Http1ServerConnection | Http2ServerConnection>();
  private readonly codecOptions: ServerConnectionOptions;
  private readonly http2Options: Http2ConnectionOptions;
  /** `codec_type`: AUTO picks HTTP/2 by ALPN or the h2c preface. */
  readonly codecType: string;
  /** Set once this manager's filter chain is retired or handed over: picks the manager that serves further requests. */
  private successor: ((socket: Socket) => HttpConnectionManager | undefined) | undefined;
  /** Handed over (only the routes changed): further requests keep their connection open. */
  private handedOver = false;
  readonly statPrefix: string;
  readonly routeTable: RouteTable;
  /** The HTTP filters, the router last. */
  readonly filterChain: HttpFilterChain;
  readonly localReply: LocalReplyRenderer;
  readonly bufferLimit: number;
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
  /** Set when the listener drains (startDraining): every response then closes its connection. */
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
    this.statPrefix = config.stat_prefix ?? '';
    this.stats = context.stats.scope(HCM_STATS, `http.${this.statPrefix}.`);
    this.listenerStats = context.stats.scope(
      LISTENER_HTTP_STATS,
      () => `${context.listenerStatPrefix()}http.${this.statPrefix}.`,
      `${context.listenerStatKey} http.${this.statPrefix}.`,
    );
    const filterContext = {
      stats: context.stats,
      statPrefix: this.statPrefix,
      runtime: context.runtime,
      log: context.log,
      clusters: context.clusters,
      localCluster: context.localCluster,
      init: context.init,
      tokenBuckets: context.tokenBuckets,
    };
    this.filterChain = HttpFilterChain.compile(config.http_filters, context.httpFilters, filterContext, path, errors);
    this.bufferLimit = context.bufferLimit;
    this.routeTable = new RouteTable(config.route_config ?? {}, `${path}.route_config`, errors, context.runtime, this.filterChain);
    this.localReply = new LocalReplyRenderer(config.local_reply_config, `${path}.local_reply_config`, errors, context.runtime);
    this.accessLogs = compileAccessLogs(config.access_log, `${path}.access_log`, errors, context);
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
      enableTrailers: this.enableTrailers,
    };
    this.idleTimeoutMs = common.idle_timeout ?? 3_600_000;
    this.codecType = config.codec_type ?? 'AUTO';
    const http2 = http2Settings(config.http2_protocol_options ?? {}, `${path}.http2_protocol_options`, errors, MAX_STREAMS);
    this.http2Options = {
      settings: { maxConcurrentStreams: http2.maxConcurrentStreams, initialWindowSize: http2.initialStreamWindowSize, maxHeaderListSize: this.codecOptions.maxHeaderSize },
      initialConnectionWindowSize: http2.initialConnectionWindowSize,
      idleTimeoutMs: this.idleTimeoutMs,
    };
  }

  /** The ALPN protocols a TLS filter chain offers when it configures none: Envoy's, for the codec type. */
  get defaultAlpn(): string[] | undefined {
    if (this.codecType === 'AUTO') return ['h2', 'http/1.1'];
    return this.codecType === 'HTTP2' ? ['h2'] : undefined;
  }

  // ServerConnectionOwner, Http2ConnectionOwner
  onRequest(connection: Http1ServerConnection | Http2ServerConnection, request: CodecRequest, response: DownstreamResponse | Http2Response): void {
    const successor = this.successor;
    if (successor !== undefined) {
      if (!this.handedOver) {
        // A request on a connection of a retired chain: served by the chain selected now, and the connection
        // closes after it (HTTP/2: GOAWAY, its streams in flight finishing).
        if (response instanceof Http2Response) response.connection.drain();
        else response.keepAlive = false;
      }
      const current = successor(connection.socket);
      // Through its onRequest: the successor may itself have been handed over or retired since.
      if (current !== undefined && current !== this) {
        current.onRequest(connection, request, response);
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

  /** The HTTP/2 session failed on the client's bytes (a bad preface, a frame nghttp2 refused): it sent GOAWAY. */
  onHttp2ProtocolError(_connection: Http2ServerConnection, flood: boolean): void {
    this.stats.counters[S.downstream_cx_protocol_error]++;
    if (flood) this.stats.counters[S['http2.outbound_control_flood']]++;
  }

  /** The client reset an HTTP/2 stream before its response was complete. */
  onHttp2StreamReset(): void {
    this.stats.counters[S['http2.rx_reset']]++;
  }

  /** The connection timed out with no stream in flight: Envoy's idle_timeout. */
  onIdleTimeout(connection: Http1ServerConnection | Http2ServerConnection): void {
    this.stats.counters[S.downstream_cx_idle_timeout]++;
    connection.socket.destroy();
  }

  /** Connection teardown stats; a peer that sent FIN first closed it (remote), otherwise the proxy did (local). */
  onClose(connection: Http1ServerConnection | Http2ServerConnection, activeRequest: boolean): void {
    this.connections.delete(connection);
    const socket = connection.socket;
    const stats = this.stats;
    const http2 = connection instanceof Http2ServerConnection;
    // An HTTP/2 session reads the socket itself: whether the peer ended it is the session's to say.
    const remote = http2 ? connection.closedByPeer : socket.readableEnded;
    stats.gauges[SG.downstream_cx_active]--;
    stats.gauges[http2 ? SG.downstream_cx_http2_active : SG.downstream_cx_http1_active]--;
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

  /**
   * Runs a codec on an accepted (and, with TLS, handshaken) connection: `codec_type`'s, or with AUTO HTTP/2 when
   * ALPN chose `h2` or a plaintext connection starts with the HTTP/2 preface, else HTTP/1.1.
   */
  handleConnection(socket: Socket): void {
    const type = this.codecType;
    if (type === 'HTTP2' || (type === 'AUTO' && (socket as TLSSocket).alpnProtocol === 'h2')) {
      this.startCodec(socket, true);
    } else if (type === 'AUTO' && !(socket as TLSSocket).encrypted) {
      // The idle timeout also bounds the wait for the first bytes.
      socket.setTimeout(this.idleTimeoutMs);
      sniffPreface(socket, this);
    } else {
      this.startCodec(socket, false);
    }
  }

  // PrefaceOwner
  onPreface(socket: Socket, http2: boolean): void {
    this.startCodec(socket, http2);
    // An HTTP/2 session takes the bytes put back from the socket's buffer and reads its handle itself: resuming
    // the socket would hand those bytes to no one.
    if (!http2) socket.resume();
  }

  private startCodec(socket: Socket, http2: boolean): void {
    const stats = this.stats;
    stats.counters[S.downstream_cx_total]++;
    stats.counters[http2 ? S.downstream_cx_http2_total : S.downstream_cx_http1_total]++;
    stats.gauges[SG.downstream_cx_active]++;
    stats.gauges[http2 ? SG.downstream_cx_http2_active : SG.downstream_cx_http1_active]++;
    if (this.context.scheme === 'https') {
      stats.counters[S.downstream_cx_ssl_total]++;
      stats.gauges[SG.downstream_cx_ssl_active]++;
    }
    if (http2) {
      // The session keeps its own idle timeout (it reads the socket itself): the socket's is not used.
      socket.setTimeout(0);
      const connection = new Http2ServerConnection(this, socket, this.http2Options);
      this.connections.add(connection);
      if (this.draining) connection.drain();
      return;
    }
    // Envoy's idle_timeout: a connection with no stream in flight is closed after it. Each stream replaces it
    // with the stream idle timeout, and puts it back when it ends.
    socket.setTimeout(this.idleTimeoutMs);
    this.connections.add(new Http1ServerConnection(this, socket, this.codecOptions));
  }

  /**
   * Retires this manager (its filter chain left the listener's configuration): a further request on one of its
   * connections is served by the manager `select` picks for the connection now, and closes the connection.
   */
  retire(select: (socket: Socket) => HttpConnectionManager | undefined): void {
    this.successor = select;
    this.handedOver = false;
  }

  /**
   * Hands this manager's connections to `next`, the manager of a chain that differs in routes only: they stay
   * open, and `next` serves every further request on them.
   */
  handOver(next: HttpConnectionManager): void {
    this.successor = () => next;
    this.handedOver = true;
  }

  /** Whether a request is in flight on one of this manager's connections. */
  get busy(): boolean {
    for (const connection of this.connections) if (!connection.idle) return true;
    return false;
  }

  /**
   * The listener drains: every HTTP/1.1 response from now on closes its connection, and HTTP/2 connections get
   * a GOAWAY, their streams in flight finishing.
   */
  startDraining(): void {
    this.draining = true;
    for (const connection of this.connections) if (connection instanceof Http2ServerConnection) connection.drain();
  }

  /** Closes keep-alive connections that have no request in flight. */
  closeIdleConnections(): void {
    for (const connection of this.connections) if (connection.idle) connection.socket.destroy();
  }

  /** Destroys every connection. */
  close(): void {
    for (const connection of this.connections) {
      if (connection instanceof Http2ServerConnection) connection.destroy();
      else connection.socket.destroy();
    }
    if (this.closed) return;
    this.closed = true;
    this.context.stats.release(this.stats);
    this.context.stats.release(this.listenerStats);
    this.filterChain.release();
  }
}

function onRequestTimeoutTimer(stream: ActiveStream): void {
  stream.onRequestTimeout();
}

function onBodyData(this: TrackedBody, chunk: Buffer): void {
  this[kStream]?.onBodyData(chunk);
}

function onBodyEnd(this: TrackedBody): void {
  this[kStream]?.onBodyEnd();
}

/**
 * What the router gets beyond any filter's callbacks: the stream's routing state, which only the terminal filter
 * of Portico's own core may read and change.
 */
export interface RouterFilterCallbacks extends DecoderFilterCallbacks {
  readonly matchContext: MatchContext | undefined;
  /** The route's header mutations, or those of the weighted cluster the router chose. */
  mutations: MutationChains | undefined;
  /** The `Upgrade` header of an upgrade request the connection manager allowed. */
  readonly upgradeType: string | undefined;
  /** A circuit breaker refused the request: the local reply says so with `x-envoy-overloaded`. */
  overloaded: boolean;
}

/**
 * One filter's view of its stream: the callbacks it was created with, which know its place in the chain (for
 * continueDecoding and the responses it starts).
 */
class FilterHandle implements RouterFilterCallbacks, EncoderFilterCallbacks {
  constructor(
    private readonly stream: ActiveStream,
    /** Position in the stream's filters. */
    readonly index: number,
  ) {}

  get head(): RequestHead {
    return this.stream.head;
  }
  get info(): StreamInfo {
    return this.stream.info;
  }
  get route(): RouteEntry | undefined {
    return this.stream.route;
  }
  get virtualHost(): VirtualHost | undefined {
    return this.stream.vhost;
  }
  get external(): boolean {
    return this.stream.external;
  }
  get responseStarted(): boolean {
    return this.stream.res.headersSent;
  }
  get connection(): Socket {
    return this.stream.req.socket;
  }
  get matchContext(): MatchContext | undefined {
    return this.stream.matchContext;
  }
  get mutations(): MutationChains | undefined {
    return this.stream.mutations;
  }
  set mutations(value: MutationChains | undefined) {
    this.stream.mutations = value;
  }
  get upgradeType(): string | undefined {
    return this.stream.upgradeAccepted ? this.stream.upgradeType : undefined;
  }
  get overloaded(): boolean {
    return this.stream.overloaded;
  }
  set overloaded(value: boolean) {
    this.stream.overloaded = value;
  }

  sendLocalReply(status: number, body: string, flags: number, details: string, location?: string, grpcStatus?: number): void {
    this.stream.sendLocalReply(status, body, flags, details, false, location, grpcStatus);
  }
  resetStream(): void {
    this.stream.resetStream();
  }
  setStreamIdleTimeout(ms: number): void {
    this.stream.res.setTimeout(ms);
  }
  clearRouteCache(): void {
    this.stream.clearRouteCache();
  }
  continueDecoding(): void {
    this.stream.guard(this.stream.decoder, this.index);
  }
  decodingBuffer(): Buffer | undefined {
    return this.stream.decoder?.buffered(this.index);
  }
  setDecodingBuffer(body: Buffer): void {
    this.stream.decoder?.setBuffered(this.index, body);
  }
  injectDecodedDataToFilterChain(data: Buffer, endStream: boolean): void {
    this.stream.decoder?.data(this.index + 1, data, endStream);
  }
  injectEncodedDataToFilterChain(data: Buffer, endStream: boolean): void {
    this.stream.encoder?.data(this.stream.encodePosition(this.index) + 1, data, endStream);
  }
  encodeHeaders(response: ResponseHead, endStream: boolean): void {
    this.stream.startResponse(this.index, response, endStream);
  }
  encodeData(chunk: Buffer, endStream: boolean): void {
    this.stream.encodeData(chunk, endStream);
  }
  encodeTrailers(trailers: HeaderMap): void {
    this.stream.encodeTrailers(trailers);
  }
  onDecoderFilterAboveWriteBufferHighWatermark(): void {
    this.stream.readDisable(true);
  }
  onDecoderFilterBelowWriteBufferLowWatermark(): void {
    this.stream.readDisable(false);
  }
  upgradeResponse(response: ResponseHead, upstream: Socket, attempt: TunnelOwner): void {
    this.stream.upgradeResponse(response, upstream, attempt);
  }
  continueEncoding(): void {
    this.stream.guard(this.stream.encoder, this.stream.encodePosition(this.index));
  }
  encodingBuffer(): Buffer | undefined {
    return this.stream.encoder?.buffered(this.stream.encodePosition(this.index));
  }
  setEncodingBuffer(body: Buffer): void {
    this.stream.encoder?.setBuffered(this.stream.encodePosition(this.index), body);
  }
}

/** The response side of a stream: its encoder filters end at the downstream codec. */
class ResponseSink implements FilterIterationOwner<ResponseHead> {
  constructor(private readonly stream: ActiveStream) {}

  get stopped(): boolean {
    return this.stream.ended;
  }
  onHeadersPassed(response: ResponseHead, endStream: boolean): void {
    this.stream.writeResponseHeaders(response, endStream);
  }
  onDataPassed(chunk: Buffer, endStream: boolean): void {
    this.stream.writeResponseData(chunk, endStream);
  }
  onTrailersPassed(trailers: HeaderMap): void {
    this.stream.writeResponseTrailers(trailers);
  }
  onBufferOverflow(): void {
    // Envoy: a response body an encoder filter buffers past the limit is a 500 (or a reset once it started).
    this.stream.sendLocalReply(500, 'Internal Server Error', 0, 'response_payload_too_large');
  }
  onBufferAboveLimit(): void {
    this.stream.downstreamWatermark(true);
  }
  onBufferBelowLimit(): void {
    this.stream.downstreamWatermark(false);
  }
}

/**
 * One request/response exchange in the connection manager (Envoy's ActiveStream and its filter manager):
 * request checks and sanitising, route selection, the HTTP filters (the router last) in both directions,
 * the stream's timeouts, and its stats and access log once it is over.
 */
class ActiveStream implements CodecStreamHandler, FilterIterationOwner<RequestHead>, FilterCallbacksSource {
  readonly info: StreamInfo;
  readonly head: RequestHead;
  route: RouteEntry | undefined;
  vhost: VirtualHost | undefined;
  matchContext: MatchContext | undefined;
  /** Header mutations of the route (or of its chosen weighted cluster), once a route is selected. */
  mutations: MutationChains | undefined;
  external = false;
  overloaded = false;
  /** This stream's filters, the router last, in chain order; empty until the request passed its checks. */
  private readonly filters: StreamFilter[] = [];
  decoder: FilterIteration<RequestHead> | undefined;
  encoder: FilterIteration<ResponseHead> | undefined;
  /** The encoder filters' positions in `filters`, in encode order (reverse chain order). */
  private encoderIndexes: number[] | undefined;
  /** No decode callback runs any more: the request was answered or the stream reset. */
  answered = false;
  /** The response is complete, or the stream was reset. */
  ended = false;
  private requestTimer: NodeJS.Timeout | undefined;
  /** The `Upgrade` header of an upgrade request; set once the upgrade is allowed (`upgradeAccepted`). */
  readonly upgradeType: string | undefined;
  upgradeAccepted = false;
  /** The raw byte tunnel, once the upstream switched protocols. */
  private tunnel: Tunnel | undefined;
  private readDisabled = false;
  private downstreamFull = false;
  private destroyed = false;

  constructor(
    private readonly hcm: HttpConnectionManager,
    readonly req: CodecRequest,
    readonly res: CodecResponse,
  ) {
    const socket = req.socket;
    this.head = { method: req.method, path: req.url, authority: '', scheme: hcm.context.scheme, headers: req.headers };
    const info = newStreamInfo(this.head, 0);
    info.protocol = req.protocol ?? (req.versionMinor === 0 ? 'HTTP/1.0' : 'HTTP/1.1');
    info.downstreamDirectRemoteAddress = plainAddress(socket.remoteAddress);
    info.downstreamDirectRemotePort = socket.remotePort ?? 0;
    info.downstreamRemoteAddress = info.downstreamDirectRemoteAddress;
    info.downstreamRemotePort = info.downstreamDirectRemotePort;
    info.downstreamLocalAddress = plainAddress(socket.localAddress);
    info.downstreamLocalPort = socket.localPort ?? 0;
    if (hcm.context.scheme === 'https') info.requestedServerName = (socket as Socket & { servername?: string | false }).servername || '';
    this.upgradeType = req.upgrade ? String(req.headers.upgrade) : undefined;
    // A request without a body is complete with its head (Envoy's REQUEST_DURATION is then 0).
    if (req.body === undefined) info.lastRequestByteMonotonic = info.startMonotonic;
    this.info = info;
    res.handler = this;
    const stats = hcm.stats;
    stats.counters[S.downstream_rq_total]++;
    stats.counters[req.protocol === 'HTTP/2' ? S.downstream_rq_http2_total : S.downstream_rq_http1_total]++;
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

  /** Runs a filter's continueDecoding/continueEncoding, a bug there answering 500 like any other. */
  guard(iteration: FilterIteration<RequestHead> | FilterIteration<ResponseHead> | undefined, position: number): void {
    if (iteration === undefined || position < 0) return;
    try {
      iteration.resume(position);
    } catch (err) {
      this.onBug(err);
    }
  }

  /** A bug (in Portico or an HTTP filter): logged, counted, and a 500 for this request when it can still get one. */
  private onBug(err: unknown): void {
    this.hcm.context.log.error(`bug while handling ${this.head.method} ${this.head.path}: ${(err as Error).stack ?? err}`);
    this.hcm.stats.counters[S.rq_internal_error]++;
    // No filter runs on this reply: one of them may be what threw.
    this.encoder = undefined;
    this.encoderIndexes = [];
    this.sendLocalReply(500, '', 0, 'internal_error', true);
  }

  get stopped(): boolean {
    return this.answered;
  }

  /** Runs when the request head has arrived: validation, sanitising, routing, then the filters. */
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
    if (hcm.requestTimeoutMs > 0 && req.body !== undefined) {
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

    this.clearRouteCache();
    const route = this.route;
    if (this.upgradeType !== undefined && !this.acceptUpgrade(route)) return;
    hcm.filterChain.createStreamFilters(this, route, this.filters);
    const body = req.body;
    const decoder = new FilterIteration(this.filters, DECODE_CALLS as FilterCalls<RequestHead>, this, hcm.bufferLimit, true);
    this.decoder = decoder;
    decoder.headers(0, this.head, body === undefined);
    if (body !== undefined && !this.answered) {
      (body as TrackedBody)[kStream] = this;
      listen(body, BODY_LISTENERS);
    }
  }

  /**
   * Picks the virtual host and route from the request as it stands: once its head is sanitised, and again when
   * a filter asks (Envoy's clearRouteCache, after changing the headers). Filters already created keep the
   * per-route configuration they were created with; the router reads the new route.
   */
  clearRouteCache(): void {
    const vhost = this.hcm.routeTable.selectVirtualHost(this.head.authority.toLowerCase());
    const ctx: MatchContext | undefined = vhost ? newMatchContext(this.head) : undefined;
    const route = vhost && ctx ? vhost.routes.match(ctx) : undefined;
    this.vhost = vhost;
    this.route = route;
    this.matchContext = ctx;
    this.mutations = route?.mutations;
    this.info.routeName = route?.name ?? '';
  }

  // FilterCallbacksSource
  filterCallbacks(index: number): FilterHandle {
    return new FilterHandle(this, index);
  }

  // ---- request body ------------------------------------------------------------------------------------

  onBodyData(chunk: Buffer): void {
    this.info.bytesReceived += chunk.length;
    if (this.answered) return;
    try {
      this.decoder!.data(0, chunk, false);
    } catch (err) {
      this.onBug(err);
    }
  }

  onBodyEnd(): void {
    this.onRequestComplete();
    if (this.answered) return;
    const trailers = this.req.trailers;
    try {
      if (trailers !== undefined) this.decoder!.trailers(0, trailers);
      else this.decoder!.data(0, EMPTY, true);
    } catch (err) {
      this.onBug(err);
    }
  }

  private onRequestComplete(): void {
    if (this.requestTimer !== undefined) clearTimeout(this.requestTimer);
    this.requestTimer = undefined;
    if (this.info.lastRequestByteMonotonic === 0) this.info.lastRequestByteMonotonic = performance.now();
  }

  /** Pauses (or resumes) reading the request body, for a filter whose receiver is backed up. */
  readDisable(disable: boolean): void {
    if (disable === this.readDisabled) return;
    this.readDisabled = disable;
    const body = this.req.body;
    if (body === undefined) return;
    if (disable) body.pause();
    else body.resume();
  }

  // FilterIterationOwner<RequestHead>: the decoder chain ends in the router, which never lets iteration past.
  onHeadersPassed(): void {}
  onDataPassed(): void {}
  onTrailersPassed(): void {}
  onBufferOverflow(): void {
    this.sendLocalReply(413, 'Payload Too Large', 0, 'request_payload_too_large');
  }
  onBufferAboveLimit(): void {
    this.readDisable(true);
  }
  onBufferBelowLimit(): void {
    this.readDisable(false);
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

  // ---- responses ---------------------------------------------------------------------------------------

  /** Position in encode order of filter `index`; -1 when it has no encode callbacks. */
  encodePosition(index: number): number {
    return this.encoderIndexes?.indexOf(index) ?? -1;
  }

  /** The encoder chain of this stream's response: the filters with encode callbacks, in reverse chain order. */
  private setupEncoder(): FilterIteration<ResponseHead> {
    const filters = this.filters;
    const encoders: StreamFilter[] = [];
    let indexes = this.encoderIndexes;
    if (indexes === undefined) {
      indexes = [];
      for (let i = filters.length - 1; i >= 0; i--) {
        const f = filters[i]!;
        if (f.encodeHeaders !== undefined || f.encodeData !== undefined || f.encodeTrailers !== undefined) indexes.push(i);
      }
      this.encoderIndexes = indexes;
    }
    for (const i of indexes) encoders.push(filters[i]!);
    const encoder = new FilterIteration(encoders, ENCODE_CALLS as FilterCalls<ResponseHead>, new ResponseSink(this), this.hcm.bufferLimit, false);
    this.encoder = encoder;
    return encoder;
  }

  /**
   * A filter (`index`; -1 for the connection manager itself) starts the response: the route's response header
   * mutations, then every encoder filter in reverse chain order, as Envoy runs them. A response from
   * any filter but the router answers the request: nothing more of it is decoded. The router's proxied response
   * may start before the request is complete, which it goes on forwarding upstream.
   */
  startResponse(index: number, response: ResponseHead, endStream: boolean): void {
    if (this.ended || this.res.headersSent) return;
    if (index !== this.filters.length - 1) this.answered = true;
    if (this.requestTimer !== undefined) {
      // Envoy disarms request_timeout once the response starts.
      clearTimeout(this.requestTimer);
      this.requestTimer = undefined;
    }
    try {
      if (this.mutations !== undefined) applyHeaderMutations(this.mutations.response, response.headers, this.info);
      const encoder = this.encoder ?? this.setupEncoder();
      encoder.headers(0, response, endStream);
    } catch (err) {
      this.onBug(err);
    }
  }

  // Response body and trailers from the router (or a filter's own response); a filter that throws on them gets
  // the stream reset, the response having started.
  encodeData(chunk: Buffer, endStream: boolean): void {
    try {
      this.encoder?.data(0, chunk, endStream);
    } catch (err) {
      this.onBug(err);
    }
  }

  encodeTrailers(trailers: HeaderMap): void {
    try {
      this.encoder?.trailers(0, trailers);
    } catch (err) {
      this.onBug(err);
    }
  }

  writeResponseHeaders(response: ResponseHead, endStream: boolean): void {
    const headers = response.headers;
    const status = response.status;
    const hcm = this.hcm;
    const transformation = hcm.serverHeaderTransformation;
    if (transformation === 'OVERWRITE' || (transformation === 'APPEND_IF_ABSENT' && headers.server === undefined)) {
      headers.server = hcm.serverName;
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
    const reply = this.localReply;
    if (reply !== undefined) {
      this.localReply = undefined;
      if (reply.mutations) applyHeaderMutation(reply.mutations, headers, this.info);
      if (reply.closeConnection) headers.connection = 'close';
      headers.date = httpDate();
    }
    // A response that ends with its head says so with its length, as Envoy's HTTP/1 codec does.
    if (endStream && headers['content-length'] === undefined && status >= 200 && status !== 204 && status !== 304) headers['content-length'] = 0;
    const info = this.info;
    info.responseCode = status;
    info.responseHeaders = headers;
    // As Envoy's RESPONSE_DURATION: the first byte of a response from upstream (or a filter), not of a local reply.
    if (reply === undefined) info.firstResponseByteMonotonic = performance.now();
    const res = this.res;
    if (status === 101) {
      // The upgrade's answer: the connection now belongs to the tunnel (see upgradeResponse).
      headers.connection = 'upgrade';
      this.answered = true;
      res.writeHead(status, headers);
      res.end();
      return;
    }
    res.writeHead(status, headers);
    if (endStream) this.endResponse();
  }

  writeResponseData(chunk: Buffer, endStream: boolean): void {
    if (chunk.length > 0) {
      this.info.bytesSent += chunk.length;
      if (!this.res.write(chunk) && !this.downstreamFull) this.downstreamWatermark(true);
    }
    if (endStream) this.endResponse();
  }

  writeResponseTrailers(trailers: HeaderMap): void {
    this.info.responseTrailers = trailers as Record<string, string>;
    this.res.addTrailers(trailers);
    this.endResponse();
  }

  private endResponse(): void {
    if (this.ended) return;
    this.ended = true;
    this.answered = true;
    this.info.lastResponseByteMonotonic = performance.now();
    this.res.end();
  }

  /** The client's connection is full (or drained): every filter hears of it, the router pausing its upstream. */
  downstreamWatermark(full: boolean): void {
    this.downstreamFull = full;
    const filters = this.filters;
    for (let i = 0; i < filters.length; i++) {
      const f = filters[i]!;
      if (full) f.onAboveWriteBufferHighWatermark?.();
      else f.onBelowWriteBufferLowWatermark?.();
    }
  }

  /**
   * A 101 to an upgrade request: the head goes out through the encoder filters, then the tunnel carries bytes
   * both ways until the upstream closes.
   */
  upgradeResponse(response: ResponseHead, upstream: Socket, attempt: TunnelOwner): void {
    this.startResponse(this.filters.length - 1, response, true);
    if (this.info.responseCode !== 101) {
      // An encoder filter answered otherwise (or threw, and the client got a 500): no tunnel.
      upstream.destroy();
      attempt.complete();
      return;
    }
    this.tunnel = new Tunnel(this.req.socket, upstream, this.req.upgradeHead!, attempt);
  }

  /**
   * Envoy's sendLocalReply: a response generated by the proxy (404 NR, 503 UH, redirects, direct responses...),
   * passed through `local_reply_config` and the encoder filters. Once the response has started, the stream is
   * reset instead.
   */
  sendLocalReply(
    status: number,
    body: string,
    flags: number,
    details: string,
    closeConnection = false,
    location?: string,
    grpcStatus?: number,
  ): void {
    this.info.responseFlags |= flags;
    this.info.responseCodeDetails = details;
    this.answered = true;
    if (this.res.headersSent || this.ended) {
      this.resetStream();
      return;
    }
    this.destroyFilters();
    const reply = this.hcm.localReply.render(this.info, status, body);
    const headers: HeaderMap = {};
    if (location !== undefined) headers.location = location;
    if (this.overloaded) headers['x-envoy-overloaded'] = 'true';
    this.localReply = { mutations: reply.headers, closeConnection };
    if (isGrpcContentType(this.head.headers['content-type'])) {
      // As Envoy: a gRPC client gets a gRPC answer, HTTP 200 with the status in grpc-status, and no body.
      headers['content-type'] = 'application/grpc';
      headers['grpc-status'] = String(grpcStatus ?? httpToGrpcStatus(reply.status));
      if (reply.body !== '') headers['grpc-message'] = grpcMessage(reply.body);
      this.startResponse(-1, { status: 200, headers }, true);
      return;
    }
    const length = Buffer.byteLength(reply.body);
    if (length > 0) headers['content-type'] = reply.contentType;
    headers['content-length'] = length;
    const withBody = length > 0 && this.head.method !== 'HEAD';
    this.startResponse(-1, { status: reply.status, headers }, !withBody);
    if (withBody && !this.ended) this.encoder!.data(0, Buffer.from(reply.body), true);
  }

  /** What a local reply adds to its head once the encoder filters are through with it. */
  private localReply: { mutations: LocalReplyMutations | undefined; closeConnection: boolean } | undefined;

  /** Resets the stream: on HTTP/1.1 the connection closes. */
  resetStream(): void {
    this.answered = true;
    this.ended = true;
    this.destroyFilters();
    this.res.destroy();
  }

  // ---- timers and downstream events ------------------------------------------------------------------------

  onRequestTimeout(): void {
    this.requestTimer = undefined;
    if (this.ended) return;
    this.hcm.stats.counters[S.downstream_rq_timeout]++;
    if (this.res.headersSent) this.resetStream();
    else this.sendLocalReply(this.req.complete ? 504 : 408, 'request timeout', 0, 'request_overall_timeout', !this.req.complete);
  }

  onIdleTimeout(): void {
    if (this.ended) {
      this.res.destroy();
      return;
    }
    this.hcm.stats.counters[S.downstream_rq_idle_timeout]++;
    if (this.res.headersSent) {
      this.info.responseFlags |= ResponseFlag.SI;
      this.resetStream();
    } else {
      this.sendLocalReply(this.req.complete ? 504 : 408, 'stream timeout', ResponseFlag.SI, 'stream_idle_timeout', !this.req.complete);
    }
  }

  onDownstreamDrain(): void {
    if (this.downstreamFull) this.downstreamWatermark(false);
  }

  onDownstreamClose(): void {
    const body = this.req.body;
    if (body !== undefined) unlisten(body, BODY_LISTENERS);
    if (this.res.finished) {
      // Back to the connection idle timeout until the next request on this connection.
      if (!this.req.socket.destroyed) this.req.socket.setTimeout(this.hcm.idleTimeoutMs);
    } else if (this.ended) {
      // The proxy reset the stream itself (upstream reset or timeout after the response started).
      this.hcm.stats.counters[S.downstream_rq_tx_reset]++;
    } else {
      this.info.responseFlags |= ResponseFlag.DC;
      this.ended = this.answered = true;
      this.hcm.stats.counters[S.downstream_rq_rx_reset]++;
    }
    if (this.requestTimer !== undefined) clearTimeout(this.requestTimer);
    this.destroyFilters();
    this.onStreamComplete();
  }

  /** Every filter's onDestroy, once: the router abandons its upstream request and timers. */
  private destroyFilters(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    const filters = this.filters;
    for (let i = 0; i < filters.length; i++) {
      try {
        filters[i]!.onDestroy?.();
      } catch (err) {
        this.hcm.context.log.error(`bug in an HTTP filter's onDestroy: ${(err as Error).stack ?? err}`);
        this.hcm.stats.counters[S.rq_internal_error]++;
      }
    }
  }

  /** Runs once per stream, when its response has been sent or the stream was reset: stats and access logs. */
  private onStreamComplete(): void {
    const info = this.info;
    const now = performance.now();
    if (info.lastResponseByteMonotonic === 0) info.lastResponseByteMonotonic = now;
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
  }
}

type LocalReplyMutations = Parameters<typeof applyHeaderMutation>[0];

const BODY_LISTENERS: Listeners = [
  ['data', onBodyData],
  ['end', onBodyEnd],
];
