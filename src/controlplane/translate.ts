/**
 * Mappings, the Module, the AuthService, the RateLimitService, RateLimits, Filters and FilterPolicies → Envoy v3 resources (route tables and HTTP
 * filters, and clusters; listeners.ts puts them on the listeners that Listeners, Hosts and TCPMappings ask for), following Emissary's translation (irhttpmapping.py, irbasemappinggroup.py, v3route.py). The output is proto3-JSON in a
 * fixed key order, so the same input always gives the same bytes; `checkTranslation` then runs the data plane's
 * own validation and names, for every problem, the resource field that caused it.
 */
import { createHash } from 'node:crypto';
import { type ConfigError } from '../config/errors.js';
import { checkBootstrap, type Bootstrap } from '../config/load.js';
import { formatDuration } from '../config/proto/encode.js';
import { HCM_TYPE, ROUTER_TYPE } from '../config/validate.js';
import { findCompileProblems } from '../dataplane/data-plane.js';
import type { Logger } from '../util/logger.js';
import {
  type AuthService,
  type AuthServiceSpec,
  type Cors,
  DEFAULTS,
  type Filter,
  type FilterPolicy,
  type HeaderValue,
  type LoadBalancer,
  type Mapping,
  type MappingSpec,
  type ModuleConfig,
  type ModuleSpec,
  parseService,
  type RateLimit,
  type RateLimitService,
  type RateLimitServiceSpec,
  type Resource,
  resourceKey,
  type ServiceAddress,
  splitList,
  type TCPMapping,
  compare,
} from './resources.js';
import { durationMs } from './schema.js';
import { EXTENSIONS } from '../extensions/registry.js';
import { bindFilters, enableFilters, type FilterBindings, httpFilter, jwksClusterAddress } from './filter-policies.js';
import { compileRateLimits, type RateLimitTable } from './rate-limits.js';
import { buildListeners, type ListenerOrigins, type RouteEntry } from './listeners.js';

type Json = Record<string, unknown>;

export interface TranslateOptions {
  /** Address and port of the HTTP listener (Emissary's 8080) when no Listener resource says otherwise. */
  listenerAddress: string;
  listenerPort: number;
  /** Port of the HTTPS listener Hosts with certificates get when no Listener resource says otherwise (Emissary's 8443); none without. */
  httpsPort?: number;
  /** The gRPC port of Portico's own rate limit service on 127.0.0.1, which RateLimit resources configure. */
  rateLimitPort?: number;
}

/** A problem found in a resource, with the path inside that resource (`spec.retry_policy`). */
export interface ResourceError extends ConfigError {
  /** `Mapping/name` */
  resource?: string;
}

/** Which resource (and field) produced an element of the output, for naming the cause of a problem. */
export interface Origin {
  resource: string;
  /** The one field behind everything this origin produced (an AuthService's cluster: `spec.auth_service`). */
  field?: string;
  /** The Module field whose default a Mapping inherited, by Mapping field. */
  inherited: Partial<Record<keyof MappingSpec, string>>;
}

export interface Translation {
  listeners: Json[];
  clusters: Json[];
  /** Clusters of each Mapping (`Mapping/name` → cluster names), for per-mapping stats. */
  clustersOf: Map<string, string[]>;
  /** The Filters each Mapping runs (`Mapping/name` → `Filter/name`s), for the API and the dashboard. */
  filtersOf: Map<string, string[]>;
  /** What the RateLimits give Portico's own rate limit service. */
  rateLimits: RateLimitTable;
  errors: ResourceError[];
  /** Producers of each route (by name), of clusters[i], http_filters[i] and listeners[i] of the output. */
  origins: { routes: Map<string, Origin[]>; clusters: Origin[][]; filters: Origin[][]; listeners: ListenerOrigins[] };
}

const TYPE = 'type.googleapis.com/';
const CORS_FILTER = 'envoy.extensions.filters.http.cors.v3.Cors';
const CORS_POLICY = 'envoy.extensions.filters.http.cors.v3.CorsPolicy';
const EXT_AUTHZ = 'envoy.filters.http.ext_authz';
const EXT_AUTHZ_FILTER = 'envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';
const EXT_AUTHZ_PER_ROUTE = 'envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute';
const RATELIMIT_FILTER = 'envoy.extensions.filters.http.ratelimit.v3.RateLimit';
/**
 * Portico's own rate limit service answers on this process's event loop, behind the requests it is asked about:
 * a network service's 20 ms would let requests through unchecked whenever the loop is busy.
 */
