/**
 * `envoy.filters.http.ext_authz`: an authorization service decides. The request waits while it is asked, over
 * gRPC (`envoy.service.auth.v3.Authorization/Check` with a full CheckRequest) or HTTP (the request's method and
 * path under `path_prefix`, its allowed headers, no body unless `with_request_body`). An OK answer lets the
 * request on with the header changes it carries; a denial is passed to the client with its status, headers and
 * body; a failure (down, timeout, garbage) answers `status_on_error` unless `failure_mode_allow`.
 */
import type { TLSSocket } from 'node:tls';
import type { envoy } from '../../../../generated/envoy.js';
import type { ConfigError } from '../../../../config/errors.js';
import { getEnumDescriptor } from '../../../../config/proto/schema.js';
import {
  type DecoderFilterCallbacks,
  type EncoderFilterCallbacks,
  FilterDataStatus,
  type FilterFactoryContext,
  FilterHeadersStatus,
  type HttpFilterConfig,
  type HttpFilterFactory,
  type ResponseHead,
  type StreamFilter,
} from '../../../../dataplane/http/filter.js';
import { compileStringMatcher, type StringMatchFn } from '../../../../dataplane/matching/string-matcher.js';
import { ResponseFlag } from '../../../../dataplane/response-flags.js';
import type { HeaderMap } from '../../../../dataplane/router/header-mutation.js';
import type { Runtime } from '../../../../dataplane/runtime/runtime.js';
import { AsyncHttpClient, type AsyncHttpResponse, type AsyncRequestHandle } from '../../../../dataplane/upstream/async-client.js';
import { envoyMethod, fromStruct, type ProtoMethod } from '../../../../grpc/envoy-protos.js';
import { compileGrpcService, type GrpcServiceClient } from '../../../../grpc/grpc-service-client.js';
import { defineStats, type StatScope } from '../../../../stats/store.js';
import { httpStatus } from '../../common/http-status.js';

type ExtAuthzConfig = envoy.extensions.filters.http.ext_authz.v3.ExtAuthz;
/** As decoded from the wire: `append` is a google.protobuf.BoolValue. */
type HeaderValueOption = { header?: { key?: string; value?: string; raw_value?: Buffer }; append?: { value?: boolean }; append_action?: string };
interface CheckResponse {
  status?: { code?: number; message?: string };
  denied_response?: { status?: { code?: string | number }; headers?: HeaderValueOption[]; body?: string };
  ok_response?: { headers?: HeaderValueOption[]; headers_to_remove?: string[]; response_headers_to_add?: HeaderValueOption[] };
  dynamic_metadata?: { fields?: Record<string, unknown> };
}

/** `http.<stat_prefix>.ext_authz.[<filter stat_prefix>.]` */
export const EXT_AUTHZ_STATS = defineStats({
  counters: ['ok', 'denied', 'error', 'failure_mode_allowed', 'disabled'],
  gauges: [],
  histograms: [],
});
const S = EXT_AUTHZ_STATS.c;
const METADATA_NAMESPACE = 'envoy.filters.http.ext_authz';
/** The gRPC service's default timeout, as Envoy's. */
const DEFAULT_TIMEOUT_MS = 200;
/** Headers the HTTP service always gets (Envoy's defaults), besides `allowed_headers`. */
const ALWAYS_SENT = new Set(['host', 'method', 'path', 'content-length', 'authorization']);

let check: ProtoMethod | undefined;

type ListMatcher = (name: string) => boolean;
function listMatcher(config: envoy.type.matcher.v3.ListStringMatcher | undefined, path: string, errors: ConfigError[]): ListMatcher | undefined {
  if (config === undefined) return undefined;
  const patterns: StringMatchFn[] = (config.patterns ?? []).map((p, i) => compileStringMatcher(p, `${path}.patterns[${i}]`, errors));
  return (name) => patterns.some((match) => match(name));
}

/** An authorization decision, whichever transport brought it. */
interface Decision {
  kind: 'ok' | 'denied' | 'error';
  /** Denied: what the client gets. */
  status?: number;
  body?: string;
  clientHeaders?: HeaderMap;
  /** OK: changes to the request and headers for the response. */
  setHeaders?: [string, string][];
  appendHeaders?: [string, string][];
  removeHeaders?: string[];
  responseHeaders?: HeaderMap;
  metadata?: Record<string, unknown>;
}

