/**
 * The HTTP filter API: what an HTTP filter extension (src/extensions/filters/http/<name>/) implements and what a
 * stream offers it. Envoy's model: a request flows through the filters' decode callbacks in chain order to the
 * terminal filter (the router), and the response back through their encode callbacks in reverse order. Each
 * callback answers with a status; a filter that waits for something (a timer, an authorization server) stops
 * iteration and later resumes it with `continueDecoding()` / `continueEncoding()`, or answers with
 * `sendLocalReply()`. While a filter has stopped, the body that arrives is buffered by the stream (up to the
 * connection's buffer limit: 413 on requests, 500 on responses over it), or, with the watermark statuses, the
 * sender is paused instead.
 *
 * Three lifetimes, so that nothing expensive happens per request:
 * - a factory (one per extension, in the registry the program is composed with) compiles configuration;
 * - a filter config (one per connection manager and position in its chain) holds what the factory compiled, its
 *   stat handles, and creates the per-stream filters;
 * - a stream filter (one per request, small) holds that request's state.
 * Per-route configuration (`typed_per_filter_config`) is compiled with the route table, and the levels of each
 * route (route, virtual host, route configuration) are resolved once per route, when the configuration is built.
 */
import type { Socket } from 'node:net';
import type { ConfigError } from '../../config/errors.js';
import type { StatsStore } from '../../stats/store.js';
import type { Logger } from '../../util/logger.js';
import type { HeaderMap } from '../router/header-mutation.js';
import type { RouteEntry, VirtualHost } from '../router/route-table.js';
import type { Runtime } from '../runtime/runtime.js';
import type { ClusterManager } from '../upstream/cluster-manager.js';
import type { RequestHead, StreamInfo } from '../stream-info.js';
import type { InitManager } from '../init-manager.js';

export const enum FilterHeadersStatus {
  /** The next filter runs. */
  Continue,
  /** Headers go no further until `continueDecoding()`; body data still reaches this filter's decodeData. */
  StopIteration,
  /** Nothing more reaches this filter or the next ones until it continues; body data is buffered (limit: 413/500). */
  StopAllIterationAndBuffer,
  /** As StopAllIterationAndBuffer, but over the buffer limit the sender is paused rather than answered. */
  StopAllIterationAndWatermark,
}

export const enum FilterDataStatus {
  Continue,
  /** This chunk (and what follows) is buffered until the filter continues; over the limit: 413/500. */
  StopIterationAndBuffer,
  /** As StopIterationAndBuffer, pausing the sender over the limit. */
  StopIterationAndWatermark,
  /** The filter took the chunk itself (it may re-inject data when it continues); nothing is buffered. */
  StopIterationNoBuffer,
}

export const enum FilterTrailersStatus {
  Continue,
  StopIteration,
}

/** A response's status and headers, as the encode callbacks see and may change them. */
export interface ResponseHead {
  status: number;
  headers: HeaderMap;
}

/** What every filter may do to its stream, in either direction. */
export interface StreamFilterCallbacks {
  readonly head: RequestHead;
  readonly info: StreamInfo;
  /** The route chosen for the request (cached for the stream, as in Envoy); undefined when none matched. */
  readonly route: RouteEntry | undefined;
  readonly virtualHost: VirtualHost | undefined;
  /** The request did not come from an internal address: `x-envoy-*` control headers were removed. */
  readonly external: boolean;
  /** The response head has gone to the client: a local reply can only reset the stream now. */
  readonly responseStarted: boolean;
  /** The downstream connection (a `TLSSocket` on TLS listeners: its peer certificate, SNI and ALPN). */
  readonly connection: Socket;
  /**
   * Answers the request from the proxy (status, body, response flags, details), through `local_reply_config` and
   * every filter's encodeHeaders; ends the chain, and the router's upstream request. From any callback, mid-body
   * included; once the response has started, the stream is reset instead. `location` makes it a redirect. A gRPC
   * request gets it as gRPC (HTTP 200, `grpc-status` from `grpcStatus` or mapped from `status`, `grpc-message`).
   */
  sendLocalReply(status: number, body: string, flags: number, details: string, location?: string, grpcStatus?: number): void;
  /** Resets the stream: on HTTP/1.1 the connection closes. */
  resetStream(): void;
  /** Replaces the stream idle timeout (0 disables). */
  setStreamIdleTimeout(ms: number): void;
}

/** What a filter may do on the request path. */
export interface DecoderFilterCallbacks extends StreamFilterCallbacks {
  /**
   * Picks the route again, from the request headers as they are now (a filter that changed them, such as
   * ext_authz with `clear_route_cache`); filters created for the stream keep their per-route configuration.
   */
  clearRouteCache(): void;
  /** Resumes the request after this filter: headers, then the buffered body, then trailers. */
  continueDecoding(): void;
  /** The request body this filter buffered so far (with StopIterationAndBuffer), whole; undefined when none. */
  decodingBuffer(): Buffer | undefined;
  /** Replaces the buffered request body (a filter rewriting a body it buffered). */
  setDecodingBuffer(body: Buffer): void;
  /**
   * Sends request body data on to the filters after this one, at once: how a filter that answered
   * StopIterationNoBuffer passes on what it made of its input (a body decoded, re-framed).
   */
  injectDecodedDataToFilterChain(data: Buffer, endStream: boolean): void;
  /**
   * Starts the response from this filter (a filter's own answer, such as a CORS preflight, or the router's
   * upstream response): it passes every filter's encode callbacks, in reverse chain order, as in Envoy. Not a
   * local reply: `local_reply_config` does not rewrite it.
   */
  encodeHeaders(response: ResponseHead, endStream: boolean): void;
  encodeData(chunk: Buffer, endStream: boolean): void;
  encodeTrailers(trailers: HeaderMap): void;
  /** Request body this filter sends on is backed up: the downstream stops reading until the low watermark. */
  onDecoderFilterAboveWriteBufferHighWatermark(): void;
  onDecoderFilterBelowWriteBufferLowWatermark(): void;
  /**
   * A 101 answer to an upgrade request, from the terminal filter: the response head goes to the client, then
   * raw bytes flow between the downstream connection and `upstream`; `owner.complete()` runs once the upstream
   * connection closes.
   */
  upgradeResponse(response: ResponseHead, upstream: Socket, owner: { complete(): void }): void;
}

