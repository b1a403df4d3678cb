/**
 * The Envoy extensions Portico implements, by the config type of their `typed_config` (Envoy identifies an
 * extension by its `@type`; the `name` beside it is free text). Anything else found in a configuration is
 * refused with `unsupported extension <canonical name>`.
 */
const TYPE_PREFIX = 'type.googleapis.com/';

/** Config type → canonical extension name, for the extensions Portico implements. */
const SUPPORTED: ReadonlyMap<string, string> = new Map([
  ['envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', 'envoy.filters.network.http_connection_manager'],
  ['envoy.extensions.filters.http.router.v3.Router', 'envoy.filters.http.router'],
  // A route's typed_per_filter_config entry that turns a filter on or off (`disabled`) around its own config.
  ['envoy.config.route.v3.FilterConfig', 'envoy.config.route.v3.FilterConfig'],
  // HTTP filters (src/extensions/filters/http/registry.ts): the filter's config and its per-route config.
  ['envoy.extensions.filters.http.cors.v3.Cors', 'envoy.filters.http.cors'],
  ['envoy.extensions.filters.http.cors.v3.CorsPolicy', 'envoy.filters.http.cors'],
  ['envoy.extensions.filters.http.grpc_web.v3.GrpcWeb', 'envoy.filters.http.grpc_web'],
  ['envoy.extensions.filters.http.grpc_stats.v3.FilterConfig', 'envoy.filters.http.grpc_stats'],
  ['envoy.extensions.filters.http.ratelimit.v3.RateLimit', 'envoy.filters.http.ratelimit'],
  ['envoy.extensions.filters.http.basic_auth.v3.BasicAuth', 'envoy.filters.http.basic_auth'],
  ['envoy.extensions.filters.http.basic_auth.v3.BasicAuthPerRoute', 'envoy.filters.http.basic_auth'],
  ['envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth', 'envoy.filters.http.api_key_auth'],
  ['envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuthPerRoute', 'envoy.filters.http.api_key_auth'],
  ['envoy.extensions.filters.http.ext_authz.v3.ExtAuthz', 'envoy.filters.http.ext_authz'],
  ['envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute', 'envoy.filters.http.ext_authz'],
  ['envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication', 'envoy.filters.http.jwt_authn'],
  ['envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig', 'envoy.filters.http.jwt_authn'],
  ['envoy.extensions.filters.http.rbac.v3.RBAC', 'envoy.filters.http.rbac'],
  ['envoy.extensions.filters.http.rbac.v3.RBACPerRoute', 'envoy.filters.http.rbac'],
  ['envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit', 'envoy.filters.http.local_ratelimit'],
  // Non-terminal network filters (src/extensions/filters/network/registry.ts).
  ['envoy.extensions.filters.network.rbac.v3.RBAC', 'envoy.filters.network.rbac'],
  ['envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit', 'envoy.filters.network.local_ratelimit'],
  ['envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', 'envoy.filters.network.tcp_proxy'],
  // Listener filters (src/extensions/filters/listener/registry.ts).
  ['envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector', 'envoy.filters.listener.tls_inspector'],
  ['envoy.extensions.filters.listener.http_inspector.v3.HttpInspector', 'envoy.filters.listener.http_inspector'],
  ['envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext', 'envoy.transport_sockets.tls'],
  ['envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', 'envoy.transport_sockets.tls'],
  ['envoy.extensions.upstreams.http.v3.HttpProtocolOptions', 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions'],
  ['envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig', 'envoy.request_id.uuid'],
  ['envoy.extensions.access_loggers.file.v3.FileAccessLog', 'envoy.access_loggers.file'],
  ['envoy.extensions.access_loggers.stream.v3.StdoutAccessLog', 'envoy.access_loggers.stdout'],
  ['envoy.extensions.access_loggers.stream.v3.StderrAccessLog', 'envoy.access_loggers.stderr'],
  ['envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate', 'envoy.retry_host_predicates.previous_hosts'],
]);

/** Canonical names that do not follow the `envoy.extensions.<x>.v3.<Message>` → `envoy.<x>` rule. */
const NAME_EXCEPTIONS: ReadonlyMap<string, string> = new Map([
  ['envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig', 'envoy.filters.udp_listener.udp_proxy'],
  ['envoy.config.trace.v3.ZipkinConfig', 'envoy.tracers.zipkin'],
  ['envoy.config.trace.v3.OpenTelemetryConfig', 'envoy.tracers.opentelemetry'],
  ['envoy.config.trace.v3.DatadogConfig', 'envoy.tracers.datadog'],
  ['envoy.config.trace.v3.LightstepConfig', 'envoy.tracers.lightstep'],
  ['envoy.config.trace.v3.SkyWalkingConfig', 'envoy.tracers.skywalking'],
  ['envoy.config.trace.v3.XRayConfig', 'envoy.tracers.xray'],
]);

export function typeNameFromUrl(typeUrl: string): string {
  return typeUrl.startsWith(TYPE_PREFIX) ? typeUrl.slice(TYPE_PREFIX.length) : typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
}

/** `envoy.extensions.filters.http.lua.v3.Lua` → `envoy.filters.http.lua`, as Envoy's docs name extensions. */
export function extensionName(typeName: string): string {
  const known = SUPPORTED.get(typeName) ?? NAME_EXCEPTIONS.get(typeName);
  if (known) return known;
  const m = /^envoy\.extensions\.(.+?)\.v\d+(?:alpha\d*)?\.[A-Z]\w*$/.exec(typeName);
  return m ? `envoy.${m[1]}` : typeName;
}

export function isSupportedExtension(typeName: string): boolean {
  return SUPPORTED.has(typeName);
}