const IN_PROCESS_RATE_LIMIT_TIMEOUT_MS = 1000;
/** Emissary's defaults, unioned with the AuthService's own lists (irauth.py). */
const AUTH_REQUEST_HEADERS = ['authorization', 'cookie', 'from', 'proxy-authorization', 'user-agent', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto'];
const AUTH_RESPONSE_HEADERS = ['authorization', 'location', 'proxy-authenticate', 'set-cookie', 'www-authenticate'];

/**
 * What a Mapping contributes whatever the other Mappings are, cached per (Module, Mapping) object, plus the
 * cluster name the translation in progress gave it (translation is synchronous, so reusing the object is safe
 * and spares copying thousands of them per change).
 */
interface Prepared {
  mapping: Mapping;
  cluster: string;
  spec: MappingSpec;
  service: ServiceAddress;
  body: Json;
  bodyKey: string;
  origin: Origin;
  groupKey: string;
  weight: RouteWeight;
  /** The last route built for this Mapping and what it was built from (cluster, weight, shadow). */
  route: { inputs: string; json: Json } | undefined;
}

// Snapshots share the objects of unchanged resources, so with parts cached per (Module, Mapping) object a change
// of one Mapping among thousands translates one Mapping again, not all of them.
const partsCache = new WeakMap<object, WeakMap<Mapping, Prepared>>();
const NO_MODULE = {};

function cacheFor(module: ModuleConfig): WeakMap<Mapping, Prepared> {
  let cache = partsCache.get(module);
  if (!cache) partsCache.set(module, (cache = new WeakMap()));
  return cache;
}

function mappingParts(mapping: Mapping, module: ModuleConfig): Prepared {
  const spec = withModuleDefaults(mapping.spec, module);
  const origin: Origin = { resource: resourceKey(mapping), inherited: {} };
  for (const [field, moduleField] of Object.entries(MODULE_DEFAULTS)) {
    if (mapping.spec[field as keyof MappingSpec] === undefined && module[moduleField] !== undefined) {
      origin.inherited[field as keyof MappingSpec] = `spec.config.${moduleField}`;
    }
  }
  const service = parseService(spec.service) as ServiceAddress;
  const body = clusterBody(spec, service);
  const bodyKey = JSON.stringify(body);
  return { mapping, cluster: bodyKey, spec, service, body, bodyKey, origin, groupKey: groupKey(spec), weight: routeWeight(spec), route: undefined };
}

/** Mapping fields that fall back to a Module default. */
const MODULE_DEFAULTS: Partial<Record<keyof MappingSpec, keyof ModuleConfig>> = {
  timeout_ms: 'cluster_request_timeout_ms',
  cluster_idle_timeout_ms: 'cluster_idle_timeout_ms',
  retry_policy: 'retry_policy',
  circuit_breakers: 'circuit_breakers',
  load_balancer: 'load_balancer',
  cors: 'cors',
};

/** What routes depend on beyond their own Mapping: whether ext_authz runs, which label domain is sent, which Filters run. */
interface Services {
  auth: boolean;
  rateLimitDomain: string | undefined;
  filters: FilterBindings['byMapping'];
}

/**
 * The one resource of a kind Emissary uses per gateway (AuthService, RateLimitService): the first by name; any
 * other is an error, since Portico does not spread checks over several services.
 */
function single<R extends Resource>(resources: readonly Resource[], kind: string, errors: ResourceError[]): R | undefined {
  const all = resources.filter((r) => r.kind === kind).sort((a, b) => compare(a.metadata.name, b.metadata.name));
  for (const extra of all.slice(1)) {
    errors.push({ resource: resourceKey(extra), code: 'invalid_value', path: 'metadata.name', message: `only one ${kind} per gateway; ${resourceKey(all[0]!)} is already in use` });
  }
  return all[0] as R | undefined;
}

/** Translates validated resources (see parseResource). Problems that involve several resources land in `errors`. */
export function translate(resources: readonly Resource[], options: TranslateOptions): Translation {
  const module = ((resources.find((r) => r.kind === 'Module')?.spec as ModuleSpec | undefined)?.config ?? NO_MODULE) as ModuleConfig;
  const mappings = resources.filter((r): r is Mapping => r.kind === 'Mapping').sort((a, b) => compare(a.metadata.name, b.metadata.name));
  const errors: ResourceError[] = [];
  const auth = single<AuthService>(resources, 'AuthService', errors);
  const rls = single<RateLimitService>(resources, 'RateLimitService', errors);
  const byName = (a: Resource, b: Resource) => compare(a.metadata.name, b.metadata.name);
  const bindings = bindFilters(
    mappings,
    resources.filter((r): r is Filter => r.kind === 'Filter').sort(byName),
    resources.filter((r): r is FilterPolicy => r.kind === 'FilterPolicy').sort(byName),
    errors,
  );
  const ownLimits = compileRateLimits(
    resources.filter((r): r is RateLimit => r.kind === 'RateLimit').sort((a, b) => compare(a.metadata.name, b.metadata.name)),
    rls,
    options.rateLimitPort,
    errors,
  );
  // The service the ratelimit filter calls: the RateLimitService's, else Portico's own when RateLimits configure it.
  const limiter = rls
    ? { resources: [rls] as Resource[], spec: rls.spec, domain: rls.spec.domain ?? DEFAULTS.rateLimitDomain }
    : ownLimits.domain !== undefined
      ? { resources: ownLimits.resources, spec: { service: `127.0.0.1:${options.rateLimitPort}`, timeout_ms: IN_PROCESS_RATE_LIMIT_TIMEOUT_MS }, domain: ownLimits.domain }
      : undefined;
  const services: Services = { auth: auth !== undefined, rateLimitDomain: limiter?.domain, filters: bindings.byMapping };

  // Clusters: one per distinct service and cluster settings, named after the service as Emissary does.
  const clusterBodies = new Map<string, { base: string; body: Json; origins: Origin[] }>();
  const prepared: Prepared[] = [];
  const cache = cacheFor(module);
  for (const mapping of mappings) {
    let parts = cache.get(mapping);
    if (!parts) cache.set(mapping, (parts = mappingParts(mapping, module)));
    let entry = clusterBodies.get(parts.bodyKey);
    if (!entry) clusterBodies.set(parts.bodyKey, (entry = { base: `cluster_${mangle(parts.spec.service)}`, body: parts.body, origins: [] }));
    entry.origins.push(parts.origin);
    parts.cluster = parts.bodyKey;
    prepared.push(parts);
  }
  // TCPMappings share the naming (and, for the same service and settings, the cluster) of Mappings.
  const tcpMappings = resources.filter((r): r is TCPMapping => r.kind === 'TCPMapping').sort(byName);
  const tcpBodies = new Map<string, string>();
  for (const m of tcpMappings) {
    const body = clusterBody({ prefix: '/', service: m.spec.service, circuit_breakers: m.spec.circuit_breakers }, parseService(m.spec.service) as ServiceAddress);
    const bodyKey = JSON.stringify(body);
    let entry = clusterBodies.get(bodyKey);
    if (!entry) clusterBodies.set(bodyKey, (entry = { base: `cluster_${mangle(m.spec.service)}`, body, origins: [] }));
    entry.origins.push({ resource: resourceKey(m), inherited: {} });
    tcpBodies.set(resourceKey(m), bodyKey);
  }
  const baseCount = new Map<string, number>();
  for (const { base } of clusterBodies.values()) baseCount.set(base, (baseCount.get(base) ?? 0) + 1);
  const clusterName = new Map<string, string>();
  for (const [key, { base }] of clusterBodies) {
    clusterName.set(key, baseCount.get(base)! > 1 ? `${base}_${createHash('sha1').update(key).digest('hex').slice(0, 8)}` : base);
  }
  for (const p of prepared) p.cluster = clusterName.get(p.cluster)!;
  const authCluster = auth && serviceCluster('extauth', auth, auth.spec.auth_service, auth.spec.proto === 'grpc', 'spec.auth_service');
  const rlsCluster = limiter && serviceCluster('ratelimit', limiter.resources[0]!, limiter.spec.service, true, rls ? 'spec.service' : 'spec');
  const clusters = [...clusterBodies.entries()]
    .map(([key, { body, origins }]) => ({ name: clusterName.get(key)!, body, origins }))
    .concat([authCluster, rlsCluster].filter((c) => c !== undefined), jwksClusters(bindings.used))
    .sort((a, b) => compare(a.name, b.name));
  const clustersOf = new Map<string, string[]>();
  for (const p of prepared) clustersOf.set(p.origin.resource, [p.cluster]);

  // Routes: Mappings that match the same requests form a group; groups are ordered as Emissary orders them.
  const groups = new Map<string, { members: Prepared[]; weight: RouteWeight }>();
  for (const p of prepared) {
    const group = groups.get(p.groupKey);
    if (group) group.members.push(p);
    else groups.set(p.groupKey, { members: [p], weight: p.weight });
  }
  const routes: RouteEntry[] = [];
  const routeOrigins = new Map<string, Origin[]>();
  const addRoute = (p: Prepared, json: Json, origins: Origin[]) => {
    routes.push({ route: json, mapping: p.mapping, spec: p.spec });
    routeOrigins.set(p.mapping.metadata.name, origins);
  };
  const ordered = [...groups].sort(([ka, a], [kb, b]) => compareWeights(b.weight, a.weight) || compare(ka, kb));
  for (const [, { members }] of ordered) {
    const only = members.length === 1 ? members[0]! : undefined;
    if (only !== undefined && !only.spec.shadow) {
      // The common case, a Mapping alone on its match.
      addRoute(only, cachedRoute(only, module, services, undefined, undefined), [only.origin]);
      continue;
    }
    const shadows = members.filter((m) => m.spec.shadow);
    const serving = members.filter((m) => !m.spec.shadow);
    for (const extra of shadows.slice(1)) {
      errors.push({ resource: extra.origin.resource, code: 'invalid_value', path: 'spec.shadow', message: `only one shadow Mapping per route; ${shadows[0]!.origin.resource} is already shadowing this prefix` });
    }
    const shadow = shadows[0];
    const weights = normalizeWeights(serving, errors);
    serving.forEach((p, i) => {
      addRoute(p, cachedRoute(p, module, services, weights.length > 1 ? weights[i] : undefined, shadow), shadow ? [p.origin, shadow.origin] : [p.origin]);
    });
    if (shadow && serving.length === 0) {
      errors.push({ resource: shadow.origin.resource, code: 'invalid_value', path: 'spec.shadow', message: 'a shadow Mapping needs a non-shadow Mapping with the same match to mirror' });
    }
  }

  const corsUsers = prepared.filter((p) => p.spec.cors !== undefined && !p.spec.shadow).map((p) => p.origin);
  const httpFilters: Json[] = [];
  const filterOrigins: Origin[][] = [];
  if (corsUsers.length > 0) {
    httpFilters.push({ name: 'envoy.filters.http.cors', typed_config: { '@type': TYPE + CORS_FILTER } });
    filterOrigins.push(corsUsers);
  }
  // Emissary's order: CORS answers preflights before authentication, authentication comes before rate limiting;
  // the Filters a FilterPolicy binds come before the AuthService, as Edge Stack runs them in its own.
  for (const filter of bindings.used) {
    httpFilters.push(httpFilter(filter));
    filterOrigins.push([{ resource: resourceKey(filter), inherited: {}, field: filter.spec.JWT ? 'spec.JWT' : 'spec.APIKey' }]);
  }
  if (auth && authCluster) {
    httpFilters.push({ name: EXT_AUTHZ, typed_config: extAuthz(auth.spec, authCluster.name) });
    filterOrigins.push([{ resource: resourceKey(auth), inherited: {}, field: 'spec' }]);
  }
  if (limiter && rlsCluster) {
    httpFilters.push({ name: 'envoy.filters.http.ratelimit', typed_config: rateLimitFilter(limiter.spec, limiter.domain, rlsCluster.name) });
    filterOrigins.push(limiter.resources.map((r) => ({ resource: resourceKey(r), inherited: {}, field: 'spec' })));
  }
  const router: Json = { '@type': TYPE + ROUTER_TYPE };
  if (module.suppress_envoy_headers !== undefined) router.suppress_envoy_headers = module.suppress_envoy_headers;
  httpFilters.push({ name: 'envoy.filters.http.router', typed_config: router });
  filterOrigins.push([]);

  const built = buildListeners({
    resources,
    routes,
    connectionManager: (statPrefix, l7Depth, routeConfig) => {
      const hcm: Json = { '@type': TYPE + HCM_TYPE, ...connectionManager(module) };
      hcm.stat_prefix = statPrefix;
      if (l7Depth !== undefined) hcm.xff_num_trusted_hops = l7Depth;
      return { ...hcm, route_config: routeConfig, http_filters: httpFilters };
    },
    tcpCluster: (m) => clusterName.get(tcpBodies.get(resourceKey(m))!)!,
    options,
    errors,
  });
  for (const [name, origins] of built.routeOrigins) routeOrigins.set(name, origins);
  return {
    listeners: built.listeners,
    clusters: clusters.map((c) => envoyCluster(c.name, c.body)),
    clustersOf,
    filtersOf: new Map([...bindings.byMapping].map(([mapping, filters]) => [mapping, filters.map(resourceKey)])),
    rateLimits: ownLimits,
    errors,
    origins: { routes: routeOrigins, clusters: clusters.map((c) => c.origins), filters: filterOrigins, listeners: built.origins },
  };
}

function withModuleDefaults(spec: MappingSpec, module: ModuleConfig): MappingSpec {
  const out: MappingSpec = { ...spec };
  for (const [field, moduleField] of Object.entries(MODULE_DEFAULTS)) {
    const key = field as keyof MappingSpec;
    if (out[key] === undefined && module[moduleField] !== undefined) (out as unknown as Json)[key] = module[moduleField];
  }
  return out;
}

/** Settings of the HTTP connection manager: Emissary's defaults and the Module's overrides. */
function connectionManager(module: ModuleConfig): Json {
  const hcm: Json = {
    stat_prefix: 'ingress_http',
    // Emissary is an edge proxy: it trusts the peer address, not a client-supplied X-Forwarded-For.
    use_remote_address: module.use_remote_address ?? true,
    normalize_path: true,
  };
  if (module.xff_num_trusted_hops !== undefined) hcm.xff_num_trusted_hops = module.xff_num_trusted_hops;
  if (module.server_name !== undefined) hcm.server_name = module.server_name;
  if (module.max_request_headers_kb !== undefined) hcm.max_request_headers_kb = module.max_request_headers_kb;
  if (module.merge_slashes !== undefined) hcm.merge_slashes = module.merge_slashes;
  if (module.strip_matching_host_port !== undefined) hcm.strip_matching_host_port = module.strip_matching_host_port;
  if (module.preserve_external_request_id !== undefined) hcm.preserve_external_request_id = module.preserve_external_request_id;
  const common: Json = {};
  if (module.listener_idle_timeout_ms !== undefined) common.idle_timeout = formatDuration(module.listener_idle_timeout_ms);
  if (module.headers_with_underscores_action !== undefined) common.headers_with_underscores_action = module.headers_with_underscores_action;
  if (Object.keys(common).length) hcm.common_http_protocol_options = common;
  if (module.enable_http10 !== undefined) hcm.http_protocol_options = { accept_http_10: module.enable_http10 };
  return hcm;
}

/** The clusters JWT Filters fetch their JWKS from, one per host and port. */
function jwksClusters(filters: readonly Filter[]): { name: string; body: Json; origins: Origin[] }[] {
  const out = new Map<string, { name: string; body: Json; origins: Origin[] }>();
  for (const filter of filters) {
    const uri = filter.spec.JWT?.jwksURI;
    if (uri === undefined) continue;
    const { name, service } = jwksClusterAddress(uri);
    const origin: Origin = { resource: resourceKey(filter), inherited: {}, field: 'spec.JWT.jwksURI' };
    const cluster = out.get(name);
    if (cluster) cluster.origins.push(origin);
    else out.set(name, { name, body: clusterBody({ prefix: '/', service }, parseService(service) as ServiceAddress), origins: [origin] });
  }
  return [...out.values()];
}

/** The cluster of an AuthService or RateLimitService, named as Emissary names them; gRPC needs HTTP/2. */
function serviceCluster(prefix: string, r: Resource, address: string, grpc: boolean, field: string): { name: string; body: Json; origins: Origin[] } {
  const service = parseService(address) as ServiceAddress;
  const body = clusterBody({ prefix: '/', service: address }, service);
  if (grpc) body.http2_protocol_options = {};
  return { name: `cluster_${prefix}_${mangle(address)}`, body, origins: [{ resource: resourceKey(r), inherited: {}, field }] };
}

function exactHeaders(defaults: string[], extra: string[] | undefined): Json {
  const names = [...new Set([...defaults, ...(extra ?? []).map((h) => h.toLowerCase())])].sort(compare);
  return { patterns: names.map((exact) => ({ exact, ignore_case: true })) };
}

/** Emissary's V3HTTPFilter_authv1: the AuthService as an ext_authz filter over its cluster. */
function extAuthz(spec: AuthServiceSpec, cluster: string): Json {
  const timeout = formatDuration(spec.timeout_ms ?? DEFAULTS.authTimeoutMs);
  const out: Json = { '@type': TYPE + EXT_AUTHZ_FILTER };
  if (spec.proto === 'grpc') {
    out.grpc_service = { envoy_grpc: { cluster_name: cluster }, timeout };
  } else {
    const service = parseService(spec.auth_service) as ServiceAddress;
    const http: Json = { server_uri: { uri: `${service.tls ? 'https' : 'http'}://${spec.auth_service.replace(/^https?:\/\//i, '')}`, cluster, timeout } };
    if (spec.path_prefix !== undefined) http.path_prefix = spec.path_prefix;
    const request: Json = { allowed_headers: exactHeaders(AUTH_REQUEST_HEADERS, spec.allowed_request_headers) };
    if (spec.add_auth_headers !== undefined) {
      request.headers_to_add = Object.entries(spec.add_auth_headers).sort(([a], [b]) => compare(a, b)).map(([key, value]) => ({ key, value }));
    }
    http.authorization_request = request;
    // Emissary uses one list both ways: to the upstream on success, to the client on a denial.
    const responseHeaders = exactHeaders(AUTH_RESPONSE_HEADERS, spec.allowed_authorization_headers);
    http.authorization_response = { allowed_upstream_headers: responseHeaders, allowed_client_headers: responseHeaders };
    out.http_service = http;
  }
  out.transport_api_version = 'V3';
  // As Emissary: headers the authorization service sets may change which route matches.
  out.clear_route_cache = true;
  if (spec.failure_mode_allow !== undefined) out.failure_mode_allow = spec.failure_mode_allow;
  if (spec.include_body !== undefined) {
    out.with_request_body = { max_request_bytes: spec.include_body.max_bytes, allow_partial_message: spec.include_body.allow_partial ?? false };
  }
  if (spec.status_on_error !== undefined) out.status_on_error = { code: spec.status_on_error.code };
  return out;
}

function rateLimitFilter(spec: RateLimitServiceSpec, domain: string, cluster: string): Json {
  return {
    '@type': TYPE + RATELIMIT_FILTER,
    domain,
    timeout: formatDuration(spec.timeout_ms ?? DEFAULTS.rateLimitTimeoutMs),
    failure_mode_deny: spec.failure_mode_deny ?? false,
    rate_limit_service: { grpc_service: { envoy_grpc: { cluster_name: cluster } }, transport_api_version: 'V3' },
  };
}

/** A cluster without its name and endpoints (which follow from the service): what makes two clusters differ. */
function clusterBody(spec: MappingSpec, service: ServiceAddress): Json {
  const body: Json = {
    type: spec.dns_type === 'logical_dns' ? 'LOGICAL_DNS' : 'STRICT_DNS',
    connect_timeout: formatDuration(spec.connect_timeout_ms ?? DEFAULTS.connectTimeoutMs),
    // Emissary resolves IPv4 only unless enable_ipv6 is set.
    dns_lookup_family: 'V4_ONLY',
    host: service.host,
    port: service.port,
  };
  const policy = spec.load_balancer?.policy;
  if (policy !== undefined && policy !== 'round_robin') body.lb_policy = policy.toUpperCase();
  if (spec.circuit_breakers !== undefined) {
    body.circuit_breakers = {
      thresholds: spec.circuit_breakers.map((cb) => {
        const t: Json = { priority: (cb.priority ?? 'default').toUpperCase() };
        for (const k of ['max_connections', 'max_pending_requests', 'max_requests', 'max_retries'] as const) if (cb[k] !== undefined) t[k] = cb[k];
        return t;
      }),
    };
  }
  if (spec.cluster_idle_timeout_ms !== undefined) body.common_http_protocol_options = { idle_timeout: formatDuration(spec.cluster_idle_timeout_ms) };
  if (service.tls) {
    body.transport_socket = {
      name: 'envoy.transport_sockets.tls',
      typed_config: { '@type': `${TYPE}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`, sni: service.host },
    };
  }
  return body;
}

/** The Envoy cluster: the body with the service address moved into load_assignment. */
function envoyCluster(name: string, body: Json): Json {
  const { host, port, ...rest } = body;
  const endpoint = { address: { socket_address: { address: host, port_value: port } } };
  return { name, ...rest, load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint }] }] } };
}

