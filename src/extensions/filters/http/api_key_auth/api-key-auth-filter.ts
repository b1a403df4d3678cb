/**
 * `envoy.filters.http.api_key_auth`: API keys, each naming a client. The key is looked for in the configured
 * `key_sources` (header, query parameter or cookie; the first found wins); an unknown or missing key gets 401,
 * a client the route does not allow (`allowed_clients` of its ApiKeyAuthPerRoute) 403. The client's name can go
 * upstream in a header, and the key can be hidden from it. Its schema is hand-written (src/config/proto/supplement.ts).
 */
import type { ConfigError } from '../../../../config/errors.js';
import {
  type DecoderFilterCallbacks,
  type EncoderFilterCallbacks,
  type FilterFactoryContext,
  FilterHeadersStatus,
  type HttpFilterConfig,
  type HttpFilterFactory,
  type StreamFilter,
} from '../../../../dataplane/http/filter.js';
import { parseQuery } from '../../../../dataplane/matching/query-matcher.js';
import type { Runtime } from '../../../../dataplane/runtime/runtime.js';
import type { RequestHead } from '../../../../dataplane/stream-info.js';
import { defineStats, type StatScope } from '../../../../stats/store.js';

/** `envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth` (and, with `allowed_clients`, its per-route twin). */
interface ApiKeyAuthConfig {
  credentials?: { key?: string; client?: string }[];
  key_sources?: { header?: string; query?: string; cookie?: string }[];
  forwarding?: { header?: string; hide_credentials?: boolean };
  allowed_clients?: string[];
}

/** `http.<stat_prefix>.api_key_auth.` */
export const API_KEY_AUTH_STATS = defineStats({ counters: ['allowed', 'unauthorized', 'forbidden'], gauges: [], histograms: [] });
const S = API_KEY_AUTH_STATS.c;

type KeySource = { kind: 'header' | 'query' | 'cookie'; name: string };

/** One level's settings; a route's fields replace the filter's where set. */
interface Settings {
  readonly clients: ReadonlyMap<string, string> | undefined;
  readonly sources: readonly KeySource[] | undefined;
  readonly forwardHeader: string | undefined;
  readonly hideCredentials: boolean | undefined;
  readonly allowedClients: ReadonlySet<string> | undefined;
}

function compileSettings(config: ApiKeyAuthConfig, path: string, errors: ConfigError[]): Settings {
  let clients: Map<string, string> | undefined;
  if (config.credentials !== undefined) {
    clients = new Map();
    config.credentials.forEach((credential, i) => {
      const key = credential.key ?? '';
      if (clients!.has(key)) errors.push({ code: 'duplicate_name', path: `${path}.credentials[${i}].key`, message: 'the same key is given twice' });
      clients!.set(key, credential.client ?? '');
    });
  }
  const sources = config.key_sources?.map((source, i): KeySource => {
    const set = (['header', 'query', 'cookie'] as const).filter((kind) => source[kind]);
    if (set.length !== 1) errors.push({ code: 'invalid_value', path: `${path}.key_sources[${i}]`, message: 'a key source is exactly one of header, query and cookie' });
    const kind = set[0] ?? 'header';
    return { kind, name: kind === 'header' ? source.header!.toLowerCase() : (source[kind] ?? '') };
  });
  return {
    clients,
    sources,
    forwardHeader: config.forwarding?.header?.toLowerCase() || undefined,
    hideCredentials: config.forwarding?.hide_credentials,
    allowedClients: config.allowed_clients === undefined ? undefined : new Set(config.allowed_clients),
  };
}

class ApiKeyAuthFilterConfig implements HttpFilterConfig {
  constructor(
    private readonly settings: Settings,
    readonly stats: StatScope,
    private readonly releaseStats: () => void,
  ) {}

  createFilter(callbacks: DecoderFilterCallbacks & EncoderFilterCallbacks, routeConfig: unknown): StreamFilter {
    return new ApiKeyAuthFilter(this.stats, this.settings, routeConfig as Settings | undefined, callbacks);
  }

