/**
 * The resources users write, in Emissary's `getambassador.io/v3alpha1` shape: `Mapping`, `Module`, `AuthService`,
 * `RateLimitService`, `Host`, `TLSContext`, `TCPMapping` and `Listener`, Ambassador Edge Stack's `Filter`,
 * `FilterPolicy` and `RateLimit`, and a Kubernetes-style `Secret` holding certificates. This file says what a
 * valid resource is; translate.ts and listeners.ts say what it means.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { isIP } from 'node:net';
import { type ConfigError, childPath } from '../config/errors.js';
import {
  bool,
  type Check,
  duration,
  either,
  headerName,
  int,
  isObject,
  listOf,
  mapOf,
  matchHeaderName,
  object,
  oneOf,
  regex,
  str,
  stringOrList,
  typeName,
} from './schema.js';

export const API_VERSION = 'getambassador.io/v3alpha1';

export interface Metadata {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
}

export interface Resource<S = object> {
  apiVersion: string;
  kind: Kind;
  metadata: Metadata;
  spec: S;
}

export type HeaderValue = string | { value: string; append?: boolean };
export interface RegexSubstitution {
  pattern: string;
  substitution: string;
}
export interface RetryPolicy {
  retry_on?: string;
  num_retries?: number;
  per_try_timeout?: string;
}
export interface CircuitBreaker {
  priority?: 'default' | 'high';
  max_connections?: number;
  max_pending_requests?: number;
  max_requests?: number;
  max_retries?: number;
}
export interface LoadBalancer {
  policy: 'round_robin' | 'least_request' | 'ring_hash' | 'maglev';
  cookie?: { name: string; path?: string; ttl?: string };
  header?: string;
  source_ip?: boolean;
}
export interface Cors {
  origins?: string | string[];
  methods?: string | string[];
  headers?: string | string[];
  exposed_headers?: string | string[];
  credentials?: boolean;
  max_age?: string;
}

export interface MappingSpec {
  prefix: string;
  prefix_regex?: boolean;
  prefix_exact?: boolean;
  case_sensitive?: boolean;
  service: string;
  rewrite?: string;
  regex_rewrite?: RegexSubstitution;
  host?: string;
  host_regex?: boolean;
  hostname?: string;
  method?: string;
  method_regex?: boolean;
  headers?: Record<string, string | true>;
  regex_headers?: Record<string, string>;
  query_parameters?: Record<string, string | true>;
  regex_query_parameters?: Record<string, string>;
  weight?: number;
  precedence?: number;
  timeout_ms?: number;
  idle_timeout_ms?: number;
  connect_timeout_ms?: number;
  cluster_idle_timeout_ms?: number;
  dns_type?: 'strict_dns' | 'logical_dns';
  retry_policy?: RetryPolicy;
  circuit_breakers?: CircuitBreaker[];
  load_balancer?: LoadBalancer;
  add_request_headers?: Record<string, HeaderValue>;
  add_response_headers?: Record<string, HeaderValue>;
  remove_request_headers?: string[];
  remove_response_headers?: string[];
  host_rewrite?: string;
  auto_host_rewrite?: boolean;
  shadow?: boolean;
  host_redirect?: boolean;
  path_redirect?: string;
  prefix_redirect?: string;
  regex_redirect?: RegexSubstitution;
  redirect_response_code?: 301 | 302 | 303 | 307 | 308;
  allow_upgrade?: string[];
  use_websocket?: boolean;
  cors?: Cors;
  bypass_auth?: boolean;
  auth_context_extensions?: Record<string, string>;
  labels?: Record<string, unknown>;
  docs?: Record<string, unknown>;
}

export interface ModuleConfig {
  cluster_request_timeout_ms?: number;
  cluster_idle_timeout_ms?: number;
  retry_policy?: RetryPolicy;
  circuit_breakers?: CircuitBreaker[];
  load_balancer?: LoadBalancer;
  cors?: Cors;
  server_name?: string;
  use_remote_address?: boolean;
  xff_num_trusted_hops?: number;
  max_request_headers_kb?: number;
  merge_slashes?: boolean;
  strip_matching_host_port?: boolean;
  preserve_external_request_id?: boolean;
  listener_idle_timeout_ms?: number;
  suppress_envoy_headers?: boolean;
  enable_http10?: boolean;
  headers_with_underscores_action?: 'ALLOW' | 'REJECT_REQUEST' | 'DROP_HEADER';
}

export interface ModuleSpec {
  config?: ModuleConfig;
}

export interface AuthServiceSpec {
  auth_service: string;
  proto?: 'http' | 'grpc';
  path_prefix?: string;
  allowed_request_headers?: string[];
  allowed_authorization_headers?: string[];
  add_auth_headers?: Record<string, string>;
  include_body?: { max_bytes: number; allow_partial?: boolean };
  failure_mode_allow?: boolean;
  timeout_ms?: number;
  status_on_error?: { code: number };
  protocol_version?: 'v3';
}

export interface RateLimitServiceSpec {
  service: string;
  protocol_version?: 'v3';
  timeout_ms?: number;
  domain?: string;
  failure_mode_deny?: boolean;
}

/** Edge Stack's JWT Filter: the fields that have an Envoy jwt_authn counterpart, plus an inline `jwks`. */
export interface JwtFilterSpec {
  jwksURI?: string;
  jwks?: string;
  issuer?: string;
  audience?: string;
  leewayForExpiresAt?: string;
  injectRequestHeaders?: { name: string; value: string }[];
}

/** Edge Stack's APIKey Filter, with the keys inline (Portico has no Kubernetes Secrets). */
export interface ApiKeyFilterSpec {
  httpHeader?: string;
  keys: { client: string; key: string }[];
  clientHeader?: string;
  hideCredentials?: boolean;
}

export interface FilterSpec {
  JWT?: JwtFilterSpec;
  APIKey?: ApiKeyFilterSpec;
}

export interface FilterPolicyRule {
  host?: string;
  path?: string;
  /** null or [] : the matching Mappings run no Filter (an exception ahead of a wider rule). */
  filters: { name: string; namespace?: string }[] | null;
}

export interface FilterPolicySpec {
  rules: FilterPolicyRule[];
}

/** One limit of a RateLimit: requests whose descriptor matches `pattern`, entry by entry, get `rate` per `unit`. */
export interface RateLimitLimit {
  name?: string;
  /** Descriptor entries in order, each `{key: value}`; a value of "" or "*" counts each value on its own. */
  pattern: Record<string, string>[];
  rate: number;
  unit: 'second' | 'minute' | 'hour' | 'day';
  /** LogOnly counts and reports, never refuses (envoyproxy/ratelimit's shadow_mode). */
  action?: 'Enforce' | 'LogOnly';
}

export interface RateLimitSpec {
  domain?: string;
  limits: RateLimitLimit[];
}

