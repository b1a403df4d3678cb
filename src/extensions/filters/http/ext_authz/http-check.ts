/**
 * ext_authz over HTTP (`http_service`): the check request is the original request's method and path (with
 * `path_prefix` before it) sent to `server_uri.cluster`, with Envoy's always-sent headers (Host, Method, Path,
 * Content-Length, Authorization), the request headers `allowed_headers` matches, and `headers_to_add`; the body
 * only with `with_request_body`. A 200 allows, a 5xx (or no answer) is an error, any other status denies with
 * that status, body and the allowed client headers.
 */
import type { envoy } from '../../../../generated/envoy.js';
import type { ConfigError } from '../../../../config/errors.js';
import { childPath } from '../../../../config/errors.js';
import { AsyncHttpClient, type AsyncHttpResponse, type AsyncRequestHandle } from '../../../../dataplane/upstream/async-client.js';
import type { ClusterManager } from '../../../../dataplane/upstream/cluster-manager.js';
import type { UpstreamHeaders } from '../../../../dataplane/upstream/pool-types.js';
import type { HeaderMap } from '../../../../dataplane/router/header-mutation.js';
import { compileStringMatcher, type StringMatchFn } from '../../../../dataplane/matching/string-matcher.js';
import { type AuthzClient, type CheckCallbacks, type CheckInput, type CheckResult, CheckStatus, ERROR_RESULT, type HeaderEdit } from './check.js';

/** A ListStringMatcher as one predicate; undefined when the list is not set. */
export function compileListMatcher(list: envoy.type.matcher.v3.ListStringMatcher | undefined, path: string, errors: ConfigError[]): StringMatchFn | undefined {
  if (list === undefined) return undefined;
  const fns = (list.patterns ?? []).map((p, i) => compileStringMatcher(p, childPath(childPath(path, 'patterns'), i), errors));
  return (value) => fns.some((fn) => fn(value));
}

/** Headers a check request always carries when the request has them, whatever `allowed_headers` says. */
const ALWAYS_SENT = new Set(['authorization']);
/** Headers a denied answer passes to the client when `allowed_client_headers` is set. */
const ALWAYS_TO_CLIENT = new Set([':path', ':status', 'www-authenticate', 'location']);
/** The local reply frames its own body, and the authorization server's authority is not the client's business. */
const NEVER_TO_CLIENT = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive']);
/** An OK answer's list of request headers the upstream must not see (Envoy's HTTP service convention). */
const HEADERS_TO_REMOVE = 'x-envoy-auth-headers-to-remove';

const never: StringMatchFn = () => false;

