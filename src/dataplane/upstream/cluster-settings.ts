import type { ConfigError } from '../../config/errors.js';
import { typeNameFromUrl } from '../../config/extensions.js';
import type { envoy } from '../../generated/envoy.js';
import { compileUpstreamTls, type UpstreamTls } from '../tls/upstream.js';

type Cluster = envoy.config.cluster.v3.Cluster;
type UpstreamHttpProtocolOptions = envoy.extensions.upstreams.http.v3.HttpProtocolOptions;

/** Per-cluster connection settings, resolved from the cluster's fields and Envoy's defaults. */
export interface ClusterSettings {
  connectTimeoutMs: number;
  /** Upstream connection idle timeout (`common_http_protocol_options.idle_timeout`, 1 h by default; 0 = none). */
  idleTimeoutMs: number;
  /** 0 = unlimited. */
  maxRequestsPerConnection: number;
  /** Connections one host's pool may open: the DEFAULT circuit breaker's `max_connections`, or less per host. */
  maxConnections: number;
  dnsRefreshRateMs: number;
  dnsLookupFamily: string;
  enableTrailers: boolean;
  /** Set when the cluster's transport socket originates TLS. */
  tls: UpstreamTls | undefined;
}

const UPSTREAM_TLS = 'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';

const HTTP_OPTIONS_KEY = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

export function clusterSettings(cluster: Cluster, path: string, errors: ConfigError[]): ClusterSettings {
  const options = cluster.typed_extension_protocol_options?.[HTTP_OPTIONS_KEY]?.value as UpstreamHttpProtocolOptions | undefined;
  const common = options?.common_http_protocol_options ?? cluster.common_http_protocol_options;
  const http1 = options?.explicit_http_config?.http_protocol_options ?? cluster.http_protocol_options;
  return {
    connectTimeoutMs: cluster.connect_timeout ?? 5000,
    idleTimeoutMs: common?.idle_timeout ?? 3_600_000,
    maxRequestsPerConnection: common?.max_requests_per_connection ?? cluster.max_requests_per_connection ?? 0,
    maxConnections: Math.min(
      cluster.circuit_breakers?.thresholds?.find((t) => (t.priority ?? 'DEFAULT') === 'DEFAULT')?.max_connections ?? 1024,
      cluster.circuit_breakers?.per_host_thresholds?.find((t) => (t.priority ?? 'DEFAULT') === 'DEFAULT')?.max_connections ?? Infinity,
    ),
    dnsRefreshRateMs: cluster.dns_refresh_rate ?? 5000,
    dnsLookupFamily: cluster.dns_lookup_family ?? 'AUTO',
    enableTrailers: http1?.enable_trailers ?? false,
    tls: upstreamTls(cluster, path, errors),
  };
}

function upstreamTls(cluster: Cluster, path: string, errors: ConfigError[]): UpstreamTls | undefined {
  const typed = cluster.transport_socket?.typed_config;
  if (typed === undefined) return undefined;
  const typedPath = `${path}.transport_socket.typed_config`;
  const typeName = typeNameFromUrl(typed.type_url);
  if (typeName !== UPSTREAM_TLS) {
    errors.push({ code: 'invalid_value', path: typedPath, message: `a cluster's TLS transport socket takes an ${UPSTREAM_TLS}, not ${typeName}` });
    return undefined;
  }
  return compileUpstreamTls(typed.value as envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext, typedPath, errors);
}