function mangle(service: string): string {
  return service.replace(/^https?:\/\//i, (s) => (s.toLowerCase() === 'https://' ? 'https_' : '')).replace(/[^A-Za-z0-9]/g, '_');
}

/** Header matchers of a Mapping, including `:authority` and `:method`, sorted by name. */
function headerMatchers(spec: MappingSpec): Json[] {
  const out: Json[] = [];
  const hostname = spec.hostname;
  if (hostname !== undefined && hostname !== '*') {
    const string_match = hostname.startsWith('*.') ? { suffix: hostname.slice(1) } : hostname.endsWith('.*') ? { prefix: hostname.slice(0, -1) } : { exact: hostname };
    out.push({ name: ':authority', string_match });
  } else if (hostname === undefined && spec.host !== undefined) {
    out.push({ name: ':authority', string_match: spec.host_regex ? { safe_regex: { regex: spec.host } } : { exact: spec.host } });
  }
  if (spec.method !== undefined) out.push({ name: ':method', string_match: spec.method_regex ? { safe_regex: { regex: spec.method } } : { exact: spec.method } });
  for (const [name, value] of Object.entries(spec.headers ?? {})) {
    out.push(value === true ? { name, present_match: true } : { name, string_match: { exact: value } });
  }
  for (const [name, value] of Object.entries(spec.regex_headers ?? {})) out.push({ name, string_match: { safe_regex: { regex: value } } });
  return out.sort((a, b) => compare(a.name as string, b.name as string));
}

function queryMatchers(spec: MappingSpec): Json[] {
  const out: Json[] = [];
  for (const [name, value] of Object.entries(spec.query_parameters ?? {})) {
    out.push(value === true ? { name, present_match: true } : { name, string_match: { exact: value } });
  }
  for (const [name, value] of Object.entries(spec.regex_query_parameters ?? {})) out.push({ name, string_match: { safe_regex: { regex: value } } });
  return out.sort((a, b) => compare(a.name as string, b.name as string));
}

function routeMatch(spec: MappingSpec): Json {
  const match: Json = spec.prefix_regex ? { safe_regex: { regex: spec.prefix } } : spec.prefix_exact ? { path: spec.prefix } : { prefix: spec.prefix };
  if (spec.case_sensitive === false) match.case_sensitive = false;
  const headers = headerMatchers(spec);
  if (headers.length) match.headers = headers;
  const query = queryMatchers(spec);
  if (query.length) match.query_parameters = query;
  return match;
}

function groupKey(spec: MappingSpec): string {
  return JSON.stringify([routeMatch(spec), spec.precedence ?? 0]);
}

type RouteWeight = (number | string)[];

/** Emissary's `_route_weight`: groups are sorted by it, descending. */
function routeWeight(spec: MappingSpec): RouteWeight {
  const headers = headerMatchers(spec);
  return [
    spec.precedence ?? 0,
    spec.prefix.length,
    headers.length,
    queryMatchers(spec).length,
    spec.prefix,
    spec.method ?? 'GET',
    ...headers.map((h) => h.name as string),
  ];
}

/** Python's list ordering. */
function compareWeights(a: RouteWeight, b: RouteWeight): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x !== y) return typeof x === 'number' && typeof y === 'number' ? x - y : compare(String(x), String(y));
  }
  return a.length - b.length;
}