function values(headers: UpstreamHeaders, name: string): string[] {
  const value = headers[name];
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

export class HttpAuthzClient implements AuthzClient {
  private readonly http: AsyncHttpClient;
  private readonly cluster: string;
  private readonly timeoutMs: number;
  private readonly pathPrefix: string;
  private readonly allowedHeaders: StringMatchFn;
  private readonly headersToAdd: readonly [string, string][];
  private readonly upstreamSet: StringMatchFn;
  private readonly upstreamAppend: StringMatchFn;
  private readonly clientOnDeny: StringMatchFn | undefined;
  private readonly clientOnSuccess: StringMatchFn;
  private readonly toMetadata: StringMatchFn | undefined;

  constructor(
    config: envoy.extensions.filters.http.ext_authz.v3.HttpService,
    allowedHeaders: StringMatchFn | undefined,
    clusters: ClusterManager,
    path: string,
    errors: ConfigError[],
  ) {
    this.http = new AsyncHttpClient(clusters);
    const uri = config.server_uri;
    this.cluster = uri?.cluster ?? '';
    if (uri === undefined) errors.push({ code: 'missing_required', path: childPath(path, 'server_uri'), message: 'http_service needs a server_uri' });
    else if (clusters.get(this.cluster) === undefined) {
      errors.push({ code: 'unknown_cluster', path: childPath(childPath(path, 'server_uri'), 'cluster'), message: `unknown authorization cluster "${this.cluster}"` });
    }
    this.timeoutMs = uri?.timeout ?? 0;
    this.pathPrefix = config.path_prefix ?? '';
    if (this.pathPrefix !== '' && !this.pathPrefix.startsWith('/')) {
      errors.push({ code: 'invalid_value', path: childPath(path, 'path_prefix'), message: 'path_prefix must start with "/"' });
    }
    const request = config.authorization_request;
    const requestPath = childPath(path, 'authorization_request');
    // The top-level `allowed_headers` replaces the deprecated authorization_request.allowed_headers.
    this.allowedHeaders = allowedHeaders ?? compileListMatcher(request?.allowed_headers, childPath(requestPath, 'allowed_headers'), errors) ?? never;
    this.headersToAdd = (request?.headers_to_add ?? []).map((h) => [(h.key ?? '').toLowerCase(), h.value ?? '']);
    const response = config.authorization_response;
    const responsePath = childPath(path, 'authorization_response');
    const list = (field: keyof envoy.extensions.filters.http.ext_authz.v3.AuthorizationResponse): StringMatchFn | undefined =>
      compileListMatcher(response?.[field], childPath(responsePath, field), errors);
    this.upstreamSet = list('allowed_upstream_headers') ?? never;
    this.upstreamAppend = list('allowed_upstream_headers_to_append') ?? never;
    this.clientOnDeny = list('allowed_client_headers');
    this.clientOnSuccess = list('allowed_client_headers_on_success') ?? never;
    this.toMetadata = list('dynamic_metadata_from_headers');
  }

  check({ stream, body }: CheckInput, callbacks: CheckCallbacks): AsyncRequestHandle {
    const head = stream.head;
    const headers: HeaderMap = {};
    for (const name in head.headers) {
      if (name === 'content-length' || name === 'host') continue;
      if (ALWAYS_SENT.has(name) || this.allowedHeaders(name)) headers[name] = head.headers[name];
    }
    for (const [name, value] of this.headersToAdd) headers[name] = value;
    headers['content-length'] = body === undefined ? '0' : String(body.length);
    return this.http.send(
      this.cluster,
      { method: head.method, path: this.pathPrefix + head.path, authority: head.authority, headers, body, timeoutMs: this.timeoutMs },
      { onSuccess: (response) => callbacks.onCheckComplete(this.result(response)), onFailure: () => callbacks.onCheckComplete(ERROR_RESULT) },
    );
  }

  private result(response: AsyncHttpResponse): CheckResult {
    const { status, headers } = response;
    if (status >= 500) return ERROR_RESULT;
    if (status === 200) {
      const upstreamHeaders: HeaderEdit[] = [];
      const responseHeaders: HeaderEdit[] = [];
      let dynamicMetadata: Record<string, unknown> | undefined;
      for (const name in headers) {
        const set = this.upstreamSet(name);
        const append = !set && this.upstreamAppend(name);
        const toClient = this.clientOnSuccess(name);
        const toMetadata = this.toMetadata?.(name) === true;
        if (!set && !append && !toClient && !toMetadata) continue;
        for (const value of values(headers, name)) {
          if (set || append) upstreamHeaders.push({ name, value, append });
          if (toClient) responseHeaders.push({ name, value, append: false });
        }
        if (toMetadata) (dynamicMetadata ??= {})[name] = values(headers, name).join(',');
      }
      const headersToRemove = values(headers, HEADERS_TO_REMOVE).flatMap((v) => v.split(',').map((h) => h.trim().toLowerCase()).filter((h) => h !== ''));
      return { status: CheckStatus.Ok, upstreamHeaders, headersToRemove, responseHeaders, dynamicMetadata };
    }
    const responseHeaders: HeaderEdit[] = [];
    const allowed = this.clientOnDeny;
    for (const name in headers) {
      if (NEVER_TO_CLIENT.has(name)) continue;
      if (allowed !== undefined && !ALWAYS_TO_CLIENT.has(name) && !allowed(name)) continue;
      // The server's value replaces the local reply's own (content-type); repeated ones (set-cookie) add up.
      values(headers, name).forEach((value, i) => responseHeaders.push({ name, value, append: i > 0 }));
    }
    return { status: CheckStatus.Denied, httpStatus: status, body: response.body.toString(), responseHeaders };
  }

  close(): void {}
}
