/**
 * `envoy.filters.http.ext_authz`: asks an authorization service, over gRPC (grpc-check.ts) or HTTP
 * (http-check.ts), whether a request may go on, holding it (and, with `with_request_body`, buffering its body)
 * until the answer comes. As Envoy's filter:
 * - OK: the answer's header edits reach the upstream request, its response headers the response, its dynamic
 *   metadata `envoy.filters.http.ext_authz`; counted in `ext_authz.ok`;
 * - denied: a local reply with the answer's status, headers and body (`ext_authz_denied`, flag UAEX);
 * - no usable answer (timeout, unreachable, garbage, an HTTP 5xx): with `failure_mode_allow` the request goes on
 *   (`failure_mode_allowed`, optionally `x-envoy-auth-failure-mode-allowed: true`), else `status_on_error`
 *   (403) answers it (`ext_authz_error`, UAEX). Both count `ext_authz.error`.
 * With `clear_route_cache`, a request the OK answer changed is routed again. Per route, `ExtAuthzPerRoute` turns the filter off, adds context extensions or stops body buffering.
 */
import type { envoy } from '../../../../generated/envoy.js';
import { childPath, type ConfigError } from '../../../../config/errors.js';
import { defineStats, type StatScope } from '../../../../stats/store.js';
import {
  type DecoderFilterCallbacks,
  FilterDataStatus,
  type FilterFactoryContext,
  FilterHeadersStatus,
  FilterTrailersStatus,
  type HttpFilterConfig,
  type HttpFilterFactory,
  type ResponseHead,
  type StreamFilter,
} from '../../../../dataplane/http/filter.js';
import type { HeaderMap } from '../../../../dataplane/router/header-mutation.js';
import type { RequestHead } from '../../../../dataplane/stream-info.js';
import { ResponseFlag } from '../../../../dataplane/response-flags.js';
import type { AsyncRequestHandle } from '../../../../dataplane/upstream/async-client.js';
import { compileGrpcService } from '../../../../grpc/grpc-service-client.js';
import { type AuthzClient, type CheckCallbacks, type CheckResult, CheckStatus, type HeaderEdit } from './check.js';
import { GrpcAuthzClient } from './grpc-check.js';
import { compileListMatcher, HttpAuthzClient } from './http-check.js';
import { httpStatusCode } from './status.js';

/** `http.<stat_prefix>.ext_authz.[<filter stat_prefix>.]` */
export const EXT_AUTHZ_STATS = defineStats({ counters: ['ok', 'denied', 'error', 'failure_mode_allowed'], gauges: [], histograms: [] });
const S = EXT_AUTHZ_STATS.c;

export const METADATA_NAMESPACE = 'envoy.filters.http.ext_authz';
const FAILURE_MODE_ALLOWED_HEADER = 'x-envoy-auth-failure-mode-allowed';
/** Envoy's default for a gRPC check without `grpc_service.timeout`. */
const DEFAULT_GRPC_TIMEOUT_MS = 200;

type ExtAuthzConfig = envoy.extensions.filters.http.ext_authz.v3.ExtAuthz;

interface BodySettings {
  maxBytes: number;
  allowPartial: boolean;
}

/** A route's compiled `ExtAuthzPerRoute`. */
interface RouteSettings {
  disabled: boolean;
  contextExtensions: Record<string, string> | undefined;
  disableBodyBuffering: boolean;
}

class ExtAuthzFilterConfig implements HttpFilterConfig {
  constructor(
    readonly client: AuthzClient,
    readonly stats: StatScope,
    readonly body: BodySettings | undefined,
    readonly failureModeAllow: boolean,
    readonly failureModeAllowHeaderAdd: boolean,
    readonly statusOnError: number,
    readonly clearRouteCache: boolean,
    private readonly context: FilterFactoryContext,
  ) {}

  createFilter(stream: DecoderFilterCallbacks, routeConfig: unknown): StreamFilter | undefined {
    const route = routeConfig as RouteSettings | undefined;
    return route?.disabled === true ? undefined : new ExtAuthzFilter(this, stream, route);
  }

  release(): void {
    this.client.close();
    this.context.stats.release(this.stats);
  }
}

const enum State {
  /** Not started: buffering the body for the check, or not yet called. */
  Buffering,
  Calling,
  /** Answered: the request went on or was answered locally. */
  Done,
}

function applyEdits(headers: HeaderMap, edits: readonly HeaderEdit[]): void {
  for (const { name, value, append } of edits) {
    const existing = headers[name];
    if (!append || existing === undefined) headers[name] = value;
    else if (Array.isArray(existing)) existing.push(value);
    else headers[name] = `${existing},${value}`;
  }
}