/**
 * Emissary's canary split (normalize_weights_in_mappings): explicit weights accumulate in order, Mappings
 * without a weight share the rest equally, and the last route takes everything left (100).
 */
function normalizeWeights(members: Prepared[], errors: ResourceError[]): number[] {
  const weighted = members.filter((m) => m.spec.weight !== undefined);
  const weightless = members.filter((m) => m.spec.weight === undefined);
  members.splice(0, members.length, ...weighted, ...weightless);
  let total = 0;
  const out: number[] = [];
  for (const m of weighted) {
    total += m.spec.weight!;
    out.push(total);
  }
  if (total > 100) {
    for (const m of weighted) {
      errors.push({ resource: m.origin.resource, code: 'invalid_value', path: 'spec.weight', message: `the weights of ${weighted.map((w) => w.origin.resource).join(', ')} add up to ${total}, more than 100` });
    }
  }
  const share = weightless.length ? (100 - Math.min(total, 100)) / weightless.length : 0;
  for (let i = 0; i < weightless.length; i++) out.push(Math.min(total, 100) + share * (i + 1));
  if (out.length) out[out.length - 1] = 100;
  return out.map((w) => Math.round(w));
}

function headersToAdd(headers: Record<string, HeaderValue> | undefined): Json[] | undefined {
  if (headers === undefined) return undefined;
  return Object.entries(headers)
    .sort(([a], [b]) => compare(a, b))
    .map(([key, v]) => {
      const { value, append } = typeof v === 'string' ? { value: v, append: true } : { value: v.value, append: v.append ?? true };
      return { header: { key, value }, append_action: append ? 'APPEND_IF_EXISTS_OR_ADD' : 'OVERWRITE_IF_EXISTS_OR_ADD' };
    });
}