class ExtAuthzFilterConfig implements HttpFilterConfig {
  readonly grpc: GrpcServiceClient | undefined;
  readonly httpService: { client: AsyncHttpClient; cluster: string; authority: string; pathPrefix: string; headersToAdd: [string, string][] } | undefined;
  readonly timeoutMs: number;
  readonly failureModeAllow: boolean;
  readonly failureModeHeader: boolean;
  readonly errorStatus: number;
  readonly includePeerCertificate: boolean;
  readonly withBody: { maxBytes: number; allowPartial: boolean; packAsBytes: boolean } | undefined;
  readonly allowedHeaders: ListMatcher | undefined;
  readonly allowedUpstream: ListMatcher | undefined;
  readonly allowedUpstreamAppend: ListMatcher | undefined;
  readonly allowedClient: ListMatcher | undefined;
  readonly allowedClientOnSuccess: ListMatcher | undefined;
  readonly stats: StatScope;
  private readonly releaseStats: () => void;

  constructor(config: ExtAuthzConfig, context: FilterFactoryContext, path: string, errors: ConfigError[]) {
    const prefix = `http.${context.statPrefix}.ext_authz.${config.stat_prefix ? `${config.stat_prefix}.` : ''}`;
    const stats = (this.stats = context.stats.scope(EXT_AUTHZ_STATS, prefix));
    this.releaseStats = () => context.stats.release(stats);
    if ((config.grpc_service === undefined) === (config.http_service === undefined)) {
      errors.push({ code: config.grpc_service === undefined ? 'missing_required' : 'oneof_conflict', path, message: 'ext_authz needs exactly one of grpc_service and http_service' });
    }
    if (config.transport_api_version !== undefined && config.transport_api_version !== 'V3') {
      errors.push({ code: 'invalid_value', path: `${path}.transport_api_version`, message: 'only the V3 authorization protocol is spoken' });
    }
    this.grpc = config.grpc_service === undefined ? undefined : compileGrpcService(config.grpc_service, context.clusters, `${path}.grpc_service`, errors);
    const http = config.http_service;
    let timeout = config.grpc_service?.timeout;
    if (http !== undefined) {
      const uri = http.server_uri;
      let url: URL | undefined;
      try {
        url = new URL(uri?.uri ?? '');
      } catch {
        errors.push({ code: 'invalid_value', path: `${path}.http_service.server_uri.uri`, message: `invalid URI "${uri?.uri ?? ''}"` });
      }
      if (uri?.cluster !== undefined && context.clusters.get(uri.cluster) === undefined) {
        errors.push({ code: 'unknown_cluster', path: `${path}.http_service.server_uri.cluster`, message: `unknown cluster "${uri.cluster}"` });
      }
      timeout = uri?.timeout;
      this.httpService = {
        client: new AsyncHttpClient(context.clusters),
        cluster: uri?.cluster ?? '',
        authority: url?.host ?? '',
        pathPrefix: http.path_prefix ?? '',
        headersToAdd: (http.authorization_request?.headers_to_add ?? []).map((h) => [(h.key ?? '').toLowerCase(), h.value ?? '']),
      };
    }
    this.timeoutMs = timeout ?? DEFAULT_TIMEOUT_MS;
    this.failureModeAllow = config.failure_mode_allow ?? false;
    this.failureModeHeader = config.failure_mode_allow_header_add ?? false;
    this.errorStatus = httpStatus(config.status_on_error, 403);
    this.includePeerCertificate = config.include_peer_certificate ?? false;
    const body = config.with_request_body;
    this.withBody = body === undefined ? undefined : { maxBytes: body.max_request_bytes ?? 0, allowPartial: body.allow_partial_message ?? false, packAsBytes: body.pack_as_bytes ?? false };
    this.allowedHeaders =
      listMatcher(config.allowed_headers, `${path}.allowed_headers`, errors) ??
      listMatcher(http?.authorization_request?.allowed_headers, `${path}.http_service.authorization_request.allowed_headers`, errors);
    const response = http?.authorization_response;
    const at = `${path}.http_service.authorization_response`;
    this.allowedUpstream = listMatcher(response?.allowed_upstream_headers, `${at}.allowed_upstream_headers`, errors);
    this.allowedUpstreamAppend = listMatcher(response?.allowed_upstream_headers_to_append, `${at}.allowed_upstream_headers_to_append`, errors);
    this.allowedClient = listMatcher(response?.allowed_client_headers, `${at}.allowed_client_headers`, errors);
    this.allowedClientOnSuccess = listMatcher(response?.allowed_client_headers_on_success, `${at}.allowed_client_headers_on_success`, errors);
  }

