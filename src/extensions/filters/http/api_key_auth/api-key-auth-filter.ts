/**
 * `envoy.filters.http.api_key_auth`: lets a request through only with a known API key, found by the key sources
 * (key-sources.ts). A route's `ApiKeyAuthPerRoute` (the most specific level) may replace the credentials, the key
 * sources and the forwarding, and limits the route to `allowed_clients`. As Envoy's filter: a missing or unknown
 * key is a 401 `Client authentication failed.` (`api_key_auth.unauthorized`), a known client not allowed on the
 * route a 403 `Client is forbidden.` (`api_key_auth.forbidden`); an allowed request counts `api_key_auth.allowed`,
 * gets the client's name in `forwarding.header` and, with `hide_credentials`, loses its key.
 */
import type { ConfigError } from '../../../../config/errors.js';
import { childPath } from '../../../../config/errors.js';
import type { api_key_auth } from '../../../../config/proto/supplement.js';
import { defineStats, type StatScope } from '../../../../stats/store.js';
import {
  type DecoderFilterCallbacks,
  type FilterFactoryContext,
  FilterHeadersStatus,
  type HttpFilterConfig,
  type HttpFilterFactory,
  type StreamFilter,
} from '../../../../dataplane/http/filter.js';
import type { RequestHead } from '../../../../dataplane/stream-info.js';
import { KeySources } from './key-sources.js';

/** `http.<stat_prefix>.api_key_auth.` */
export const API_KEY_AUTH_STATS = defineStats({ counters: ['allowed', 'unauthorized', 'forbidden'], gauges: [], histograms: [] });
const S = API_KEY_AUTH_STATS.c;

const UNAUTHORIZED = 'Client authentication failed.';

interface Forwarding {
  /** Lower-cased; '' when the client is not forwarded. */
  readonly header: string;
  readonly hideCredentials: boolean;
}

/** What one level configures; undefined members are left to the filter's configuration. */
class ApiKeySettings {
  /** API key → client name. */
  readonly credentials: ReadonlyMap<string, string> | undefined;
  readonly keySources: KeySources | undefined;
  readonly forwarding: Forwarding | undefined;

  constructor(config: api_key_auth.ApiKeyAuth, path: string, errors: ConfigError[]) {
    this.credentials = compileCredentials(config.credentials, childPath(path, 'credentials'), errors);
    this.keySources = KeySources.compile(config.key_sources, childPath(path, 'key_sources'), errors);
    const forwarding = config.forwarding;
    this.forwarding = forwarding && { header: (forwarding.header ?? '').toLowerCase(), hideCredentials: forwarding.hide_credentials === true };
  }
}

class RouteSettings extends ApiKeySettings {
  /** Empty: every authenticated client may use the route. */
  readonly allowedClients: ReadonlySet<string>;

  constructor(config: api_key_auth.ApiKeyAuthPerRoute, path: string, errors: ConfigError[]) {
    super(config, path, errors);
    this.allowedClients = new Set(config.allowed_clients);
  }
}

/** Undefined for an empty list: the level does not override the credentials. */
function compileCredentials(configs: readonly api_key_auth.Credential[] | undefined, path: string, errors: ConfigError[]): Map<string, string> | undefined {
  if (configs === undefined || configs.length === 0) return undefined;
  const credentials = new Map<string, string>();
  configs.forEach((credential, i) => {
    // The key itself is a secret: an error names its position only.
    if (credentials.has(credential.key!)) errors.push({ code: 'invalid_value', path: childPath(path, i), message: 'duplicate API key' });
    credentials.set(credential.key!, credential.client!);
  });
  return credentials;
}

class ApiKeyAuthFilterConfig implements HttpFilterConfig {
  constructor(
    readonly settings: ApiKeySettings,
    readonly stats: StatScope,
    private readonly context: FilterFactoryContext,
  ) {}

  createFilter(stream: DecoderFilterCallbacks, routeConfig: unknown): StreamFilter {
    return new ApiKeyAuthFilter(this, stream, routeConfig as RouteSettings | undefined);
  }

  release(): void {
    this.context.stats.release(this.stats);
  }
}

class ApiKeyAuthFilter implements StreamFilter {
  constructor(
    private readonly config: ApiKeyAuthFilterConfig,
    private readonly stream: DecoderFilterCallbacks,
    private readonly route: RouteSettings | undefined,
  ) {}

  decodeHeaders(head: RequestHead): FilterHeadersStatus {
    const defaults = this.config.settings;
    const route = this.route;
    const keySources = route?.keySources ?? defaults.keySources;
    const credentials = route?.credentials ?? defaults.credentials;
    if (keySources === undefined) return this.deny(401, UNAUTHORIZED, 'missing_key_sources');
    if (credentials === undefined) return this.deny(401, UNAUTHORIZED, 'missing_credentials');
    const key = keySources.find(head);
    if (key === '') return this.deny(401, UNAUTHORIZED, 'missing_api_key');
    const client = credentials.get(key);
    // Envoy's details string, misspelt as it is there, so that access logs read the same.
    if (client === undefined) return this.deny(401, UNAUTHORIZED, 'unkonwn_api_key');
    if (route !== undefined && route.allowedClients.size > 0 && !route.allowedClients.has(client)) {
      return this.deny(403, 'Client is forbidden.', 'client_not_allowed');
    }
    const forwarding = route?.forwarding ?? defaults.forwarding;
    if (forwarding !== undefined) {
      if (forwarding.header !== '') head.headers[forwarding.header] = client;
      if (forwarding.hideCredentials) keySources.remove(head);
    }
    this.config.stats.counters[S.allowed]++;
    return FilterHeadersStatus.Continue;
  }

  private deny(status: 401 | 403, body: string, details: string): FilterHeadersStatus {
    this.config.stats.counters[status === 401 ? S.unauthorized : S.forbidden]++;
    this.stream.sendLocalReply(status, body, 0, details);
    return FilterHeadersStatus.StopIteration;
  }
}

export const API_KEY_AUTH_FILTER_FACTORY: HttpFilterFactory = {
  name: 'envoy.filters.http.api_key_auth',
  configType: 'envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth',
  routeConfigType: 'envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuthPerRoute',

  createFilterConfig(config: unknown, context: FilterFactoryContext, path: string, errors: ConfigError[]): HttpFilterConfig {
    return new ApiKeyAuthFilterConfig(
      new ApiKeySettings(config as api_key_auth.ApiKeyAuth, path, errors),
      context.stats.scope(API_KEY_AUTH_STATS, `http.${context.statPrefix}.api_key_auth.`),
      context,
    );
  },

  compileRouteConfig(config: unknown, _runtime, path: string, errors: ConfigError[]): RouteSettings {
    return new RouteSettings(config as api_key_auth.ApiKeyAuthPerRoute, path, errors);
  },
};