/** What a filter may do on the response path. */
export interface EncoderFilterCallbacks extends StreamFilterCallbacks {
  /** Resumes the response after this filter. */
  continueEncoding(): void;
  encodingBuffer(): Buffer | undefined;
  setEncodingBuffer(body: Buffer): void;
  /** Sends response body data on towards the client, past this filter (trailers turned into body data, say). */
  injectEncodedDataToFilterChain(data: Buffer, endStream: boolean): void;
}

/**
 * One request's instance of a filter. Every callback is optional: a filter implements the directions it acts
 * on. `endStream` says that nothing follows (no body, or the last chunk, and no trailers).
 */
export interface StreamFilter {
  /** Request headers, after route selection. */
  decodeHeaders?(head: RequestHead, endStream: boolean): FilterHeadersStatus;
  decodeData?(chunk: Buffer, endStream: boolean): FilterDataStatus;
  decodeTrailers?(trailers: HeaderMap): FilterTrailersStatus;
  /** Response headers, of proxied responses and local replies alike. */
  encodeHeaders?(response: ResponseHead, endStream: boolean): FilterHeadersStatus;
  encodeData?(chunk: Buffer, endStream: boolean): FilterDataStatus;
  encodeTrailers?(trailers: HeaderMap): FilterTrailersStatus;
  /** The client cannot take the response as fast as it comes (its connection's buffer is full) ... */
  onAboveWriteBufferHighWatermark?(): void;
  /** ... and it can again. */
  onBelowWriteBufferLowWatermark?(): void;
  /** The stream is over (complete, reset or answered): release timers and requests in flight. Once, last. */
  onDestroy?(): void;
}

/** Services a factory compiles against. */
export interface FilterFactoryContext {
  readonly stats: StatsStore;
  /** The connection manager's `stat_prefix`: filter stats live under `http.<stat_prefix>.`. */
  readonly statPrefix: string;
  readonly runtime: Runtime;
  readonly log: Logger;
  readonly clusters: ClusterManager;
  /** The bootstrap's `node.cluster` (Envoy's local service cluster; `source_cluster` of rate limit actions). */
  readonly localCluster: string;
  /** Work the configuration finishes before its listeners serve (Envoy's init manager). */
  readonly init: InitManager;
}

/** A filter's compiled configuration in one connection manager's chain. */
export interface HttpFilterConfig {
  /**
   * The filter for one stream; `routeConfig` is the route's resolved per-route config, if any. `callbacks` stays
   * valid for the stream's life. Return undefined when the stream has nothing to do for this filter.
   */
  createFilter(callbacks: DecoderFilterCallbacks & EncoderFilterCallbacks, routeConfig: unknown): StreamFilter | undefined;
  /** The connection manager is gone: give back stat scopes. */
  release(): void;
}

/** An HTTP filter extension, registered once by the type of its `typed_config`. */
export interface HttpFilterFactory {
  /** Envoy's extension name, e.g. `envoy.filters.http.cors`. */
  readonly name: string;
  /** Type of the filter's `typed_config`. */
  readonly configType: string;
  /** Type of its `typed_per_filter_config`, when it has per-route configuration. */
  readonly routeConfigType?: string;
  /** A terminal filter (the router) ends the chain: it must be last, and only it may be last. */
  readonly terminal?: boolean;
  createFilterConfig(config: unknown, context: FilterFactoryContext, path: string, errors: ConfigError[]): HttpFilterConfig;
  /** Compiles one `typed_per_filter_config` entry (of `routeConfigType`). */
  compileRouteConfig?(config: unknown, runtime: Runtime, path: string, errors: ConfigError[]): unknown;
  /**
   * A field of RouteAction and VirtualHost that carried this filter's per-route config before
   * `typed_per_filter_config` (CORS's `cors`): compiled with compileRouteConfig, handed to resolveRouteConfig.
   */
  readonly deprecatedRouteField?: string;
  /**
   * What a stream on `route` gets as its route config, from the compiled entries of the levels that have one,
   * most specific first (route, virtual host, route configuration; possibly none), and those of the deprecated
   * field. Runs once per route when the configuration is built. Without it, the most specific entry wins.
   */
  resolveRouteConfig?(levels: readonly unknown[], route: RouteEntry, deprecated: readonly unknown[]): unknown;
}

/** The HTTP filter extensions a program is composed with, by config type. */
export class HttpFilterRegistry {
  private readonly byConfigType = new Map<string, HttpFilterFactory>();
  private readonly byRouteConfigType = new Map<string, HttpFilterFactory>();

  constructor(factories: readonly HttpFilterFactory[]) {
    for (const factory of factories) {
      this.byConfigType.set(factory.configType, factory);
      if (factory.routeConfigType !== undefined) this.byRouteConfigType.set(factory.routeConfigType, factory);
    }
  }

  byConfig(typeName: string): HttpFilterFactory | undefined {
    return this.byConfigType.get(typeName);
  }

  byRouteConfig(typeName: string): HttpFilterFactory | undefined {
    return this.byRouteConfigType.get(typeName);
  }
}