/** `path` with the parameters of `remove` and `set` (matched by their decoded names) dropped, then `set` appended. */
function editQuery(path: string, set: readonly [string, string][], remove: readonly string[]): string {
  const q = path.indexOf('?');
  const kept: string[] = [];
  if (q >= 0) {
    for (const param of path.slice(q + 1).split('&')) {
      if (param === '') continue;
      const eq = param.indexOf('=');
      const raw = eq < 0 ? param : param.slice(0, eq);
      let name = raw;
      try {
        name = decodeURIComponent(raw.replaceAll('+', ' '));
      } catch {
        // A malformed escape is compared as written.
      }
      if (!remove.includes(name) && !set.some(([key]) => key === name)) kept.push(param);
    }
  }
  for (const [key, value] of set) kept.push(`${encodeURIComponent(key)}=${encodeURIComponent(value)}`);
  const base = q < 0 ? path : path.slice(0, q);
  return kept.length === 0 ? base : `${base}?${kept.join('&')}`;
}

class ExtAuthzFilter implements StreamFilter, CheckCallbacks {
  private state = State.Buffering;
  private call: AsyncRequestHandle | undefined;
  /** What the answer adds to the response: the upstream's (OK) or the local reply's (denied). */
  private responseHeaders: HeaderEdit[] | undefined;

  constructor(
    private readonly config: ExtAuthzFilterConfig,
    private readonly stream: DecoderFilterCallbacks,
    private readonly route: RouteSettings | undefined,
  ) {}

  decodeHeaders(_head: RequestHead, endStream: boolean): FilterHeadersStatus {
    // Later filters see nothing until the answer; the body, if the check wants it, is collected in decodeData.
    if (endStream || this.config.body === undefined || this.route?.disableBodyBuffering === true) this.startCheck(undefined);
    return FilterHeadersStatus.StopIteration;
  }

  decodeData(chunk: Buffer, endStream: boolean): FilterDataStatus {
    if (this.state === State.Done) return FilterDataStatus.Continue;
    if (this.state === State.Buffering) {
      const { maxBytes, allowPartial } = this.config.body!;
      const buffered = this.stream.decodingBuffer();
      const size = (buffered?.length ?? 0) + chunk.length;
      if (size > maxBytes && !allowPartial) {
        this.state = State.Done;
        this.stream.sendLocalReply(413, 'Payload Too Large', 0, 'request_payload_too_large');
        return FilterDataStatus.StopIterationNoBuffer;
      }
      if (endStream || size >= maxBytes) {
        const body = buffered === undefined ? chunk : Buffer.concat([buffered, chunk]);
        this.startCheck(body.length > maxBytes ? body.subarray(0, maxBytes) : body);
      }
    }
    // While the answer is awaited, a long body pauses the client rather than getting it a 413, as in Envoy.
    return this.state === State.Buffering ? FilterDataStatus.StopIterationAndBuffer : FilterDataStatus.StopIterationAndWatermark;
  }

  decodeTrailers(): FilterTrailersStatus {
    if (this.state === State.Done) return FilterTrailersStatus.Continue;
    if (this.state === State.Buffering) this.startCheck(this.stream.decodingBuffer() ?? Buffer.alloc(0));
    return FilterTrailersStatus.StopIteration;
  }

  encodeHeaders(response: ResponseHead): FilterHeadersStatus {
    if (this.responseHeaders !== undefined) applyEdits(response.headers, this.responseHeaders);
    return FilterHeadersStatus.Continue;
  }

  onDestroy(): void {
    this.call?.cancel();
    this.call = undefined;
  }

  private startCheck(body: Buffer | undefined): void {
    this.state = State.Calling;
    this.call = this.config.client.check({ stream: this.stream, body, contextExtensions: this.route?.contextExtensions }, this);
  }

  onCheckComplete(result: CheckResult): void {
    this.call = undefined;
    this.state = State.Done;
    const { stats, failureModeAllow } = this.config;
    const stream = this.stream;
    if (result.status === CheckStatus.Ok) {
      stats.counters[S.ok]++;
      const headers = stream.head.headers as HeaderMap;
      const removed = result.headersToRemove!;
      const edits = result.upstreamHeaders!;
      for (const name of removed) delete headers[name];
      applyEdits(headers, edits);
      const querySet = result.queryToSet ?? [];
      const queryRemove = result.queryToRemove ?? [];
      const queryChanged = querySet.length > 0 || queryRemove.length > 0;
      if (queryChanged) stream.head.path = editQuery(stream.head.path, querySet, queryRemove);
      // As Envoy, the route is picked again only when the answer changed the request.
      if (this.config.clearRouteCache && (removed.length > 0 || edits.length > 0 || queryChanged)) stream.clearRouteCache();
      if (result.responseHeaders!.length > 0) this.responseHeaders = result.responseHeaders;
      if (result.dynamicMetadata !== undefined) (stream.info.dynamicMetadata ??= {})[METADATA_NAMESPACE] = result.dynamicMetadata;
      stream.continueDecoding();
      return;
    }
    if (result.status === CheckStatus.Denied) {
      stats.counters[S.denied]++;
      this.responseHeaders = result.responseHeaders;
      stream.sendLocalReply(result.httpStatus!, result.body!, ResponseFlag.UAEX, 'ext_authz_denied');
      return;
    }
    stats.counters[S.error]++;
    if (!failureModeAllow) {
      stream.sendLocalReply(this.config.statusOnError, '', ResponseFlag.UAEX, 'ext_authz_error');
      return;
    }
    stats.counters[S.failure_mode_allowed]++;
    if (this.config.failureModeAllowHeaderAdd) stream.head.headers[FAILURE_MODE_ALLOWED_HEADER] = 'true';
    stream.continueDecoding();
  }
}