const REDIRECT_CODES: Record<number, string> = {
  301: 'MOVED_PERMANENTLY',
  302: 'FOUND',
  303: 'SEE_OTHER',
  307: 'TEMPORARY_REDIRECT',
  308: 'PERMANENT_REDIRECT',
};

function cachedRoute(p: Prepared, module: ModuleConfig, services: Services, cumulativeWeight: number | undefined, shadow: Prepared | undefined): Json {
  const filters = services.filters.get(p.origin.resource)?.map((f) => f.metadata.name);
  const inputs = `${p.cluster} ${cumulativeWeight} ${shadow?.cluster} ${shadow?.spec.weight} ${services.auth} ${services.rateLimitDomain} ${filters}`;
  if (p.route?.inputs !== inputs) p.route = { inputs, json: route(p, module, services, cumulativeWeight, shadow) };
  return p.route.json;
}

function route(p: Prepared, module: ModuleConfig, services: Services, cumulativeWeight: number | undefined, shadow: Prepared | undefined): Json {
  const { spec, service } = p;
  const match = routeMatch(spec);
  if (cumulativeWeight !== undefined) {
    match.runtime_fraction = { default_value: { numerator: cumulativeWeight, denominator: 'HUNDRED' }, runtime_key: `routing.traffic_shift.${p.cluster}` };
  }
  const out: Json = { name: p.mapping.metadata.name, match };
  if (spec.host_redirect) {
    const redirect: Json = { host_redirect: service.host };
    if (service.explicitPort) redirect.port_redirect = service.port;
    if (service.tls) redirect.https_redirect = true;
    if (spec.path_redirect !== undefined) redirect.path_redirect = spec.path_redirect;
    if (spec.prefix_redirect !== undefined) redirect.prefix_rewrite = spec.prefix_redirect;
    if (spec.regex_redirect !== undefined) redirect.regex_rewrite = regexRewrite(spec.regex_redirect);
    redirect.response_code = REDIRECT_CODES[spec.redirect_response_code ?? DEFAULTS.redirectResponseCode];
    out.redirect = redirect;
  } else {
    out.route = routeAction(p, module, services, shadow);
  }
  const requestAdd = headersToAdd(spec.add_request_headers);
  if (requestAdd) out.request_headers_to_add = requestAdd;
  if (spec.remove_request_headers) out.request_headers_to_remove = spec.remove_request_headers;
  const responseAdd = headersToAdd(spec.add_response_headers);
  if (responseAdd) out.response_headers_to_add = responseAdd;
  if (spec.remove_response_headers) out.response_headers_to_remove = spec.remove_response_headers;
  const perFilter: Json = {};
  if (spec.cors !== undefined) perFilter['envoy.filters.http.cors'] = { '@type': TYPE + CORS_POLICY, ...corsPolicy(spec.cors) };
  const filters = services.filters.get(p.origin.resource);
  if (filters !== undefined) enableFilters(filters, perFilter);
  if (services.auth) {
    if (spec.bypass_auth) perFilter[EXT_AUTHZ] = { '@type': TYPE + EXT_AUTHZ_PER_ROUTE, disabled: true };
    else if (spec.auth_context_extensions !== undefined) {
      perFilter[EXT_AUTHZ] = { '@type': TYPE + EXT_AUTHZ_PER_ROUTE, check_settings: { context_extensions: spec.auth_context_extensions } };
    }
  }
  if (Object.keys(perFilter).length) out.typed_per_filter_config = perFilter;
  return out;
}