  createFilter(callbacks: DecoderFilterCallbacks & EncoderFilterCallbacks, routeConfig: unknown): StreamFilter | undefined {
    const perRoute = routeConfig as PerRoute | undefined;
    if (perRoute?.disabled) {
      this.stats.counters[S.disabled]++;
      return undefined;
    }
    return new ExtAuthzFilter(this, callbacks, perRoute);
  }

  release(): void {
    this.grpc?.close();
    this.releaseStats();
  }
}

interface PerRoute {
  disabled: boolean;
  contextExtensions: Record<string, string> | undefined;
  disableBodyBuffering: boolean;
}

class ExtAuthzFilter implements StreamFilter {
  private call: AsyncRequestHandle | undefined;
  private waiting = false;
  /** decodeHeaders (or decodeData) is running: an answer now is its return value. */
  private inline = false;
  private answered = false;
  private responseHeaders: HeaderMap | undefined;

  constructor(
    private readonly config: ExtAuthzFilterConfig,
    private readonly callbacks: DecoderFilterCallbacks & EncoderFilterCallbacks,
    private readonly perRoute: PerRoute | undefined,
  ) {}

  decodeHeaders(_head: unknown, endStream: boolean): FilterHeadersStatus {
    // With with_request_body, the check waits for the body (up to its limit), buffered here.
    if (!endStream && this.config.withBody !== undefined && !this.perRoute?.disableBodyBuffering) return FilterHeadersStatus.StopIteration;
    return this.startCheck(undefined) ? FilterHeadersStatus.Continue : FilterHeadersStatus.StopIteration;
  }

  decodeData(chunk: Buffer, endStream: boolean): FilterDataStatus {
    const limits = this.config.withBody;
    if (limits === undefined || this.perRoute?.disableBodyBuffering || this.waiting || this.answered || this.call !== undefined) {
      return this.waiting ? FilterDataStatus.StopIterationAndBuffer : FilterDataStatus.Continue;
    }
    const buffered = (this.callbacks.decodingBuffer()?.length ?? 0) + chunk.length;
    const full = limits.maxBytes > 0 && buffered >= limits.maxBytes;
    if (!endStream && !full) return FilterDataStatus.StopIterationAndBuffer;
    if (full && !endStream && !limits.allowPartial) {
      this.answered = true;
      this.callbacks.sendLocalReply(413, 'Payload Too Large', 0, 'request_payload_too_large');
      return FilterDataStatus.StopIterationNoBuffer;
    }
    const existing = this.callbacks.decodingBuffer();
    const whole = existing === undefined ? chunk : Buffer.concat([existing, chunk]);
    const body = limits.maxBytes > 0 && whole.length > limits.maxBytes ? whole.subarray(0, limits.maxBytes) : whole;
    return this.startCheck(body) ? FilterDataStatus.Continue : FilterDataStatus.StopIterationAndBuffer;
  }

  /** Asks the service; true when the answer came at once and lets the request go on. */
  private startCheck(body: Buffer | undefined): boolean {
    const config = this.config;
    this.waiting = this.inline = true;
    if (config.grpc !== undefined) {
      check ??= envoyMethod('envoy/service/auth/v3/external_auth.proto', 'envoy.service.auth.v3.Authorization', 'Check');
      this.call = config.grpc.unary(check, this.checkRequest(body), config.timeoutMs, {
        onSuccess: (response: CheckResponse) => this.onDecision(grpcDecision(response)),
        onFailure: () => this.onDecision({ kind: 'error' }),
      });
    } else {
      const service = config.httpService!;
      this.call = service.client.send(service.cluster, this.httpCheckRequest(body), {
        onSuccess: (response) => this.onDecision(this.httpDecision(response)),
        onFailure: () => this.onDecision({ kind: 'error' }),
      });
    }
    this.inline = false;
    return !this.waiting && !this.answered;
  }

