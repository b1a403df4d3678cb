/**
 * Edge Stack's `Filter` and `FilterPolicy` → Envoy. Each Filter becomes one HTTP filter, disabled in the chain
 * (a JWT Filter a `jwt_authn` with one provider, an APIKey Filter an `api_key_auth` with its keys); each Mapping
 * turns on the Filters of the first FilterPolicy rule that matches it. Rules are bound to Mappings here, at
 * translation time, so that a route's filters are decided once and the dashboard can show them: a rule matching
 * only part of a Mapping's requests (path `/admin/*` against a Mapping of `/`) would leave the rest of the Mapping
 * unguarded if bound and guard too much if not, so it is refused, naming the Mapping.
 */
import type { ResourceError } from './translate.js';
import {
  CLAIM_TEMPLATE,
  DEFAULTS,
  type Filter,
  type FilterPolicy,
  type JwtFilterSpec,
  type ApiKeyFilterSpec,
  type Mapping,
  type MappingSpec,
  resourceKey,
} from './resources.js';
import { durationMs } from './schema.js';
import { formatDuration } from '../config/proto/encode.js';

type Json = Record<string, unknown>;

const TYPE = 'type.googleapis.com/';
const JWT_AUTHN = 'envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication';
const API_KEY_AUTH = 'envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth';
const FILTER_CONFIG = 'envoy.config.route.v3.FilterConfig';

/** How much of a Mapping's requests a rule's host or path glob matches. */
const enum Coverage {
  None,
  Part,
  All,
}