/** TLS settings a TLSContext (or a Host's `tls`) gives the filter chains of its host names. */
export interface TlsOptions {
  cert_chain_file?: string;
  private_key_file?: string;
  ca_secret?: string;
  cacert_chain_file?: string;
  cert_required?: boolean;
  alpn_protocols?: string | string[];
  min_tls_version?: TlsVersion;
  max_tls_version?: TlsVersion;
  cipher_suites?: string[];
  ecdh_curves?: string[];
}
export type TlsVersion = 'v1.0' | 'v1.1' | 'v1.2' | 'v1.3';

export interface TLSContextSpec extends TlsOptions {
  hosts?: string[];
  secret?: string;
}

export type InsecureAction = 'Redirect' | 'Reject' | 'Route';

export interface HostSpec {
  hostname?: string;
  tlsSecret?: { name: string; namespace?: string };
  tlsContext?: { name: string; namespace?: string };
  tls?: TlsOptions;
  requestPolicy?: { insecure?: { action?: InsecureAction; additionalPort?: number } };
  mappingSelector?: { matchLabels?: Record<string, string> };
  acmeProvider?: { authority?: string };
}

export interface TCPMappingSpec {
  port: number;
  service: string;
  host?: string;
  address?: string;
  weight?: number;
  idle_timeout_ms?: number;
  circuit_breakers?: CircuitBreaker[];
}

export type ListenerProtocol = 'HTTP' | 'HTTPS' | 'TCP' | 'TLS';

export interface ListenerSpec {
  port: number;
  protocol: ListenerProtocol;
  securityModel: 'XFP' | 'SECURE' | 'INSECURE';
  hostBinding: { namespace?: { from: 'ALL' | 'SELF' }; selector?: { matchLabels?: Record<string, string> } };
  statsPrefix?: string;
  l7Depth?: number;
}

/** A Kubernetes `kubernetes.io/tls` (or `Opaque`) Secret: PEM in `tls.crt`, `tls.key`, `ca.crt`. */
export interface SecretSpec {
  type?: 'kubernetes.io/tls' | 'Opaque';
  /** base64 of the PEM, as Kubernetes stores it. */
  data?: Partial<Record<SecretKey, string>>;
  /** The PEM as it is; wins over `data`, as in Kubernetes. */
  stringData?: Partial<Record<SecretKey, string>>;
}
export type SecretKey = 'tls.crt' | 'tls.key' | 'ca.crt';

export type Mapping = Resource<MappingSpec>;
export type Module = Resource<ModuleSpec>;
export type AuthService = Resource<AuthServiceSpec>;
export type RateLimitService = Resource<RateLimitServiceSpec>;
export type Filter = Resource<FilterSpec>;
export type FilterPolicy = Resource<FilterPolicySpec>;
export type RateLimit = Resource<RateLimitSpec>;
export type Host = Resource<HostSpec>;
export type TLSContext = Resource<TLSContextSpec>;
export type TCPMapping = Resource<TCPMappingSpec>;
export type Listener = Resource<ListenerSpec>;
export type Secret = Resource<SecretSpec>;

/** Emissary's defaults (irhttpmapping.py, irambassador.py). */
export const DEFAULTS = {
  rewrite: '/',
  timeoutMs: 3000,
  connectTimeoutMs: 3000,
  redirectResponseCode: 301,
  authTimeoutMs: 5000,
  rateLimitTimeoutMs: 20,
  rateLimitDomain: 'ambassador',
  apiKeyHeader: 'x-api-key',
  jwksTimeoutMs: 5000,
  jwksCacheDurationS: 300,
} as const;

/** `[scheme://]host[:port]` of a Mapping's `service`, resolved by DNS; port 80, or 443 with `https://`. */
export interface ServiceAddress {
  tls: boolean;
  host: string;
  port: number;
  /** Whether the port was written out (a host redirect keeps it only then). */
  explicitPort: boolean;
}

const SERVICE = /^(?:([a-zA-Z][a-zA-Z0-9+.-]*):\/\/)?(\[[0-9a-fA-F:.]+\]|[^:/[\]]+)(?::(\d+))?$/;
// Emissary service names are DNS names, optionally `name.namespace`; underscores appear in real DNS names.
const DNS_NAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

export function parseService(service: string): ServiceAddress | string {
  const m = SERVICE.exec(service.trim());
  if (m === null) return `"${service}" is not [scheme://]host[:port]`;
  const scheme = (m[1] ?? 'http').toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') return `scheme "${scheme}" is not http or https`;
  let host = m[2]!;
  if (host.startsWith('[')) {
    host = host.slice(1, -1);
    if (isIP(host) !== 6) return `"${host}" is not an IPv6 address`;
  } else if (isIP(host) === 0 && !DNS_NAME.test(host)) {
    return `"${host}" is not a host name or IP address`;
  }
  const port = m[3] === undefined ? (scheme === 'https' ? 443 : 80) : Number(m[3]);
  if (port < 1 || port > 65535) return `port ${m[3]} is not between 1 and 65535`;
  return { tls: scheme === 'https', host, port, explicitPort: m[3] !== undefined };
}

const service = str((s, path, errors) => {
  const parsed = parseService(s);
  if (typeof parsed === 'string') errors.push({ code: 'invalid_value', path, message: parsed });
}, 2048);