  private checkRequest(body: Buffer | undefined): object {
    const { head, info, connection } = this.callbacks;
    const headers: Record<string, string> = { ':authority': head.authority, ':method': head.method, ':path': head.path, ':scheme': head.scheme };
    for (const name in head.headers) {
      const value = head.headers[name];
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(',') : value;
    }
    const q = head.path.indexOf('?');
    const now = Date.now();
    const http: Record<string, unknown> = {
      id: info.requestId,
      method: head.method,
      headers,
      path: head.path,
      host: head.authority,
      scheme: head.scheme,
      query: q < 0 ? '' : head.path.slice(q + 1),
      protocol: info.protocol,
      size: body?.length ?? Number(head.headers['content-length'] ?? -1),
    };
    if (body !== undefined) {
      if (this.config.withBody?.packAsBytes) http.raw_body = body;
      else http.body = body.toString();
    }
    const source: Record<string, unknown> = { address: { socket_address: { address: info.downstreamDirectRemoteAddress, port_value: info.downstreamDirectRemotePort } } };
    const tls = connection as Partial<TLSSocket>;
    if (typeof tls.getPeerCertificate === 'function') {
      const cert = tls.getPeerCertificate(true);
      if (cert !== undefined && Object.keys(cert).length > 0) {
        const uri = (cert.subjectaltname ?? '').split(', ').find((s) => s.startsWith('URI:'));
        source.principal = uri?.slice(4) ?? '';
        if (this.config.includePeerCertificate && cert.raw !== undefined) {
          source.certificate = encodeURIComponent(`-----BEGIN CERTIFICATE-----\n${cert.raw.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE-----\n`);
        }
      }
    }
    return {
      attributes: {
        source,
        destination: { address: { socket_address: { address: info.downstreamLocalAddress, port_value: info.downstreamLocalPort } } },
        request: { time: { seconds: Math.floor(now / 1000), nanos: (now % 1000) * 1e6 }, http },
        context_extensions: this.perRoute?.contextExtensions ?? {},
      },
    };
  }

  private httpCheckRequest(body: Buffer | undefined): Parameters<AsyncHttpClient['send']>[1] {
    const { head } = this.callbacks;
    const config = this.config;
    const service = config.httpService!;
    const headers: HeaderMap = {};
    for (const name in head.headers) {
      if (ALWAYS_SENT.has(name) || config.allowedHeaders?.(name)) headers[name] = head.headers[name];
    }
    for (const [name, value] of service.headersToAdd) headers[name] = value;
    headers['content-length'] = String(body?.length ?? 0);
    return { method: head.method, path: `${service.pathPrefix}${head.path}`, authority: head.authority, headers, body, timeoutMs: config.timeoutMs };
  }

  /** An HTTP service's answer: 200 allows, anything else is a denial passed to the client. */
  private httpDecision(response: AsyncHttpResponse): Decision {
    const config = this.config;
    const pick = (matcher: ListMatcher | undefined, everythingByDefault: boolean): [string, string][] => {
      const out: [string, string][] = [];
      for (const name in response.headers) {
        if (name === 'content-length' || name === 'transfer-encoding' || name === 'connection' || name === 'host') continue;
        if (matcher === undefined ? !everythingByDefault : !matcher(name)) continue;
        const value = response.headers[name];
        if (value !== undefined) out.push([name, Array.isArray(value) ? value.join(',') : value]);
      }
      return out;
    };
    if (response.status === 200) {
      return {
        kind: 'ok',
        setHeaders: pick(config.allowedUpstream, false),
        appendHeaders: pick(config.allowedUpstreamAppend, false),
        responseHeaders: Object.fromEntries(pick(config.allowedClientOnSuccess, false)),
      };
    }
    return { kind: 'denied', status: response.status, body: response.body.toString(), clientHeaders: Object.fromEntries(pick(config.allowedClient, true)) };
  }