function regexRewrite(r: { pattern: string; substitution: string }): Json {
  return { pattern: { regex: r.pattern }, substitution: r.substitution };
}

function routeAction(p: Prepared, module: ModuleConfig, services: Services, shadow: Prepared | undefined): Json {
  const { spec } = p;
  const action: Json = { cluster: p.cluster };
  if (spec.regex_rewrite !== undefined) action.regex_rewrite = regexRewrite(spec.regex_rewrite);
  else if (!spec.prefix_regex) {
    const rewrite = spec.rewrite ?? DEFAULTS.rewrite;
    if (rewrite !== '') action.prefix_rewrite = rewrite;
  }
  action.timeout = formatDuration(spec.timeout_ms ?? module.cluster_request_timeout_ms ?? DEFAULTS.timeoutMs);
  if (spec.idle_timeout_ms !== undefined) action.idle_timeout = formatDuration(spec.idle_timeout_ms);
  if (spec.host_rewrite !== undefined) action.host_rewrite_literal = spec.host_rewrite;
  if (spec.auto_host_rewrite) action.auto_host_rewrite = true;
  if (spec.retry_policy !== undefined) {
    const retry: Json = { retry_on: spec.retry_policy.retry_on ?? '5xx' };
    if (spec.retry_policy.num_retries !== undefined) retry.num_retries = spec.retry_policy.num_retries;
    if (spec.retry_policy.per_try_timeout !== undefined) retry.per_try_timeout = formatDuration(durationMs(spec.retry_policy.per_try_timeout));
    action.retry_policy = retry;
  }
  const hash = hashPolicy(spec.load_balancer);
  if (hash) action.hash_policy = [hash];
  const upgrades = [...(spec.allow_upgrade ?? []), ...(spec.use_websocket ? ['websocket'] : [])];
  if (upgrades.length) action.upgrade_configs = [...new Set(upgrades)].map((upgrade_type) => ({ upgrade_type }));
  if (shadow) {
    action.request_mirror_policies = [
      { cluster: shadow.cluster, runtime_fraction: { default_value: { numerator: shadow.spec.weight ?? 100, denominator: 'HUNDRED' } } },
    ];
  }
  // Emissary sends only the labels of the RateLimitService's domain; without one, labels do nothing.
  const groups = services.rateLimitDomain !== undefined ? spec.labels?.[services.rateLimitDomain] : undefined;
  if (groups !== undefined) action.rate_limits = rateLimits(groups as LabelGroup[]);
  return action;
}

