import type { ConfigError } from '../../config/errors.js';
import { typeNameFromUrl } from '../../config/extensions.js';
import type { envoy } from '../../generated/envoy.js';
import { compileUpstreamTls, type UpstreamTls } from '../tls/upstream.js';

type Cluster = envoy.config.cluster.v3.Cluster;
type UpstreamHttpProtocolOptions = envoy.extensions.upstreams.http.v3.HttpProtocolOptions;
type Http1ProtocolOptions = envoy.config.core.v3.Http1ProtocolOptions;
type Http2ProtocolOptions = envoy.config.core.v3.Http2ProtocolOptions;

/** What a cluster's pools speak: one protocol, or the one ALPN picks on each host's first TLS connection (`auto_config`). */
export type UpstreamProtocol = 'http1' | 'http2' | 'alpn';

/** `Http2ProtocolOptions` with Envoy's current defaults. */
export interface Http2Settings {
  /** Streams one connection carries at once, further capped by the peer's SETTINGS_MAX_CONCURRENT_STREAMS. */
  maxConcurrentStreams: number;
  initialStreamWindowSize: number;
  initialConnectionWindowSize: number;
  /** `connection_keepalive.interval`: a PING this often (0: none), `timeout` for its ACK before the connection is closed. */
  keepaliveIntervalMs: number;
  keepaliveTimeoutMs: number;
}

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
  /** HTTP/1.1's `enable_trailers`; HTTP/2 carries trailers always. */
  enableTrailers: boolean;
  protocol: UpstreamProtocol;
  http2: Http2Settings;
  /** Set when the cluster's transport socket originates TLS. */
  tls: UpstreamTls | undefined;
}

const UPSTREAM_TLS = 'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';

const HTTP_OPTIONS_KEY = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

export function clusterSettings(cluster: Cluster, path: string, errors: ConfigError[]): ClusterSettings {
  const options = cluster.typed_extension_protocol_options?.[HTTP_OPTIONS_KEY]?.value as UpstreamHttpProtocolOptions | undefined;
  const common = options?.common_http_protocol_options ?? cluster.common_http_protocol_options;
  const tls = upstreamTls(cluster, path, errors);
  const { protocol, http1, http2 } = selectProtocol(cluster, options, tls !== undefined);
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
    enableTrailers: protocol === 'http2' || (http1?.enable_trailers ?? false),
    protocol,
    http2: http2Settings(http2 ?? {}, http2Path(cluster, options, path), errors),
    tls,
  };
}

/**
 * The protocol the typed `HttpProtocolOptions` choose (else the legacy cluster fields: `http2_protocol_options`
 * means HTTP/2), and the options that go with it. `auto_config` needs TLS to negotiate: without it Envoy speaks
 * HTTP/1.1, and so does this. `use_downstream_protocol_config` follows the downstream, which is HTTP/1.1 for now.
 */
function selectProtocol(
  cluster: Cluster,
  options: UpstreamHttpProtocolOptions | undefined,
  tls: boolean,
): { protocol: UpstreamProtocol; http1: Http1ProtocolOptions | undefined; http2: Http2ProtocolOptions | undefined } {
  const explicit = options?.explicit_http_config;
  if (explicit?.http2_protocol_options !== undefined) return { protocol: 'http2', http1: undefined, http2: explicit.http2_protocol_options };
  if (explicit !== undefined) return { protocol: 'http1', http1: explicit.http_protocol_options, http2: undefined };
  const auto = options?.auto_config;
  if (auto !== undefined) return { protocol: tls ? 'alpn' : 'http1', http1: auto.http_protocol_options, http2: auto.http2_protocol_options };
  const downstream = options?.use_downstream_protocol_config;
  if (downstream !== undefined) return { protocol: 'http1', http1: downstream.http_protocol_options, http2: undefined };
  if (cluster.http2_protocol_options !== undefined) return { protocol: 'http2', http1: undefined, http2: cluster.http2_protocol_options };
  return { protocol: 'http1', http1: cluster.http_protocol_options, http2: undefined };
}

function http2Path(cluster: Cluster, options: UpstreamHttpProtocolOptions | undefined, path: string): string {
  const typed = `${path}.typed_extension_protocol_options["${HTTP_OPTIONS_KEY}"]`;
  if (options?.explicit_http_config?.http2_protocol_options !== undefined) return `${typed}.explicit_http_config.http2_protocol_options`;
  if (options?.auto_config !== undefined) return `${typed}.auto_config.http2_protocol_options`;
  return cluster.http2_protocol_options !== undefined ? `${path}.http2_protocol_options` : path;
}

/** RFC 9113's window limits, which Envoy's validation rules repeat (and it refuses 0 concurrent streams). */
const MIN_WINDOW = 65_535;
const MAX_WINDOW = 2_147_483_647;

/** Checked HTTP/2 settings, of a cluster or (with Envoy's downstream default of unlimited streams) a connection manager. */
export function http2Settings(options: Http2ProtocolOptions, path: string, errors: ConfigError[], defaultMaxStreams = 1024): Http2Settings {
  const settings: Http2Settings = {
    maxConcurrentStreams: options.max_concurrent_streams ?? defaultMaxStreams,
    initialStreamWindowSize: options.initial_stream_window_size ?? 16 * 1024 * 1024,
    initialConnectionWindowSize: options.initial_connection_window_size ?? 24 * 1024 * 1024,
    keepaliveIntervalMs: options.connection_keepalive?.interval ?? 0,
    keepaliveTimeoutMs: options.connection_keepalive?.timeout ?? 0,
  };
  const keepalive = options.connection_keepalive;
  if (keepalive !== undefined && !(settings.keepaliveTimeoutMs >= 1)) {
    errors.push({ code: 'missing_required', path: `${path}.connection_keepalive.timeout`, message: 'connection_keepalive needs a timeout of at least 1ms' });
  }
  if (settings.maxConcurrentStreams < 1 || settings.maxConcurrentStreams > MAX_WINDOW) {
    errors.push({ code: 'invalid_value', path: `${path}.max_concurrent_streams`, message: `max_concurrent_streams must be within [1, ${MAX_WINDOW}]` });
  }
  for (const [field, value] of [
    ['initial_stream_window_size', settings.initialStreamWindowSize],
    ['initial_connection_window_size', settings.initialConnectionWindowSize],
  ] as const) {
    if (value < MIN_WINDOW || value > MAX_WINDOW) {
      errors.push({ code: 'invalid_value', path: `${path}.${field}`, message: `${field} must be within [${MIN_WINDOW}, ${MAX_WINDOW}]` });
    }
  }
  return settings;
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