  onDecision(decision: Decision): void {
    this.call = undefined;
    const { config, callbacks } = this;
    const counters = config.stats.counters;
    if (decision.kind === 'denied') {
      counters[S.denied]++;
      this.responseHeaders = decision.clientHeaders;
      this.answer(decision.status ?? 403, decision.body ?? '', 'ext_authz_denied');
      return;
    }
    if (decision.kind === 'error') {
      counters[S.error]++;
      if (!config.failureModeAllow) {
        this.answer(config.errorStatus, '', 'ext_authz_error');
        return;
      }
      counters[S.failure_mode_allowed]++;
      if (config.failureModeHeader) callbacks.head.headers['x-envoy-auth-failure-mode-allowed'] = 'true';
      this.resume();
      return;
    }
    counters[S.ok]++;
    const headers = callbacks.head.headers;
    for (const name of decision.removeHeaders ?? []) delete headers[name];
    for (const [name, value] of decision.setHeaders ?? []) headers[name] = value;
    for (const [name, value] of decision.appendHeaders ?? []) {
      const existing = headers[name];
      headers[name] = existing === undefined ? value : `${Array.isArray(existing) ? existing.join(',') : existing},${value}`;
    }
    if (decision.responseHeaders !== undefined && Object.keys(decision.responseHeaders).length > 0) this.responseHeaders = decision.responseHeaders;
    if (decision.metadata !== undefined) (callbacks.info.dynamicMetadata ??= {})[METADATA_NAMESPACE] = decision.metadata;
    this.resume();
  }

  // Denials are local replies, which pass here too: they get the service's headers this way.
  encodeHeaders(response: ResponseHead): FilterHeadersStatus {
    const add = this.responseHeaders;
    if (add !== undefined) for (const name in add) response.headers[name] = add[name];
    return FilterHeadersStatus.Continue;
  }

  onDestroy(): void {
    this.call?.cancel();
    this.call = undefined;
  }

  private answer(status: number, body: string, details: string): void {
    this.waiting = false;
    this.answered = true;
    this.callbacks.sendLocalReply(status, body, ResponseFlag.UAEX, details);
  }

  private resume(): void {
    this.waiting = false;
    if (!this.inline) this.callbacks.continueDecoding();
  }
}

/** A CheckResponse as a decision: status 0 allows, anything else denies (403 unless the response says). */
function grpcDecision(response: CheckResponse): Decision {
  if ((response.status?.code ?? 0) !== 0) {
    const denied = response.denied_response;
    const code = denied?.status?.code;
    const status = typeof code === 'number' ? code : code === undefined ? 403 : (getEnumDescriptor('envoy.type.v3.StatusCode')?.[code] ?? 403);
    const clientHeaders: HeaderMap = {};
    for (const option of denied?.headers ?? []) if (option.header?.key) clientHeaders[option.header.key.toLowerCase()] = headerText(option);
    return { kind: 'denied', status: status >= 200 ? status : 403, body: denied?.body ?? '', clientHeaders };
  }
  const ok = response.ok_response;
  const setHeaders: [string, string][] = [];
  const appendHeaders: [string, string][] = [];
  for (const option of ok?.headers ?? []) {
    const name = option.header?.key?.toLowerCase();
    if (!name) continue;
    // Envoy's OkHttpResponse headers overwrite unless they ask to append.
    const append = option.append?.value === true || option.append_action === 'APPEND_IF_EXISTS_OR_ADD';
    (append ? appendHeaders : setHeaders).push([name, headerText(option)]);
  }
  const responseHeaders: HeaderMap = {};
  for (const option of ok?.response_headers_to_add ?? []) if (option.header?.key) responseHeaders[option.header.key.toLowerCase()] = headerText(option);
  const metadata = response.dynamic_metadata?.fields === undefined ? undefined : (fromStruct(response.dynamic_metadata as never) as Record<string, unknown>);
  return { kind: 'ok', setHeaders, appendHeaders, removeHeaders: (ok?.headers_to_remove ?? []).map((h) => h.toLowerCase()), responseHeaders, metadata };
}

function headerText(option: HeaderValueOption): string {
  return option.header?.value || (option.header?.raw_value ? Buffer.from(option.header.raw_value).toString('latin1') : '');
}

export const EXT_AUTHZ_FILTER_FACTORY: HttpFilterFactory = {
  name: 'envoy.filters.http.ext_authz',
  configType: 'envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
  routeConfigType: 'envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute',

  createFilterConfig(config: unknown, context: FilterFactoryContext, path: string, errors: ConfigError[]): HttpFilterConfig {
    return new ExtAuthzFilterConfig(config as ExtAuthzConfig, context, path, errors);
  },

  compileRouteConfig(config: unknown, _runtime: Runtime): PerRoute {
    const perRoute = config as envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute;
    return {
      disabled: perRoute.disabled ?? false,
      contextExtensions: perRoute.check_settings?.context_extensions,
      disableBodyBuffering: perRoute.check_settings?.disable_request_body_buffering ?? false,
    };
  },
};
