/**
 * `envoy.filters.http.cors`: answers CORS preflights itself and adds the CORS response headers to the responses
 * of allowed origins, from the route's CorsPolicy levels (see cors-policy.ts). As Envoy's filter:
 * - only routes that forward (not redirects nor direct responses) are handled;
 * - a request with an `Origin` counts `cors.origin_valid` or `cors.origin_invalid` when the policy is enabled or
 *   shadowed; in shadow mode nothing else happens;
 * - a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered with 200 and the allow
 *   headers, unless its origin is not allowed and `forward_not_matching_preflights` (the default) sends it on;
 * - any other response to an allowed origin gets `access-control-allow-origin: <Origin>`, credentials and expose
 *   headers: proxied responses and local replies (a 503 of the router) alike.
 */
import type { envoy } from '../../../../generated/envoy.js';
import type { ConfigError } from '../../../../config/errors.js';
import { defineStats, type StatScope } from '../../../../stats/store.js';
import {
  type DecoderFilterCallbacks,
  type FilterFactoryContext,
  FilterHeadersStatus,
  type HttpFilterConfig,
  type HttpFilterFactory,
  type ResponseHead,
  type StreamFilter,
} from '../../../../dataplane/http/filter.js';
import type { HeaderMap } from '../../../../dataplane/router/header-mutation.js';
import { ActionKind } from '../../../../dataplane/router/route-action.js';
import type { RouteEntry } from '../../../../dataplane/router/route-table.js';
import type { Runtime } from '../../../../dataplane/runtime/runtime.js';
import type { RequestHead } from '../../../../dataplane/stream-info.js';
import { CorsPolicy, EffectiveCorsPolicy } from './cors-policy.js';

/** `http.<stat_prefix>.cors.` */
export const CORS_STATS = defineStats({ counters: ['origin_valid', 'origin_invalid'], gauges: [], histograms: [] });
const S = CORS_STATS.c;

class CorsFilterConfig implements HttpFilterConfig {
  constructor(
    readonly stats: StatScope,
    private readonly context: FilterFactoryContext,
  ) {}

  createFilter(stream: DecoderFilterCallbacks, routeConfig: unknown): StreamFilter | undefined {
    return routeConfig === undefined ? undefined : new CorsFilter(this.stats, stream, routeConfig as EffectiveCorsPolicy);
  }

  release(): void {
    this.context.stats.release(this.stats);
  }
}

class CorsFilter implements StreamFilter {
  /** The allowed origin of a CORS request (enabled, not shadow only), which the response gets back. */
  private allowedOrigin: string | undefined;

  constructor(
    private readonly stats: StatScope,
    private readonly stream: DecoderFilterCallbacks,
    private readonly policy: EffectiveCorsPolicy,
  ) {}

  decodeHeaders(head: RequestHead): FilterHeadersStatus {
    const headers = head.headers;
    const policy = this.policy;
    const enabled = policy.decider.enabled();
    if (!enabled && !policy.decider.shadowed()) return FilterHeadersStatus.Continue;
    const origin = headers.origin;
    if (origin === undefined || origin === '') return FilterHeadersStatus.Continue;
    const allowed = policy.isOriginAllowed(origin);
    this.stats.counters[allowed ? S.origin_valid : S.origin_invalid]++;
    if (!enabled) return FilterHeadersStatus.Continue;
    if (allowed) this.allowedOrigin = origin;
    const requestMethod = headers['access-control-request-method'];
    if (head.method !== 'OPTIONS' || requestMethod === undefined || requestMethod === '') return FilterHeadersStatus.Continue;
    if (!allowed && policy.forwardNotMatchingPreflights) return FilterHeadersStatus.Continue;
    // The preflight's answer is the filter's own, not a local reply: local_reply_config does not rewrite it.
    this.stream.info.responseCodeDetails = 'cors_response';
    this.stream.encodeHeaders({ status: 200, headers: this.preflightHeaders(headers, allowed ? origin : undefined, requestMethod) }, true);
    return FilterHeadersStatus.StopIteration;
  }

  private preflightHeaders(headers: RequestHead['headers'], origin: string | undefined, requestMethod: string): HeaderMap {
    const policy = this.policy;
    const out: HeaderMap = {};
    if (origin !== undefined) out['access-control-allow-origin'] = origin;
    if (policy.allowCredentials) out['access-control-allow-credentials'] = 'true';
    // `*` echoes what the preflight asks for.
    if (policy.allowMethods !== '') out['access-control-allow-methods'] = policy.allowMethods === '*' ? requestMethod : policy.allowMethods;
    if (policy.allowHeaders !== '') {
      out['access-control-allow-headers'] = policy.allowHeaders === '*' ? (headers['access-control-request-headers'] ?? '') : policy.allowHeaders;
    }
    if (policy.maxAge !== '') out['access-control-max-age'] = policy.maxAge;
    if (policy.allowPrivateNetworkAccess && headers['access-control-request-private-network'] === 'true') {
      out['access-control-allow-private-network'] = 'true';
    }
    return out;
  }

  encodeHeaders(response: ResponseHead): FilterHeadersStatus {
    const origin = this.allowedOrigin;
    if (origin === undefined) return FilterHeadersStatus.Continue;
    const headers = response.headers;
    headers['access-control-allow-origin'] = origin;
    if (this.policy.allowCredentials) headers['access-control-allow-credentials'] = 'true';
    if (this.policy.exposeHeaders !== '') headers['access-control-expose-headers'] = this.policy.exposeHeaders;
    return FilterHeadersStatus.Continue;
  }
}

export const CORS_FILTER_FACTORY: HttpFilterFactory = {
  name: 'envoy.filters.http.cors',
  configType: 'envoy.extensions.filters.http.cors.v3.Cors',
  routeConfigType: 'envoy.extensions.filters.http.cors.v3.CorsPolicy',

  createFilterConfig(_config: unknown, context: FilterFactoryContext): HttpFilterConfig {
    return new CorsFilterConfig(context.stats.scope(CORS_STATS, `http.${context.statPrefix}.cors.`), context);
  },

  compileRouteConfig(config: unknown, runtime: Runtime, path: string, errors: ConfigError[]): CorsPolicy {
    return new CorsPolicy(config as envoy.extensions.filters.http.cors.v3.CorsPolicy, runtime, path, errors);
  },

  deprecatedRouteField: 'cors',

  resolveRouteConfig(levels: readonly unknown[], route: RouteEntry, deprecated: readonly unknown[]): EffectiveCorsPolicy | undefined {
    // Envoy's CORS filter passes over routes without a route entry: redirects and direct responses.
    if (route.action.kind !== ActionKind.Forward) return undefined;
    // The deprecated `cors` fields count only when no level has a typed_per_filter_config for this filter.
    const policies = (levels.length > 0 ? levels : deprecated) as CorsPolicy[];
    return policies.length > 0 ? new EffectiveCorsPolicy(policies) : undefined;
  },
};