/** A URL path: what prefixes, rewrites and redirects hold. */
const urlPath = str((s, path, errors) => {
  if (!s.startsWith('/')) errors.push({ code: 'invalid_value', path, message: `"${s}" must start with "/"` });
  else if (/[\s#]/.test(s)) errors.push({ code: 'invalid_value', path, message: `"${s}" may not contain spaces or "#"` });
}, 2048);

const hostGlob = str((s, path, errors) => {
  const body = s === '*' ? '' : s.startsWith('*.') ? s.slice(2) : s.endsWith('.*') ? s.slice(0, -2) : s;
  if (body !== '' && !/^[A-Za-z0-9_.-]+(?::\d+)?$/.test(body)) {
    errors.push({ code: 'invalid_value', path, message: `"${s}" is not a host name, "*", "*.suffix" or "prefix.*"` });
  }
}, 253);

const regexSubstitution = object({ fields: { pattern: regex, substitution: str() }, required: ['pattern', 'substitution'] });

const headerValue = either(str(), object({ fields: { value: str(), append: bool }, required: ['value'] }), 'a string or {value, append}');

const RETRY_ON = ['5xx', 'gateway-error', 'connect-failure', 'retriable-4xx', 'refused-stream', 'retriable-status-codes', 'reset'];
const retryPolicy = object({
  fields: {
    retry_on: str((s, path, errors) => {
      for (const part of s.split(',')) {
        if (!RETRY_ON.includes(part.trim())) errors.push({ code: 'invalid_value', path, message: `"${part.trim()}" is not one of ${RETRY_ON.join(', ')}` });
      }
    }),
    num_retries: int(0, 1000),
    per_try_timeout: duration,
  },
});

const circuitBreakers = listOf(
  object({
    fields: {
      priority: oneOf('default', 'high'),
      max_connections: int(0),
      max_pending_requests: int(0),
      max_requests: int(0),
      max_retries: int(0),
    },
  }),
);

const loadBalancerShape = object({
  fields: {
    policy: oneOf('round_robin', 'least_request', 'ring_hash', 'maglev'),
    cookie: object({ fields: { name: str(), path: str(), ttl: duration }, required: ['name'] }),
    header: headerName,
    source_ip: bool,
  },
  required: ['policy'],
});

/** Emissary's load_balancer rules (§B.3): hash keys only with a hashing policy, and then exactly one. */
const loadBalancer: Check = (value, path, errors) => {
  const before = errors.length;
  loadBalancerShape(value, path, errors);
  if (errors.length > before || !isObject(value)) return;
  const keys = ['cookie', 'header', 'source_ip'].filter((k) => value[k] !== undefined);
  if (value.policy === 'round_robin' || value.policy === 'least_request') {
    for (const k of keys) errors.push({ code: 'invalid_value', path: childPath(path, k), message: `policy ${value.policy} takes no ${k}` });
  } else if (keys.length !== 1) {
    errors.push({ code: 'invalid_value', path, message: `policy ${value.policy} needs exactly one of cookie, header, source_ip` });
  }
};

const cors = object({
  fields: {
    origins: stringOrList,
    methods: stringOrList,
    headers: stringOrList,
    exposed_headers: stringOrList,
    credentials: bool,
    max_age: str((s, path, errors) => {
      if (!/^\d+$/.test(s)) errors.push({ code: 'invalid_value', path, message: `"${s}" is not a number of seconds` });
    }),
  },
});

/**
 * A rate limit label action, Emissary's format: a string (`source_cluster`, `destination_cluster`,
 * `remote_address`, or else a generic key value) or an object with one of the keys below.
 */
const LABEL_ACTIONS: Record<string, Check> = {
  source_cluster: object({ fields: {} }),
  destination_cluster: object({ fields: {} }),
  remote_address: object({ fields: { key: str() } }),
  generic_key: object({ fields: { key: str(), value: str() }, required: ['value'] }),
  request_headers: object({ fields: { key: str(), header_name: headerName, omit_if_not_present: bool }, required: ['key', 'header_name'] }),
};
const labelAction: Check = (value, path, errors) => {
  if (typeof value === 'string') return;
  const keys = isObject(value) ? Object.keys(value) : [];
  const check = keys.length === 1 ? LABEL_ACTIONS[keys[0]!] : undefined;
  if (check === undefined) {
    errors.push({ code: isObject(value) ? 'invalid_value' : 'wrong_type', path, message: `expected a string or an object with one of ${Object.keys(LABEL_ACTIONS).join(', ')}, got ${isObject(value) ? `{${keys.join(', ')}}` : typeName(value)}` });
  } else check((value as Record<string, unknown>)[keys[0]!] ?? {}, childPath(path, keys[0]!), errors);
};

const matchValue = either(str(), oneOf(true), 'a string or true');
const timeoutMs = int(0, 86_400_000);

export const MAPPING_FIELDS: Record<keyof MappingSpec, Check> = {
  prefix: str(undefined, 2048),
  prefix_regex: bool,
  prefix_exact: bool,
  case_sensitive: bool,
  service,
  rewrite: str(undefined, 2048),
  regex_rewrite: regexSubstitution,
  host: str(undefined, 253),
  host_regex: bool,
  hostname: hostGlob,
  method: str(undefined, 64),
  method_regex: bool,
  headers: mapOf(matchHeaderName, matchValue),
  regex_headers: mapOf(matchHeaderName, regex),
  query_parameters: mapOf(str(undefined, 256), matchValue),
  regex_query_parameters: mapOf(str(undefined, 256), regex),
  weight: int(0, 100),
  precedence: int(-1_000_000, 1_000_000),
  timeout_ms: timeoutMs,
  idle_timeout_ms: timeoutMs,
  connect_timeout_ms: int(1, 86_400_000),
  cluster_idle_timeout_ms: timeoutMs,
  dns_type: oneOf('strict_dns', 'logical_dns'),
  retry_policy: retryPolicy,
  circuit_breakers: circuitBreakers,
  load_balancer: loadBalancer,
  add_request_headers: mapOf(headerName, headerValue),
  add_response_headers: mapOf(headerName, headerValue),
  remove_request_headers: listOf(headerName),
  remove_response_headers: listOf(headerName),
  host_rewrite: str(undefined, 253),
  auto_host_rewrite: bool,
  shadow: bool,
  host_redirect: bool,
  path_redirect: urlPath,
  prefix_redirect: urlPath,
  regex_redirect: regexSubstitution,
  redirect_response_code: oneOf(301, 302, 303, 307, 308),
  allow_upgrade: listOf(str(undefined, 64)),
  use_websocket: bool,
  cors,
  bypass_auth: bool,
  auth_context_extensions: mapOf(str(undefined, 256), str()),
  labels: mapOf(str(), listOf(mapOf(str(), listOf(labelAction)))),
  docs: object({ fields: { path: str(), url: str(), ignored: bool, display_name: str(), timeout_ms: timeoutMs } }),
};

const protocolVersion = oneOf('v3');

export const AUTH_SERVICE_FIELDS: Record<keyof AuthServiceSpec, Check> = {
  auth_service: service,
  proto: oneOf('http', 'grpc'),
  path_prefix: urlPath,
  allowed_request_headers: listOf(headerName),
  allowed_authorization_headers: listOf(headerName),
  add_auth_headers: mapOf(headerName, str()),
  include_body: object({ fields: { max_bytes: int(1, 64 * 1024 * 1024), allow_partial: bool }, required: ['max_bytes'] }),
  failure_mode_allow: bool,
  timeout_ms: int(1, 86_400_000),
  status_on_error: object({ fields: { code: int(100, 599) }, required: ['code'] }),
  protocol_version: protocolVersion,
};

export const RATE_LIMIT_SERVICE_FIELDS: Record<keyof RateLimitServiceSpec, Check> = {
  service,
  protocol_version: protocolVersion,
  timeout_ms: int(1, 86_400_000),
  domain: str(undefined, 256),
  failure_mode_deny: bool,
};

/** A pattern entry: one descriptor key and the value it must have ("" or "*": any). */
const patternEntry: Check = (value, path, errors) => {
  const before = errors.length;
  mapOf(str(undefined, 256), str(undefined, 1024))(value, path, errors);
  if (errors.length > before) return;
  const keys = Object.keys(value as object);
  if (keys.length !== 1) errors.push({ code: 'invalid_value', path, message: `a pattern entry is one {descriptor key: value}, got ${keys.length === 0 ? 'none' : `{${keys.join(', ')}}`}` });
  else if (keys[0] === '') errors.push({ code: 'invalid_value', path, message: 'the descriptor key may not be empty' });
};

export const RATE_LIMIT_LIMIT_FIELDS: Record<keyof RateLimitLimit, Check> = {
  name: str(undefined, 256),
  pattern: (value, path, errors) => {
    listOf(patternEntry)(value, path, errors);
    if (Array.isArray(value) && value.length === 0) errors.push({ code: 'invalid_value', path, message: 'a pattern needs at least one entry' });
  },
  rate: int(1),
  unit: oneOf('second', 'minute', 'hour', 'day'),
  action: oneOf('Enforce', 'LogOnly'),
};

/** Edge Stack limit fields Portico does not implement. */
const RATE_LIMIT_LIMIT_REFUSED: Record<string, string> = {
  burstFactor: 'Portico counts fixed windows, without bursts',
  injectRequestHeaders: 'Portico does not add headers to limited requests',
  injectResponseHeaders: 'Portico does not add headers to limited responses',
  errorResponse: 'the answer over the limit is the ratelimit filter\'s 429',
};

export const RATE_LIMIT_FIELDS: Record<keyof RateLimitSpec, Check> = {
  domain: str(undefined, 256),
  limits: (value, path, errors) =>
    listOf((limit, at, errs) => {
      const rest = isObject(limit) ? refuse(limit, RATE_LIMIT_LIMIT_REFUSED, at, errs) : limit;
      object({ fields: RATE_LIMIT_LIMIT_FIELDS, required: ['pattern', 'rate', 'unit'] })(rest, at, errs);
    })(value, path, errors),
};

/** Emissary fields Portico knows and does not implement: refused with a reason rather than as unknown. */
const AUTH_SERVICE_REFUSED: Record<string, string> = {
  add_linkerd_headers: 'Portico does not add Linkerd headers',
  allow_request_body: 'use include_body',
  tls: 'use an https:// auth_service',
};

const HTTP_ONLY = ['path_prefix', 'allowed_request_headers', 'allowed_authorization_headers', 'add_auth_headers'];

function refuse(spec: Record<string, unknown>, refused: Record<string, string>, path: string, errors: ConfigError[]): Record<string, unknown> {
  const rest = { ...spec };
  for (const [field, why] of Object.entries(refused)) {
    if (field in rest) {
      errors.push({ code: 'unsupported_field', path: childPath(path, field), message: `${field} is not supported: ${why}` });
      delete rest[field];
    }
  }
  return rest;
}

export const MODULE_CONFIG_FIELDS: Record<keyof ModuleConfig, Check> = {
  cluster_request_timeout_ms: timeoutMs,
  cluster_idle_timeout_ms: timeoutMs,
  retry_policy: retryPolicy,
  circuit_breakers: circuitBreakers,
  load_balancer: loadBalancer,
  cors,
  server_name: str(undefined, 256),
  use_remote_address: bool,
  xff_num_trusted_hops: int(0, 64),
  max_request_headers_kb: int(1, 8192),
  merge_slashes: bool,
  strip_matching_host_port: bool,
  preserve_external_request_id: bool,
  listener_idle_timeout_ms: timeoutMs,
  suppress_envoy_headers: bool,
  enable_http10: bool,
  headers_with_underscores_action: oneOf('ALLOW', 'REJECT_REQUEST', 'DROP_HEADER'),
};

/** An `http(s)://host[:port]/path` URL, for a JWKS. */
const httpUrl = str((s, path, errors) => {
  let url: URL | undefined;
  try {
    url = new URL(s);
  } catch {
    // reported below
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') {
    errors.push({ code: 'invalid_value', path, message: `"${s}" is not an http:// or https:// URL` });
  } else if (url.username !== '' || url.password !== '') {
    errors.push({ code: 'invalid_value', path, message: 'a JWKS URL may not carry credentials' });
  }
}, 2048);

const jwksJson = str((s, path, errors) => {
  let parsed: unknown;
  try {
    parsed = JSON.parse(s);
  } catch (err) {
    errors.push({ code: 'invalid_value', path, message: `not JSON: ${(err as Error).message}` });
    return;
  }
  if (!isObject(parsed) || !Array.isArray(parsed.keys)) errors.push({ code: 'invalid_value', path, message: 'a JWKS is an object with a "keys" list' });
}, 256 * 1024);

/** Edge Stack's header templates; Portico forwards claims only: `{{.token.Claims.NAME}}`. */
export const CLAIM_TEMPLATE = /^\{\{\s*\.token\.Claims\.([A-Za-z0-9_.-]+)\s*\}\}$/;

export const JWT_FIELDS: Record<keyof JwtFilterSpec, Check> = {
  jwksURI: httpUrl,
  jwks: jwksJson,
  issuer: str(undefined, 2048),
  audience: str(undefined, 2048),
  leewayForExpiresAt: duration,
  injectRequestHeaders: listOf(
    object({
      fields: {
        name: headerName,
        value: str((s, path, errors) => {
          if (!CLAIM_TEMPLATE.test(s)) errors.push({ code: 'invalid_value', path, message: `"${s}" is not supported: Portico forwards claims only, as "{{.token.Claims.NAME}}"` });
        }),
      },
      required: ['name', 'value'],
    }),
  ),
};

const JWT_REFUSED: Record<string, string> = {
  insecureTLS: 'a JWKS over https:// is always verified',
  renegotiateTLS: 'Portico does not renegotiate TLS',
  validAlgorithms: 'the algorithm of each key in the JWKS is the one accepted',
  requireAudience: 'with audience set, a token must carry it',
  requireIssuer: 'with issuer set, a token must carry it',
  requireIssuedAt: 'iat is checked only when present',
  requireNotBefore: 'nbf is checked when present',
  requireExpiresAt: 'exp is checked when present',
  leewayForIssuedAt: 'one leeway, leewayForExpiresAt, applies to exp and nbf',
  leewayForNotBefore: 'one leeway, leewayForExpiresAt, applies to exp and nbf',
  errorResponse: "Portico answers as Envoy's jwt_authn filter does",
};

export const API_KEY_FIELDS: Record<keyof ApiKeyFilterSpec, Check> = {
  httpHeader: headerName,
  keys: listOf(object({ fields: { client: str(undefined, 256), key: str(undefined, 1024), secretName: str() }, required: ['client', 'key'] })),
  clientHeader: headerName,
  hideCredentials: bool,
};

const FILTER_KINDS_REFUSED: Record<string, string> = {
  OAuth2: 'Portico has no OAuth2 filter; use an AuthService',
  External: 'use an AuthService',
  Plugin: 'Portico runs no Go plugins',
};

function checkFilter(spec: Record<string, unknown>, path: string, errors: ConfigError[]): void {
  const kinds = Object.keys(spec);
  for (const kind of kinds) {
    if (FILTER_KINDS_REFUSED[kind] !== undefined) {
      errors.push({ code: 'unsupported_field', path: childPath(path, kind), message: `${kind} is not supported: ${FILTER_KINDS_REFUSED[kind]}` });
    } else if (kind !== 'JWT' && kind !== 'APIKey') {
      errors.push({ code: 'unknown_field', path: childPath(path, kind), message: `unknown field "${kind}" (a Filter is one of JWT, APIKey)` });
    }
  }
  if (kinds.length !== 1) {
    if (kinds.length === 0) errors.push({ code: 'missing_required', path, message: 'a Filter needs one of JWT, APIKey' });
    else if (kinds.every((k) => k === 'JWT' || k === 'APIKey')) errors.push({ code: 'oneof_conflict', path, message: 'a Filter is one of JWT, APIKey, not both' });
    return;
  }
  if (isObject(spec.JWT)) {
    const at = childPath(path, 'JWT');
    const rest = refuse(spec.JWT, JWT_REFUSED, at, errors);
    object({ fields: JWT_FIELDS })(rest, at, errors);
    if ((rest.jwksURI === undefined) === (rest.jwks === undefined)) {
      errors.push({ code: rest.jwks === undefined ? 'missing_required' : 'oneof_conflict', path: at, message: 'a JWT Filter needs exactly one of jwksURI, jwks' });
    }
  } else if (spec.JWT !== undefined) {
    errors.push({ code: 'wrong_type', path: childPath(path, 'JWT'), message: `expected an object, got ${typeName(spec.JWT)}` });
  }
  if (spec.APIKey !== undefined) {
    const at = childPath(path, 'APIKey');
    object({ fields: API_KEY_FIELDS, required: ['keys'] })(spec.APIKey, at, errors);
    const keys = isObject(spec.APIKey) && Array.isArray(spec.APIKey.keys) ? spec.APIKey.keys : [];
    const seen = new Set<unknown>();
    keys.forEach((k, i) => {
      if (!isObject(k)) return;
      if (k.secretName !== undefined) {
        errors.push({ code: 'unsupported_field', path: childPath(childPath(childPath(at, 'keys'), i), 'secretName'), message: 'secretName is not supported: Portico has no Secrets; write {client, key} inline' });
      }
      // The key is a secret: the error names its position only.
      if (k.key !== undefined && seen.has(k.key)) errors.push({ code: 'invalid_value', path: childPath(childPath(at, 'keys'), i), message: 'duplicate API key' });
      seen.add(k.key);
    });
  }
}

/** A FilterPolicy glob: `*` matches any run of characters, "/" included. */
const pathGlob = str((s, path, errors) => {
  if (s !== '*' && !s.startsWith('/')) errors.push({ code: 'invalid_value', path, message: `"${s}" must be "*" or start with "/"` });
  else if (/[\s#?]/.test(s)) errors.push({ code: 'invalid_value', path, message: `"${s}" may not contain spaces, "?" or "#"` });
}, 2048);
const hostNameGlob = str((s, path, errors) => {
  if (!/^[A-Za-z0-9_.*:-]+$/.test(s)) errors.push({ code: 'invalid_value', path, message: `"${s}" is not a host name glob` });
}, 253);

const FILTER_REFERENCE_REFUSED: Record<string, string> = {
  ifRequestHeader: 'a rule applies to whole Mappings; match the header in the Mapping',
  onDeny: 'a denied request ends with the filter\'s answer',
  onAllow: 'an allowed request always goes on to the next filter',
  arguments: 'JWT and APIKey Filters take no arguments',
};

const filterReference: Check = (value, path, errors) => {
  const rest = isObject(value) ? refuse(value, FILTER_REFERENCE_REFUSED, path, errors) : value;
  object({ fields: { name: str(undefined, 63), namespace: str(undefined, 63) }, required: ['name'] })(rest, path, errors);
};

export const FILTER_POLICY_FIELDS: Record<keyof FilterPolicySpec, Check> = {
  rules: listOf(object({ fields: { host: hostNameGlob, path: pathGlob, filters: listOf(filterReference) } })),
};

/** Checks of a Mapping that involve several fields (each looks at types itself: this runs after type errors too). */
function checkMapping(spec: MappingSpec, path: string, errors: ConfigError[]): void {
  const at = (field: string) => childPath(path, field);
  if (spec.prefix_regex && spec.prefix_exact) {
    errors.push({ code: 'oneof_conflict', path: at('prefix_exact'), message: 'prefix_regex and prefix_exact exclude each other' });
  }
  if (typeof spec.prefix === 'string') {
    if (spec.prefix_regex) regex(spec.prefix, at('prefix'), errors);
    else urlPath(spec.prefix, at('prefix'), errors);
  }
  if (spec.prefix_regex && spec.rewrite !== undefined && spec.rewrite !== '' && spec.regex_rewrite === undefined) {
    errors.push({ code: 'invalid_value', path: at('rewrite'), message: 'rewrite replaces a literal prefix; with prefix_regex use regex_rewrite' });
  }
  if (typeof spec.host === 'string') {
    if (spec.host_regex) regex(spec.host, at('host'), errors);
    else if (spec.host.includes('*')) errors.push({ code: 'invalid_value', path: at('host'), message: 'host is an exact match; use hostname for "*" globs' });
  }
  if (typeof spec.method === 'string') {
    if (spec.method_regex) regex(spec.method, at('method'), errors);
    else if (!/^[A-Z]+$/.test(spec.method)) errors.push({ code: 'invalid_value', path: at('method'), message: `"${spec.method}" is not an HTTP method such as GET` });
  }
  if (spec.host_rewrite !== undefined && spec.auto_host_rewrite === true) {
    errors.push({ code: 'oneof_conflict', path: at('auto_host_rewrite'), message: 'host_rewrite and auto_host_rewrite exclude each other' });
  }
  const redirects = (['path_redirect', 'prefix_redirect', 'regex_redirect'] as const).filter((k) => spec[k] !== undefined);
  if (redirects.length > 1) {
    errors.push({ code: 'oneof_conflict', path: at(redirects[1]!), message: `${redirects.join(', ')} exclude each other` });
  }
  for (const k of redirects) {
    if (!spec.host_redirect) errors.push({ code: 'invalid_value', path: at(k), message: `${k} applies only with host_redirect: true` });
  }
  if (spec.redirect_response_code !== undefined && !spec.host_redirect) {
    errors.push({ code: 'invalid_value', path: at('redirect_response_code'), message: 'redirect_response_code applies only with host_redirect: true' });
  }
  if (spec.shadow && spec.host_redirect) {
    errors.push({ code: 'oneof_conflict', path: at('shadow'), message: 'a shadow Mapping cannot also redirect' });
  }
}

/** A Host's or a TLSContext's host name: exact, `*.suffix` or `*` (SNI and `:authority` both take these). */
const hostnameGlob = str((s, path, errors) => {
  const body = s.startsWith('*.') ? s.slice(2) : s;
  if (s !== '*' && !DNS_NAME.test(body)) errors.push({ code: 'invalid_value', path, message: `"${s}" is not a host name, "*.suffix" or "*"` });
}, 253);

/** Whether Node's TLS accepts a secure context with these options: how cipher and curve names are checked. */
function acceptedByTls(options: { ciphers?: string; ecdhCurve?: string }): boolean {
  try {
    createSecureContext(options);
    return true;
  } catch {
    return false;
  }
}

const tlsNames =
  (option: 'ciphers' | 'ecdhCurve', what: string): Check =>
  (value, path, errors) => {
    const before = errors.length;
    listOf(str(undefined, 128))(value, path, errors);
    if (errors.length > before) return;
    (value as string[]).forEach((name, i) => {
      if (!acceptedByTls({ [option]: name })) errors.push({ code: 'invalid_value', path: childPath(path, i), message: `"${name}" is not ${what} this TLS library knows` });
    });
  };

/** The ALPN protocols the data plane's codecs speak. */
const ALPN = ['h2', 'http/1.1', 'http/1.0'];
const alpnProtocols: Check = (value, path, errors) => {
  const before = errors.length;
  stringOrList(value, path, errors);
  if (errors.length > before) return;
  splitList(value as string | string[]).forEach((protocol, i) => {
    if (!ALPN.includes(protocol)) errors.push({ code: 'unsupported_field', path: Array.isArray(value) ? childPath(path, i) : path, message: `ALPN protocol "${protocol}" is not supported (one of ${ALPN.join(', ')})` });
  });
};

/** Emissary's comma-separated lists (`alpn_protocols: h2,http/1.1`), or a list. */
export function splitList(value: string | string[]): string[] {
  return (Array.isArray(value) ? value : value.split(',')).map((s) => s.trim()).filter(Boolean);
}

const tlsVersion = oneOf('v1.0', 'v1.1', 'v1.2', 'v1.3');

export const TLS_OPTION_FIELDS: Record<keyof TlsOptions, Check> = {
  cert_chain_file: str(undefined, 4096),
  private_key_file: str(undefined, 4096),
  ca_secret: str(undefined, 63),
  cacert_chain_file: str(undefined, 4096),
  cert_required: bool,
  alpn_protocols: alpnProtocols,
  min_tls_version: tlsVersion,
  max_tls_version: tlsVersion,
  cipher_suites: tlsNames('ciphers', 'a cipher suite'),
  ecdh_curves: tlsNames('ecdhCurve', 'an ECDH curve'),
};

const TLS_REFUSED: Record<string, string> = {
  crl_secret: 'certificate revocation lists are not supported by the data plane',
  redirect_cleartext_from: "use a Host's requestPolicy.insecure.action: Redirect",
  sni: 'TLS to upstreams is set by an https:// service',
  secret_namespacing: 'Portico has one namespace of Secrets',
};

/** Checks of TLS options that involve several fields. */
function checkTlsOptions(spec: Record<string, unknown>, path: string, errors: ConfigError[]): void {
  const at = (field: string) => childPath(path, field);
  if ((spec.cert_chain_file === undefined) !== (spec.private_key_file === undefined)) {
    const missing = spec.cert_chain_file === undefined ? 'cert_chain_file' : 'private_key_file';
    errors.push({ code: 'missing_required', path: at(missing), message: 'cert_chain_file and private_key_file go together' });
  }
  if (spec.ca_secret !== undefined && spec.cacert_chain_file !== undefined) {
    errors.push({ code: 'oneof_conflict', path: at('cacert_chain_file'), message: 'ca_secret and cacert_chain_file exclude each other' });
  }
  if (spec.cert_required === true && spec.ca_secret === undefined && spec.cacert_chain_file === undefined) {
    errors.push({ code: 'missing_required', path: at('cert_required'), message: 'cert_required needs the CA that signs client certificates: ca_secret or cacert_chain_file' });
  }
  if (typeof spec.min_tls_version === 'string' && typeof spec.max_tls_version === 'string' && spec.min_tls_version > spec.max_tls_version) {
    errors.push({ code: 'invalid_value', path: at('min_tls_version'), message: `min_tls_version ${spec.min_tls_version} is above max_tls_version ${spec.max_tls_version}` });
  }
}

function checkTls(spec: unknown, path: string, errors: ConfigError[], extra: Record<string, Check> = {}): void {
  const rest = isObject(spec) ? refuse(spec, TLS_REFUSED, path, errors) : spec;
  object({ fields: { ...TLS_OPTION_FIELDS, ...extra } })(rest, path, errors);
  if (isObject(rest)) checkTlsOptions(rest, path, errors);
}

const reference = object({ fields: { name: str(undefined, 63), namespace: str(undefined, 63) }, required: ['name'] });
const labelSelector = (path: string, value: unknown, errors: ConfigError[]): void => {
  const rest = isObject(value) ? refuse(value, { matchExpressions: 'select with matchLabels' }, path, errors) : value;
  object({ fields: { matchLabels: mapOf(str(undefined, 63), str(undefined, 63)) } })(rest, path, errors);
};

export const HOST_FIELDS: Record<keyof HostSpec, Check> = {
  hostname: hostnameGlob,
  tlsSecret: reference,
  tlsContext: reference,
  tls: (value, path, errors) => checkTls(value, path, errors),
  requestPolicy: object({ fields: { insecure: object({ fields: { action: oneOf('Redirect', 'Reject', 'Route'), additionalPort: int(-1, 65535) } }) } }),
  mappingSelector: (value, path, errors) => labelSelector(path, value, errors),
  acmeProvider: object({
    fields: {
      authority: str((s, path, errors) => {
        if (s !== 'none') errors.push({ code: 'unsupported_field', path, message: 'ACME is not supported: write "none" and give the certificate in tlsSecret' });
      }),
    },
  }),
};

const HOST_REFUSED: Record<string, string> = {
  previewUrl: 'Portico has no preview URLs',
  selector: 'use mappingSelector',
};

function checkHost(spec: Record<string, unknown>, path: string, errors: ConfigError[]): void {
  const rest = refuse(spec, HOST_REFUSED, path, errors);
  object({ fields: HOST_FIELDS })(rest, path, errors);
  if (spec.tls !== undefined && spec.tlsContext !== undefined) {
    errors.push({ code: 'oneof_conflict', path: childPath(path, 'tls'), message: 'tls and tlsContext exclude each other' });
  }
  if (isObject(spec.tls) && spec.tls.cert_chain_file !== undefined && spec.tlsSecret !== undefined) {
    errors.push({ code: 'oneof_conflict', path: childPath(childPath(path, 'tls'), 'cert_chain_file'), message: 'the certificate comes from tlsSecret or from tls.cert_chain_file, not both' });
  }
}

export const TLS_CONTEXT_FIELDS: Record<'hosts' | 'secret', Check> = {
  hosts: listOf(hostnameGlob),
  secret: str(undefined, 63),
};

function checkTlsContext(spec: Record<string, unknown>, path: string, errors: ConfigError[]): void {
  checkTls(spec, path, errors, TLS_CONTEXT_FIELDS);
  if (spec.secret !== undefined && spec.cert_chain_file !== undefined) {
    errors.push({ code: 'oneof_conflict', path: childPath(path, 'cert_chain_file'), message: 'the certificate comes from secret or from cert_chain_file, not both' });
  }
}

/** A TCPMapping's upstream: `host:port`, the port written out (there is no default port for TCP). */
const tcpService = str((s, path, errors) => {
  const parsed = parseService(s);
  if (typeof parsed === 'string') errors.push({ code: 'invalid_value', path, message: parsed });
  else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s.trim())) errors.push({ code: 'unsupported_field', path, message: 'a TCPMapping service is host:port; TLS to the upstream is not supported' });
  else if (!parsed.explicitPort) errors.push({ code: 'missing_required', path, message: `"${s}" needs a port: host:port` });
}, 2048);

export const TCP_MAPPING_FIELDS: Record<keyof TCPMappingSpec, Check> = {
  port: int(1, 65535),
  service: tcpService,
  host: str((s, path, errors) => {
    if (s === '*') errors.push({ code: 'invalid_value', path, message: 'host is a TLS server name; leave it out to take every connection' });
    else hostnameGlob(s, path, errors);
  }, 253),
  address: str((s, path, errors) => {
    if (isIP(s) === 0) errors.push({ code: 'invalid_value', path, message: `"${s}" is not an IP address` });
  }, 64),
  weight: int(0, 100),
  idle_timeout_ms: int(0, 86_400_000),
  circuit_breakers: circuitBreakers,
};

const TCP_MAPPING_REFUSED: Record<string, string> = {
  tls: 'TLS to the upstream is not supported for TCP',
  resolver: 'services are resolved by DNS',
  enable_ipv4: 'services are resolved over IPv4',
  enable_ipv6: 'services are resolved over IPv4',
  cluster_tag: 'clusters are named after their service',
  stats_name: 'stats are named after the cluster',
};

const listenerProtocol: Check = (value, path, errors) => {
  if (value === 'HTTPPROXY' || value === 'HTTPSPROXY') {
    errors.push({ code: 'unsupported_field', path, message: `${value} is not supported: the data plane does not read the PROXY protocol` });
  } else if (value === 'UDP') {
    errors.push({ code: 'unsupported_field', path, message: 'UDP is not supported: Portico proxies TCP' });
  } else oneOf('HTTP', 'HTTPS', 'TCP', 'TLS')(value, path, errors);
};

export const LISTENER_FIELDS: Record<keyof ListenerSpec, Check> = {
  port: int(1, 65535),
  protocol: listenerProtocol,
  securityModel: oneOf('XFP', 'SECURE', 'INSECURE'),
  hostBinding: (value, path, errors) => {
    const rest = isObject(value) ? { ...value } : value;
    if (isObject(rest) && rest.selector !== undefined) {
      labelSelector(childPath(path, 'selector'), rest.selector, errors);
      delete rest.selector;
    }
    object({
      fields: {
        namespace: object({
          fields: {
            from: (from, at, errs) => {
              if (from === 'SELECTOR') errs.push({ code: 'unsupported_field', path: at, message: 'SELECTOR is not supported: Portico has no namespace labels; use ALL or SELF with hostBinding.selector' });
              else oneOf('ALL', 'SELF')(from, at, errs);
            },
          },
          required: ['from'],
        }),
      },
    })(rest, path, errors);
  },
  statsPrefix: str((s, path, errors) => {
    if (!/^[A-Za-z0-9_.-]+$/.test(s)) errors.push({ code: 'invalid_value', path, message: `"${s}" may hold only letters, digits, "_", "." and "-"` });
  }, 128),
  l7Depth: int(0, 64),
};

const LISTENER_REFUSED: Record<string, string> = {
  protocolStack: 'write protocol (HTTP, HTTPS, TCP or TLS)',
  http2MaxConcurrentStreams: 'not supported yet',
};

const SECRET_KEYS: SecretKey[] = ['tls.crt', 'tls.key', 'ca.crt'];
const secretKey = oneOf(...SECRET_KEYS);
const BASE64 = /^[A-Za-z0-9+/\s]*={0,2}\s*$/;

/** PEM as it is: lines of text (the control characters `str` refuses, line ends aside). */
const pemText: Check = (value, path, errors) => {
  if (typeof value !== 'string') errors.push({ code: 'wrong_type', path, message: `expected a string, got ${typeName(value)}` });
  else if (value.length > 1024 * 1024) errors.push({ code: 'invalid_value', path, message: 'longer than 1048576 characters' });
  else if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(value)) errors.push({ code: 'invalid_value', path, message: 'contains control characters' });
};

/** The PEM of a Secret's key (`stringData` wins over `data`), and the field it came from. */
export function secretPem(spec: SecretSpec, key: SecretKey): { pem: string; path: string } | undefined {
  const plain = spec.stringData?.[key];
  if (plain !== undefined) return { pem: plain, path: childPath('spec.stringData', key) };
  const encoded = spec.data?.[key];
  return encoded === undefined ? undefined : { pem: Buffer.from(encoded, 'base64').toString('utf8'), path: childPath('spec.data', key) };
}

function checkSecret(spec: Record<string, unknown>, path: string, errors: ConfigError[]): void {
  const before = errors.length;
  object({
    fields: {
      type: oneOf('kubernetes.io/tls', 'Opaque'),
      data: mapOf(secretKey, str((s, at, errs) => {
        if (!BASE64.test(s)) errs.push({ code: 'invalid_value', path: at, message: 'data holds base64 (use stringData for PEM as it is)' });
      }, 1024 * 1024)),
      stringData: mapOf(secretKey, pemText),
    },
  })(spec, path, errors);
  if (errors.length > before) return;
  const secret = spec as SecretSpec;
  if ((secret.type ?? 'kubernetes.io/tls') === 'kubernetes.io/tls') {
    for (const key of ['tls.crt', 'tls.key'] as const) {
      if (secretPem(secret, key) === undefined) errors.push({ code: 'missing_required', path: childPath(childPath(path, 'data'), key), message: `a kubernetes.io/tls Secret needs ${key} (in data or stringData)` });
    }
  }
  let cert: X509Certificate | undefined;
  for (const key of SECRET_KEYS) {
    const found = secretPem(secret, key);
    if (found === undefined) continue;
    try {
      if (key === 'tls.key') {
        const privateKey = createPrivateKey(found.pem);
        if (cert !== undefined && !cert.checkPrivateKey(privateKey)) errors.push({ code: 'invalid_value', path: found.path, message: 'tls.key is not the key of the certificate in tls.crt' });
      } else {
        const parsed = new X509Certificate(found.pem);
        if (key === 'tls.crt') cert = parsed;
      }
    } catch (err) {
      // The key's content never goes into a message: only what is wrong with it.
      errors.push({ code: 'invalid_value', path: found.path, message: `${key} is not a PEM ${key === 'tls.key' ? 'private key' : 'certificate'} (${(err as Error).message})` });
    }
  }
}

interface KindInfo {
  /** Path segment of the v1 API: `/api/v1/mappings`. */
  plural: string;
  check(spec: Record<string, unknown>, path: string, errors: ConfigError[], name: string): void;
}

export const KINDS: Record<string, KindInfo> = {
  Mapping: {
    plural: 'mappings',
    check: (spec, path, errors) => {
      object({ fields: MAPPING_FIELDS, required: ['prefix', 'service'] })(spec, path, errors);
      checkMapping(spec as unknown as MappingSpec, path, errors);
    },
  },
  Module: {
    plural: 'modules',
    check: (spec, path, errors, name) => {
      // Emissary reads only the Module named "ambassador"; any other would be silently ignored there.
      if (name !== 'ambassador') errors.push({ code: 'invalid_value', path: 'metadata.name', message: 'the Module must be named "ambassador"' });
      object({ fields: { config: object({ fields: MODULE_CONFIG_FIELDS }) } })(spec, path, errors);
    },
  },
  AuthService: {
    plural: 'authservices',
    check: (spec, path, errors) => {
      const rest = refuse(spec, AUTH_SERVICE_REFUSED, path, errors);
      object({ fields: AUTH_SERVICE_FIELDS, required: ['auth_service'] })(rest, path, errors);
      // A CheckRequest carries every header and the service's answer says which to add: these shape HTTP checks
      // only, and would be silently ignored over gRPC.
      if (spec.proto === 'grpc') {
        for (const field of HTTP_ONLY.filter((f) => spec[f] !== undefined)) {
          errors.push({ code: 'invalid_value', path: childPath(path, field), message: `${field} applies only with proto: http` });
        }
      }
    },
  },
  RateLimitService: {
    plural: 'ratelimitservices',
    check: (spec, path, errors) => object({ fields: RATE_LIMIT_SERVICE_FIELDS, required: ['service'] })(spec, path, errors),
  },
  Filter: {
    plural: 'filters',
    check: checkFilter,
  },
  FilterPolicy: {
    plural: 'filterpolicies',
    check: (spec, path, errors) => object({ fields: FILTER_POLICY_FIELDS, required: ['rules'] })(spec, path, errors),
  },
  RateLimit: {
    plural: 'ratelimits',
    check: (spec, path, errors) => object({ fields: RATE_LIMIT_FIELDS, required: ['limits'] })(spec, path, errors),
  },
  Host: {
    plural: 'hosts',
    check: checkHost,
  },
  TLSContext: {
    plural: 'tlscontexts',
    check: checkTlsContext,
  },
  TCPMapping: {
    plural: 'tcpmappings',
    check: (spec, path, errors) => object({ fields: TCP_MAPPING_FIELDS, required: ['port', 'service'] })(refuse(spec, TCP_MAPPING_REFUSED, path, errors), path, errors),
  },
  Listener: {
    plural: 'listeners',
    check: (spec, path, errors) =>
      object({ fields: LISTENER_FIELDS, required: ['port', 'protocol', 'securityModel', 'hostBinding'] })(refuse(spec, LISTENER_REFUSED, path, errors), path, errors),
  },
  Secret: {
    plural: 'secrets',
    check: checkSecret,
  },
};

/** Kubernetes' Secret keeps its content beside metadata, not under spec; Portico stores it under spec. */
const SECRET_BODY = ['type', 'data', 'stringData'];

export type Kind = keyof typeof KINDS & string;

export function kindOfPlural(plural: string): string | undefined {
  return Object.keys(KINDS).find((k) => KINDS[k]!.plural === plural);
}

// Names end up in URLs, cluster names and stats names: keep them to what is safe in all three.
const NAME = /^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/;

export function nameProblem(name: string): string | undefined {
  return NAME.test(name) ? undefined : `"${name}" is not a valid name: 1 to 63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit`;
}

/**
 * Validates a resource document and returns it in canonical form (only the fields Portico keeps, in a fixed
 * order), or undefined with every problem in `errors`. `expected` fills in or pins what the caller already
 * knows (the kind and name of `/api/v1/mappings/NAME`).
 */
export function parseResource(doc: unknown, errors: ConfigError[], expected: { kind?: string; name?: string } = {}): Resource | undefined {
  const before = errors.length;
  if (!isObject(doc)) {
    errors.push({ code: 'wrong_type', path: '', message: `a resource must be an object, got ${typeName(doc)}` });
    return undefined;
  }
  const kind = doc.kind ?? expected.kind;
  const secret = kind === 'Secret';
  for (const key of Object.keys(doc)) {
    if (!['apiVersion', 'kind', 'metadata', 'spec', 'status', ...(secret ? SECRET_BODY : [])].includes(key)) errors.push({ code: 'unknown_field', path: key, message: `unknown field "${key}"` });
  }
  const apiVersion = doc.apiVersion ?? API_VERSION;
  if (apiVersion !== API_VERSION && !(secret && apiVersion === 'v1')) {
    errors.push({ code: 'invalid_value', path: 'apiVersion', message: `apiVersion must be ${API_VERSION}${secret ? ' or v1' : ''}` });
  }
  if (typeof kind !== 'string' || KINDS[kind] === undefined) {
    errors.push({ code: kind === undefined ? 'missing_required' : 'invalid_value', path: 'kind', message: `kind must be one of ${Object.keys(KINDS).join(', ')}` });
  } else if (expected.kind !== undefined && kind !== expected.kind) {
    errors.push({ code: 'invalid_value', path: 'kind', message: `kind ${kind} does not match the URL (${expected.kind})` });
  }
  const metadata = doc.metadata ?? {};
  let name: unknown;
  let namespace: unknown;
  let labels: unknown;
  if (!isObject(metadata)) {
    errors.push({ code: 'wrong_type', path: 'metadata', message: `expected an object, got ${typeName(metadata)}` });
  } else {
    object({ fields: { name: str(), namespace: str(), labels: mapOf(str(), str()), annotations: mapOf(str(), str()) } })(metadata, 'metadata', errors);
    ({ name, namespace, labels } = metadata);
    name ??= expected.name;
    if (name === undefined) errors.push({ code: 'missing_required', path: 'metadata.name', message: 'metadata.name is required' });
    else if (typeof name === 'string') {
      const problem = nameProblem(name);
      if (problem) errors.push({ code: 'invalid_value', path: 'metadata.name', message: problem });
      else if (expected.name !== undefined && name !== expected.name) {
        errors.push({ code: 'invalid_value', path: 'metadata.name', message: `name "${name}" does not match the URL ("${expected.name}")` });
      }
    }
  }
  const secretBody = secret && doc.spec === undefined ? Object.fromEntries(SECRET_BODY.filter((k) => doc[k] !== undefined).map((k) => [k, doc[k]])) : undefined;
  if (secret && doc.spec !== undefined) {
    for (const key of SECRET_BODY.filter((k) => doc[k] !== undefined)) errors.push({ code: 'oneof_conflict', path: key, message: `${key} goes under spec, or the whole Secret in Kubernetes' shape without spec` });
  }
  const spec = doc.spec ?? secretBody ?? (kind === 'Module' ? {} : undefined);
  if (spec === undefined) errors.push({ code: 'missing_required', path: 'spec', message: 'spec is required' });
  else if (!isObject(spec)) errors.push({ code: 'wrong_type', path: 'spec', message: `expected an object, got ${typeName(spec)}` });
  else if (typeof kind === 'string' && KINDS[kind] && typeof name === 'string') KINDS[kind]!.check(spec, 'spec', errors, name);
  if (errors.length > before) return undefined;
  const meta: Metadata = { name: name as string };
  if (typeof namespace === 'string') meta.namespace = namespace;
  if (isObject(labels) && Object.keys(labels).length > 0) meta.labels = labels as Record<string, string>;
  return { apiVersion: API_VERSION, kind: kind as Kind, metadata: meta, spec: spec as Record<string, unknown> };
}

/** Code-point order, the same on every machine (localeCompare is not). */
export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `Mapping/name`: how messages and error lists name a resource. */
export function resourceKey(r: { kind: string; metadata: { name: string } }): string {
  return `${r.kind}/${r.metadata.name}`;
}