function hashPolicy(lb: LoadBalancer | undefined): Json | undefined {
  if (lb === undefined) return undefined;
  if (lb.header !== undefined) return { header: { header_name: lb.header } };
  if (lb.cookie !== undefined) {
    const cookie: Json = { name: lb.cookie.name };
    if (lb.cookie.path !== undefined) cookie.path = lb.cookie.path;
    if (lb.cookie.ttl !== undefined) cookie.ttl = formatDuration(durationMs(lb.cookie.ttl));
    return { cookie };
  }
  if (lb.source_ip) return { connection_properties: { source_ip: true } };
  return undefined;
}

/**
 * Emissary's IRCORS: each origin an exact match (`*` included: Envoy's CORS filter treats a matcher of the literal
 * `*` as "any origin"); lists joined with `, `, strings kept as written.
 */
function corsPolicy(cors: Cors): Json {
  const out: Json = {};
  const origins = cors.origins === undefined ? [] : splitList(cors.origins);
  if (origins.length) out.allow_origin_string_match = origins.map((exact) => ({ exact }));
  const header = (value: string | string[]): string => (Array.isArray(value) ? value.join(', ') : value);
  if (cors.methods !== undefined) out.allow_methods = header(cors.methods);
  if (cors.headers !== undefined) out.allow_headers = header(cors.headers);
  if (cors.exposed_headers !== undefined) out.expose_headers = header(cors.exposed_headers);
  if (cors.max_age !== undefined) out.max_age = cors.max_age;
  if (cors.credentials !== undefined) out.allow_credentials = cors.credentials;
  return out;
}

type LabelGroup = Record<string, unknown[]>;

/** The label groups of one domain (`[{group: [action, …]}]`) → Envoy rate limits, one per group. */
function rateLimits(groups: LabelGroup[]): Json[] {
  return groups.flatMap((group) => Object.values(group).map((actions) => ({ actions: actions.map(rateLimitAction) })));
}

/** One label action (checked by resources.ts) → an Envoy `RateLimit.Action`. */
function rateLimitAction(action: unknown): Json {
  if (action === 'source_cluster' || action === 'destination_cluster' || action === 'remote_address') return { [action]: {} };
  if (typeof action === 'string') return { generic_key: { descriptor_value: action } };
  const [kind, value] = Object.entries(action as Json)[0]!;
  const v = (value ?? {}) as Json;
  if (kind === 'request_headers') return { request_headers: { header_name: v.header_name, descriptor_key: v.key, skip_if_absent: v.omit_if_not_present ?? false } };
  if (kind === 'generic_key') return { generic_key: { descriptor_value: v.value, ...(v.key !== undefined ? { descriptor_key: v.key } : {}) } };
  // Envoy's remote_address, source_cluster and destination_cluster take no settings (the descriptor key is fixed).
  return { [kind]: {} };
}

/** The bootstrap the data plane serves for a translation (plus the admin address, when there is one). */
export function toBootstrap(t: Pick<Translation, 'listeners' | 'clusters'>): Json {
  return { static_resources: { listeners: t.listeners, clusters: t.clusters } };
}

/** Envoy field (below a route or cluster) → the Mapping field that produced it. */
const ROUTE_FIELDS: [RegExp, keyof MappingSpec][] = [
  [/^\.route\.retry_policy/, 'retry_policy'],
  [/^\.route\.request_mirror_policies/, 'shadow'],
  [/^\.route\.hash_policy/, 'load_balancer'],
  [/^\.route\.upgrade_configs/, 'allow_upgrade'],
  [/^\.route\.rate_limits/, 'labels'],
  [/^\.route\.regex_rewrite/, 'regex_rewrite'],
  [/^\.route\.prefix_rewrite/, 'rewrite'],
  [/^\.route\.timeout/, 'timeout_ms'],
  [/^\.route\.idle_timeout/, 'idle_timeout_ms'],
  [/^\.route\.host_rewrite_literal/, 'host_rewrite'],
  [/^\.route\.auto_host_rewrite/, 'auto_host_rewrite'],
  [/^\.redirect/, 'host_redirect'],
  [/^\.typed_per_filter_config\W+envoy\.filters\.http\.ext_authz.*check_settings/, 'auth_context_extensions'],
  [/^\.typed_per_filter_config\W+envoy\.filters\.http\.ext_authz/, 'bypass_auth'],
  [/^\.typed_per_filter_config/, 'cors'],
  [/^\.match\.headers/, 'headers'],
  [/^\.match\.query_parameters/, 'query_parameters'],
  [/^\.match/, 'prefix'],
  [/^\.request_headers_to_add/, 'add_request_headers'],
  [/^\.request_headers_to_remove/, 'remove_request_headers'],
  [/^\.response_headers_to_add/, 'add_response_headers'],
  [/^\.response_headers_to_remove/, 'remove_response_headers'],
];
const CLUSTER_FIELDS: [RegExp, keyof MappingSpec][] = [
  [/^\.circuit_breakers/, 'circuit_breakers'],
  [/^\.lb_policy/, 'load_balancer'],
  [/^\.connect_timeout/, 'connect_timeout_ms'],
  [/^\.common_http_protocol_options/, 'cluster_idle_timeout_ms'],
  [/^\.type/, 'dns_type'],
];

