/**
 * The HTTP filter API: what an HTTP filter extension (src/extensions/filters/http/<name>/) implements and what a
 * stream offers it. Envoy's model, synchronous: a callback returns a status; a filter that waits for something
 * returns `StopIteration` and later resumes the chain (`continueDecoding`) or answers (`sendLocalReply`).
 *
 * Three lifetimes, so that nothing expensive happens per request:
 * - a factory (one per extension, in the registry) compiles configuration;
 * - a filter config (one per connection manager and position in its chain) holds what the factory compiled, its
 *   stat handles, and creates the per-stream filters;
 * - a stream filter (one per request, small) holds that request's state.
 * Per-route configuration (`typed_per_filter_config`) is compiled with the route table, and the levels of each
 * route (route, virtual host, route configuration) are resolved once per route, when the configuration is built.
 */
import type { ConfigError } from '../../config/errors.js';
import type { StatsStore } from '../../stats/store.js';
import type { Logger } from '../../util/logger.js';
import type { HeaderMap } from '../router/header-mutation.js';
import type { RouteEntry } from '../router/route-table.js';
import type { Runtime } from '../runtime/runtime.js';
import type { RequestHead, StreamInfo } from '../stream-info.js';

export const enum FilterHeadersStatus {
  /** The next filter (and finally the router) runs. */
  Continue,
  /** The chain stops here: the filter answered, or resumes it later with `continueDecoding`. */
  StopIteration,
}

/** What a stream filter may do to its stream. */
export interface FilterCallbacks {
  readonly head: RequestHead;
  readonly info: StreamInfo;
  /** A local reply (status, body, response flags, details), passed through `local_reply_config`; ends the chain. */
  sendLocalReply(status: number, body: string, flags: number, details: string): void;
  /**
   * A header-only response made by the filter itself (Envoy's `encodeHeaders` from a decoder filter, such as the
   * CORS preflight answer): not a local reply, so `local_reply_config` does not rewrite it.
   */
  sendHeaders(status: number, headers: HeaderMap, details: string): void;
  /** Resumes the chain after the filter that returned `StopIteration`. */
  continueDecoding(): void;
}

/** One request's instance of a filter. */
export interface StreamFilter {
  /** Request headers, after route selection (the route is the one cached for the stream, as in Envoy). */
  decodeHeaders(headers: RequestHead['headers']): FilterHeadersStatus;
  /**
   * Response headers, of proxied responses and local replies alike, before they are written. Filters see them
   * in reverse chain order. Pausing the response is not supported: the headers are written right after.
   */
  encodeHeaders(status: number, headers: HeaderMap): void;
}

/** Services a factory compiles against. */
export interface FilterFactoryContext {
  readonly stats: StatsStore;
  /** The connection manager's `stat_prefix`: filter stats live under `http.<stat_prefix>.`. */
  readonly statPrefix: string;
  readonly runtime: Runtime;
  readonly log: Logger;
}

/** A filter's compiled configuration in one connection manager's chain. */
export interface HttpFilterConfig {
  /** The filter for one stream; `routeConfig` is the route's resolved per-route config, if any. */
  createFilter(stream: FilterCallbacks, routeConfig: unknown): StreamFilter;
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
  createFilterConfig(config: unknown, context: FilterFactoryContext, path: string, errors: ConfigError[]): HttpFilterConfig;
  /** Compiles one `typed_per_filter_config` entry (of `routeConfigType`). */
  compileRouteConfig?(config: unknown, runtime: Runtime, path: string, errors: ConfigError[]): unknown;
  /**
   * What a stream on `route` gets as its route config, from the compiled entries of the levels that have one,
   * most specific first (route, virtual host, route configuration; possibly none). Runs once per route when the
   * configuration is built. Without it, the most specific entry wins.
   */
  resolveRouteConfig?(levels: readonly unknown[], route: RouteEntry): unknown;
}

/** A filter that does nothing: what a filter config may hand out when a stream has nothing to do for it. */
export const PASS_THROUGH_FILTER: StreamFilter = {
  decodeHeaders: () => FilterHeadersStatus.Continue,
  encodeHeaders: () => {},
};