  release(): void {
    this.releaseStats();
  }
}

class ApiKeyAuthFilter implements StreamFilter {
  constructor(
    private readonly stats: StatScope,
    private readonly base: Settings,
    private readonly route: Settings | undefined,
    private readonly callbacks: DecoderFilterCallbacks & EncoderFilterCallbacks,
  ) {}

  decodeHeaders(): FilterHeadersStatus {
    const { base, route, callbacks } = this;
    const head = callbacks.head;
    const sources = route?.sources ?? base.sources ?? [];
    const clients = route?.clients ?? base.clients ?? new Map<string, string>();
    const found = findKey(head, sources);
    const client = found === undefined ? undefined : clients.get(found.key);
    if (client === undefined) return this.deny(401, 'Client authentication failed.', S.unauthorized, 'api_key_auth_unauthorized');
    if (route?.allowedClients !== undefined && !route.allowedClients.has(client)) return this.deny(403, 'Client is forbidden.', S.forbidden, 'api_key_auth_forbidden');
    this.stats.counters[S.allowed]++;
    const forwardHeader = route?.forwardHeader ?? base.forwardHeader;
    if (route?.hideCredentials ?? base.hideCredentials ?? false) hideKey(head, found!.source);
    if (forwardHeader !== undefined) head.headers[forwardHeader] = client;
    return FilterHeadersStatus.Continue;
  }

  private deny(status: number, body: string, counter: number, details: string): FilterHeadersStatus {
    this.stats.counters[counter]++;
    this.callbacks.sendLocalReply(status, body, 0, details);
    return FilterHeadersStatus.StopIteration;
  }
}

function findKey(head: RequestHead, sources: readonly KeySource[]): { key: string; source: KeySource } | undefined {
  for (const source of sources) {
    let key: string | undefined;
    if (source.kind === 'header') {
      const value = head.headers[source.name];
      key = Array.isArray(value) ? value[0] : value;
    } else if (source.kind === 'query') {
      key = parseQuery(head.path).get(source.name);
    } else {
      key = cookieValue(head.headers.cookie, source.name);
    }
    if (key) return { key, source };
  }
  return undefined;
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** `hide_credentials`: the key goes no further than the gateway. */
function hideKey(head: RequestHead, source: KeySource): void {
  if (source.kind === 'header') {
    delete head.headers[source.name];
  } else if (source.kind === 'query') {
    const q = head.path.indexOf('?');
    const kept = head.path
      .slice(q + 1)
      .split('&')
      .filter((pair) => pair.split('=')[0] !== source.name);
    head.path = kept.length === 0 ? head.path.slice(0, q) : `${head.path.slice(0, q)}?${kept.join('&')}`;
  } else {
    const kept = (head.headers.cookie ?? '').split(';').filter((part) => part.slice(0, part.indexOf('=')).trim() !== source.name);
    if (kept.length === 0) delete head.headers.cookie;
    else head.headers.cookie = kept.map((p) => p.trim()).join('; ');
  }
}

export const API_KEY_AUTH_FILTER_FACTORY: HttpFilterFactory = {
  name: 'envoy.filters.http.api_key_auth',
  configType: 'envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth',
  routeConfigType: 'envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuthPerRoute',

  createFilterConfig(config: unknown, context: FilterFactoryContext, path: string, errors: ConfigError[]): HttpFilterConfig {
    const stats = context.stats.scope(API_KEY_AUTH_STATS, `http.${context.statPrefix}.api_key_auth.`);
    return new ApiKeyAuthFilterConfig(compileSettings(config as ApiKeyAuthConfig, path, errors), stats, () => context.stats.release(stats));
  },

  compileRouteConfig(config: unknown, _runtime: Runtime, path: string, errors: ConfigError[]): Settings {
    return compileSettings(config as ApiKeyAuthConfig, path, errors);
  },
};