/** A glob where `*` matches any run of characters, as a RegExp. */
function globRegExp(glob: string, flags = ''): RegExp {
  return new RegExp(`^${glob.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, flags);
}

function pathCoverage(glob: string, spec: MappingSpec): Coverage {
  if (glob === '*') return Coverage.All;
  if (spec.prefix_regex || spec.case_sensitive === false) return Coverage.Part;
  if (spec.prefix_exact) return globRegExp(glob).test(spec.prefix) ? Coverage.All : Coverage.None;
  const star = glob.indexOf('*');
  const literal = star < 0 ? glob : glob.slice(0, star);
  // `L*` matches every path of a prefix that starts with L.
  if (star === glob.length - 1 && spec.prefix.startsWith(literal)) return Coverage.All;
  if (star < 0) return glob.startsWith(spec.prefix) ? Coverage.Part : Coverage.None;
  return literal.startsWith(spec.prefix) || spec.prefix.startsWith(literal) ? Coverage.Part : Coverage.None;
}

function hostCoverage(glob: string, spec: MappingSpec): Coverage {
  if (glob === '*') return Coverage.All;
  const hostname = spec.hostname ?? (spec.host_regex ? undefined : spec.host);
  if (hostname === undefined || hostname === '*') return Coverage.Part;
  if (glob.toLowerCase() === hostname.toLowerCase()) return Coverage.All;
  if (!hostname.includes('*')) return globRegExp(glob, 'i').test(hostname) ? Coverage.All : Coverage.None;
  // The Mapping serves a family of hosts: the rule matches some of them when it names one of the family.
  if (!glob.includes('*')) return globRegExp(hostname, 'i').test(glob) ? Coverage.Part : Coverage.None;
  return Coverage.Part;
}

/**
 * Whether the paths of a glob `L*` (or an exact path) inside a Mapping's prefix all go to another Mapping routed
 * before it: one with a longer prefix that L starts with, matching every host, method and header. Then the rule
 * never sees the Mapping's own requests: `/api/public/*` next to Mappings of `/api/public/` and `/api/`.
 */
function servedFirstByOthers(glob: string, spec: MappingSpec, mappings: readonly Mapping[]): boolean {
  const star = glob.indexOf('*');
  if (star >= 0 && star !== glob.length - 1) return false;
  const literal = star < 0 ? glob : glob.slice(0, -1);
  return mappings.some(({ spec: other }) => {
    if (other.shadow || other.prefix_regex || other.prefix_exact || other.case_sensitive === false) return false;
    if (other.host ?? other.hostname ?? other.method ?? other.headers ?? other.regex_headers ?? other.query_parameters ?? other.regex_query_parameters) return false;
    return other.prefix.length > spec.prefix.length && literal.startsWith(other.prefix) && (other.precedence ?? 0) >= (spec.precedence ?? 0);
  });
}

/** The HTTP filter of a Filter, as named in `http_filters` and `typed_per_filter_config`. */
export function filterName(filter: Filter): string {
  return filter.spec.JWT !== undefined ? `jwt_authn/${filter.metadata.name}` : `api_key_auth/${filter.metadata.name}`;
}

export interface FilterBindings {
  /** The Filters each Mapping runs (by `Mapping/name`), in chain order; Mappings without any are absent. */
  byMapping: Map<string, Filter[]>;
  /** Filters some Mapping runs, in chain order (JWT before APIKey, then by name). */
  used: Filter[];
}

/** The first rule of the FilterPolicies (by name, rules in order) that matches each Mapping; its Filters. */
export function bindFilters(mappings: readonly Mapping[], filters: readonly Filter[], policies: readonly FilterPolicy[], errors: ResourceError[]): FilterBindings {
  const byName = new Map(filters.map((f) => [f.metadata.name, f]));
  const rules = policies.flatMap((policy) =>
    policy.spec.rules.map((rule, i) => {
      const path = `spec.rules[${i}]`;
      const refs = rule.filters ?? [];
      const resolved: Filter[] = [];
      refs.forEach((ref, j) => {
        const filter = byName.get(ref.name);
        if (filter === undefined) errors.push({ resource: resourceKey(policy), code: 'invalid_value', path: `${path}.filters[${j}].name`, message: `no Filter named "${ref.name}"` });
        else if (!resolved.includes(filter)) resolved.push(filter);
      });
      return { policy, path, host: rule.host ?? '*', glob: rule.path ?? '*', filters: resolved.sort(chainOrder) };
    }),
  );
  const byMapping = new Map<string, Filter[]>();
  const used = new Set<Filter>();
  for (const mapping of mappings) {
    if (mapping.spec.shadow) continue; // a shadow's requests are copies; the serving Mapping's Filters ran
    for (const rule of rules) {
      const host = hostCoverage(rule.host, mapping.spec);
      let path = pathCoverage(rule.glob, mapping.spec);
      if (path === Coverage.Part && servedFirstByOthers(rule.glob, mapping.spec, mappings)) path = Coverage.None;
      if (host === Coverage.None || path === Coverage.None) continue;
      if (host === Coverage.Part || path === Coverage.Part) {
        const what = host === Coverage.Part ? `host "${rule.host}" matches only some of the hosts` : `path "${rule.glob}" matches only some of the paths`;
        errors.push({
          resource: resourceKey(rule.policy),
          code: 'invalid_value',
          path: rule.path,
          message: `${what} of ${resourceKey(mapping)} (prefix "${mapping.spec.prefix}"${mapping.spec.host ?? mapping.spec.hostname ? `, host "${mapping.spec.host ?? mapping.spec.hostname}"` : ''}): a rule applies to whole Mappings, so write a Mapping for what the rule guards, or widen the rule`,
        });
      } else if (rule.filters.length > 0) {
        byMapping.set(resourceKey(mapping), rule.filters);
        for (const f of rule.filters) used.add(f);
      }
      break;
    }
  }
  return { byMapping, used: [...used].sort(chainOrder) };
}

/** JWT Filters run before APIKey Filters, each kind by name: one order whatever order the rules list them in. */
function chainOrder(a: Filter, b: Filter): number {
  const ka = `${a.spec.JWT ? 0 : 1}${a.metadata.name}`;
  const kb = `${b.spec.JWT ? 0 : 1}${b.metadata.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/** A route's entry turning on each of its Filters. */
export function enableFilters(filters: readonly Filter[], perFilter: Json): void {
  for (const f of filters) perFilter[filterName(f)] = { '@type': TYPE + FILTER_CONFIG };
}

/** The cluster a JWKS URL is fetched from: `cluster_jwks_<host>_<port>`, TLS for https. */
export function jwksClusterAddress(uri: string): { name: string; service: string } {
  const url = new URL(uri);
  const tls = url.protocol === 'https:';
  const port = url.port === '' ? (tls ? 443 : 80) : Number(url.port);
  const service = `${tls ? 'https://' : ''}${url.hostname}:${port}`;
  return { name: `cluster_jwks_${service.replace(/^https:\/\//, 'https_').replace(/[^A-Za-z0-9]/g, '_')}`, service };
}

/** The disabled-by-default HTTP filter of a Filter. */
export function httpFilter(filter: Filter): Json {
  const typed_config = filter.spec.JWT !== undefined ? jwtAuthn(filter.metadata.name, filter.spec.JWT) : apiKeyAuth(filter.spec.APIKey!);
  return { name: filterName(filter), typed_config, disabled: true };
}

function jwtAuthn(name: string, spec: JwtFilterSpec): Json {
  // Edge Stack forwards the token unchanged.
  const provider: Json = { forward: true };
  if (spec.issuer !== undefined) provider.issuer = spec.issuer;
  if (spec.audience !== undefined) provider.audiences = [spec.audience];
  if (spec.jwks !== undefined) provider.local_jwks = { inline_string: spec.jwks };
  else {
    provider.remote_jwks = {
      http_uri: { uri: spec.jwksURI, cluster: jwksClusterAddress(spec.jwksURI!).name, timeout: formatDuration(DEFAULTS.jwksTimeoutMs) },
      cache_duration: `${DEFAULTS.jwksCacheDurationS}s`,
    };
  }
  if (spec.leewayForExpiresAt !== undefined) provider.clock_skew_seconds = Math.round(durationMs(spec.leewayForExpiresAt) / 1000);
  if (spec.injectRequestHeaders !== undefined) {
    provider.claim_to_headers = spec.injectRequestHeaders.map((h) => ({ header_name: h.name, claim_name: CLAIM_TEMPLATE.exec(h.value)![1] }));
  }
  return { '@type': TYPE + JWT_AUTHN, providers: { [name]: provider }, rules: [{ match: { prefix: '/' }, requires: { provider_name: name } }] };
}

function apiKeyAuth(spec: ApiKeyFilterSpec): Json {
  const out: Json = {
    '@type': TYPE + API_KEY_AUTH,
    credentials: spec.keys.map((k) => ({ key: k.key, client: k.client })),
    key_sources: [{ header: spec.httpHeader ?? DEFAULTS.apiKeyHeader }],
  };
  if (spec.clientHeader !== undefined || spec.hideCredentials !== undefined) {
    const forwarding: Json = {};
    if (spec.clientHeader !== undefined) forwarding.header = spec.clientHeader;
    if (spec.hideCredentials !== undefined) forwarding.hide_credentials = spec.hideCredentials;
    out.forwarding = forwarding;
  }
  return out;
}