function compileClient(config: ExtAuthzConfig, context: FilterFactoryContext, path: string, errors: ConfigError[]): AuthzClient | undefined {
  const allowedHeaders = compileListMatcher(config.allowed_headers, childPath(path, 'allowed_headers'), errors);
  // The schema check refuses both at once (a oneof).
  if (config.http_service !== undefined) return new HttpAuthzClient(config.http_service, allowedHeaders, context.clusters, childPath(path, 'http_service'), errors);
  if (config.grpc_service === undefined) {
    errors.push({ code: 'missing_required', path, message: 'ext_authz needs a grpc_service or an http_service' });
    return undefined;
  }
  const grpc = compileGrpcService(config.grpc_service, context.clusters, childPath(path, 'grpc_service'), errors);
  if (grpc === undefined) return undefined;
  return new GrpcAuthzClient(grpc, {
    timeoutMs: config.grpc_service.timeout ?? DEFAULT_GRPC_TIMEOUT_MS,
    includePeerCertificate: config.include_peer_certificate === true,
    packAsBytes: config.with_request_body?.pack_as_bytes === true,
    allowedHeaders,
    metadataNamespaces: config.metadata_context_namespaces ?? [],
  });
}

/** A client that is never called: what a refused configuration gets, so that compilation can go on. */
const NO_CLIENT: AuthzClient = {
  check: () => ({ cancel() {} }),
  close() {},
};

export const EXT_AUTHZ_FILTER_FACTORY: HttpFilterFactory = {
  name: 'envoy.filters.http.ext_authz',
  configType: 'envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
  routeConfigType: 'envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute',

  createFilterConfig(raw: unknown, context: FilterFactoryContext, path: string, errors: ConfigError[]): HttpFilterConfig {
    const config = raw as ExtAuthzConfig;
    // AUTO is Envoy's default and means V3 since V2 is gone.
    if (config.transport_api_version === 'V2') {
      errors.push({ code: 'invalid_value', path: childPath(path, 'transport_api_version'), message: 'ext_authz speaks the V3 transport API only' });
    }
    // The schema check makes max_request_bytes above 0.
    const buffer = config.with_request_body;
    const body: BodySettings | undefined =
      buffer === undefined ? undefined : { maxBytes: buffer.max_request_bytes ?? 0, allowPartial: buffer.allow_partial_message === true };
    const statusOnError = httpStatusCode(config.status_on_error?.code) ?? 403;
    const client = compileClient(config, context, path, errors) ?? NO_CLIENT;
    const prefix = `http.${context.statPrefix}.ext_authz.${config.stat_prefix ? `${config.stat_prefix}.` : ''}`;
    return new ExtAuthzFilterConfig(
      client,
      context.stats.scope(EXT_AUTHZ_STATS, prefix),
      body,
      config.failure_mode_allow === true,
      config.failure_mode_allow_header_add === true,
      statusOnError,
      config.clear_route_cache === true,
      context,
    );
  },

  compileRouteConfig(raw: unknown): RouteSettings {
    const config = raw as envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute;
    const settings = config.check_settings;
    return {
      disabled: config.disabled === true,
      contextExtensions: settings?.context_extensions,
      disableBodyBuffering: settings?.disable_request_body_buffering === true,
    };
  },

  /** As Envoy merges the levels: context extensions add up (the more specific wins a key), the rest is the most specific's. */
  resolveRouteConfig(levels: readonly unknown[]): RouteSettings | undefined {
    const settings = levels as readonly RouteSettings[];
    if (settings.length <= 1) return settings[0];
    let contextExtensions: Record<string, string> | undefined;
    for (let i = settings.length - 1; i >= 0; i--) {
      const extensions = settings[i]!.contextExtensions;
      if (extensions !== undefined) contextExtensions = { ...contextExtensions, ...extensions };
    }
    return { ...settings[0]!, contextExtensions };
  },
};