/**
 * Runs the data plane's validation and compiler over a translation and names, for each problem, the resource
 * field behind it (`Mapping/x` `spec.retry_policy`, with the Envoy path in the message). Returns the decoded
 * bootstrap when there is no problem.
 */
export function checkTranslation(t: Translation, log: Logger): { bootstrap: Bootstrap; errors: ResourceError[] } {
  const checked = checkBootstrap(toBootstrap(t));
  const envoyErrors = [...checked.errors];
  // The compiler finds what the schema cannot (regexes, rewrite rules); nothing is bound or resolved.
  findCompileProblems(checked.bootstrap, log, envoyErrors, EXTENSIONS);
  // A Module default inherited by many Mappings fails once per route: report it once.
  const seen = new Set<string>();
  const errors = [...t.errors, ...envoyErrors.flatMap((e) => attribute(e, t))].filter((e) => {
    const key = `${e.resource} ${e.path} ${e.code}`;
    return !seen.has(key) && seen.add(key);
  });
  return { bootstrap: checked.bootstrap, errors };
}

function attribute(error: ConfigError, t: Translation): ResourceError[] {
  const message = `${error.message} (Envoy ${error.path})`;
  const found =
    locate(error.path, /^(.*\.routes\[\d+\])(.*)$/, (m) => t.origins.routes.get(String(jsonAt(toBootstrap(t), m[1]!)?.name)) ?? [], ROUTE_FIELDS) ??
    locate(error.path, /^static_resources\.clusters\[(\d+)\](.*)$/, (m) => t.origins.clusters[Number(m[1])] ?? [], CLUSTER_FIELDS, 'service') ??
    locate(error.path, /\.http_filters\[(\d+)\](.*)$/, (m) => t.origins.filters[Number(m[1])] ?? [], [[/^/, 'cors']]) ??
    locateListener(error.path, t.origins.listeners);
  if (found === undefined || found.length === 0) {
    // Listener-wide settings come from the Module.
    return [{ resource: 'Module/ambassador', code: error.code, path: 'spec.config', message }];
  }
  return found.map(({ resource, path }) => ({ resource, code: error.code, path, message }));
}

function locate(
  path: string,
  pattern: RegExp,
  producersOf: (m: RegExpExecArray) => Origin[],
  fields: [RegExp, keyof MappingSpec][],
  fallback = 'prefix',
): { resource: string; path: string }[] | undefined {
  const m = pattern.exec(path);
  if (m === null) return undefined;
  const rest = m[2]!;
  const field = fields.find(([re]) => re.test(rest))?.[1] ?? (fallback as keyof MappingSpec);
  const producers = producersOf(m);
  // A mirror policy is the shadow Mapping's doing; everything else on the route is the serving Mapping's.
  const owners = field === 'shadow' ? producers.slice(1) : fields === ROUTE_FIELDS ? producers.slice(0, 1) : producers;
  return owners.map((o) => {
    if (o.field !== undefined) return { resource: o.resource, path: o.field };
    const inherited = o.inherited[field];
    return inherited ? { resource: 'Module/ambassador', path: inherited } : { resource: o.resource, path: `spec.${field}` };
  });
}

/** A listener's problem: its TLS context's (the certificate, key, CA or settings behind it), its TCPMappings', or the listener's own. */
function locateListener(path: string, listeners: ListenerOrigins[]): { resource: string; path: string }[] | undefined {
  const m = /^static_resources\.listeners\[(\d+)\](?:\.filter_chains\[(\d+)\](.*))?/.exec(path);
  const listener = m && listeners[Number(m[1])];
  if (!listener) return undefined;
  const chain = m[2] === undefined ? undefined : listener.chains[Number(m[2])];
  const rest = m[3] ?? '';
  let owners = listener.listener;
  if (chain?.tls && rest.startsWith('.transport_socket')) {
    const tls = chain.tls;
    owners = [/certificate_chain/.test(rest) ? tls.cert : /private_key/.test(rest) ? tls.key : /validation_context/.test(rest) ? (tls.ca ?? tls.settings) : tls.settings];
  } else if (chain) owners = chain.filters;
  return owners.map((o) => ({ resource: o.resource, path: o.field ?? 'spec' }));
}

/** The value at a path of the form `a.b[2].c` in a JSON document. */
function jsonAt(root: unknown, path: string): Json | undefined {
  let value = root;
  for (const [, key, index] of path.matchAll(/\.?([^.[\]]+)|\[(\d+)\]/g)) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string, unknown>)[key ?? Number(index)];
  }
  return typeof value === 'object' && value !== null ? (value as Json) : undefined;
}

/** A translation that passed validation, ready to serve. */
export interface BuiltConfig {
  bootstrap: Bootstrap;
  /** The translation's listeners and clusters as proto3-JSON: what the xDS snapshot is made of. */
  envoy: Pick<Translation, 'listeners' | 'clusters'>;
  clustersOf: Map<string, string[]>;
  filtersOf: Map<string, string[]>;
  rateLimits: RateLimitTable;
}

/** Translates and validates resources: the validator of every store write. */
export function buildConfig(resources: readonly Resource[], options: TranslateOptions, log: Logger): { errors: ResourceError[]; value: BuiltConfig } {
  const t = translate(resources, options);
  const { bootstrap, errors } = checkTranslation(t, log);
  return { errors, value: { bootstrap, envoy: { listeners: t.listeners, clusters: t.clusters }, clustersOf: t.clustersOf, filtersOf: t.filtersOf, rateLimits: t.rateLimits } };
}
