import { connect as connectTcp, isIP, type Socket } from 'node:net';
import { connect as connectTls, type TLSSocket } from 'node:tls';
import { StatScope } from '../../stats/store.js';
import type { ClusterSettings, UpstreamProtocol } from './cluster-settings.js';
import type { HostHealthCheck } from './health/health-checker.js';
import type { HostOutlierMonitor } from './health/outlier-detector.js';
import { AlpnConnectionPool } from './alpn-pool.js';
import { Http1ConnectionPool } from './http1/pool.js';
import { Http2ConnectionPool } from './http2/pool.js';
import type { ConnectError, ConnectionSource, UpstreamConnectionPool } from './pool-types.js';
import type { Resource } from './resource-manager.js';
import { CLUSTER_STATS, HOST_STATS } from './stats.js';

const C = CLUSTER_STATS.c;
const G = CLUSTER_STATS.g;
const H = CLUSTER_STATS.h;
const HC = HOST_STATS.c;
const HG = HOST_STATS.g;

/**
 * Envoy's `Host::HealthFlag` bits, in Envoy's order (the order `/clusters` prints them in). A host is healthy when
 * none of the FAILED_* bits is set; the others only inform.
 */
export const HealthFlag = {
  FAILED_ACTIVE_HC: 0x1,
  FAILED_OUTLIER_CHECK: 0x2,
  FAILED_EDS_HEALTH: 0x4,
  /** The last active check answered with `x-envoy-immediate-health-check-fail`. */
  EXCLUDED_VIA_IMMEDIATE_HC_FAIL: 0x80,
  /** The last active check timed out. */
  ACTIVE_HC_TIMEOUT: 0x100,
} as const;

const UNHEALTHY = HealthFlag.FAILED_ACTIVE_HC | HealthFlag.FAILED_OUTLIER_CHECK | HealthFlag.FAILED_EDS_HEALTH;

/** `/clusters` names of the health flags, in Envoy's order. */
export const HEALTH_FLAG_NAMES: ReadonlyArray<readonly [number, string]> = [
  [HealthFlag.FAILED_ACTIVE_HC, 'failed_active_hc'],
  [HealthFlag.FAILED_OUTLIER_CHECK, 'failed_outlier_check'],
  [HealthFlag.FAILED_EDS_HEALTH, 'failed_eds_health'],
  [HealthFlag.EXCLUDED_VIA_IMMEDIATE_HC_FAIL, 'excluded_via_immediate_hc_fail'],
  [HealthFlag.ACTIVE_HC_TIMEOUT, 'active_hc_timeout'],
];

/** The endpoint's `health_status` as configured (UNKNOWN reads HEALTHY, as Envoy's admin shows it). */
export type EdsHealthStatus = 'HEALTHY' | 'UNHEALTHY' | 'DRAINING' | 'TIMEOUT' | 'DEGRADED';

/** Where a host sits (`LocalityLbEndpoints.locality`) and that locality's `load_balancing_weight` (0 if unset). */
export interface HostLocality {
  readonly region: string;
  readonly zone: string;
  readonly subZone: string;
  readonly weight: number;
}

/** The endpoint's `health_check_config`: where active checks go instead of the host's own address. */
export interface HostHealthCheckConfig {
  /** 0: the host's port. */
  readonly port: number;
  /** Empty: the host's address. */
  readonly address: string;
  /** The Host header of HTTP checks; empty: the check's `host`, else the cluster name. */
  readonly hostname: string;
  readonly disabled: boolean;
}

const NO_LOCALITY: HostLocality = { region: '', zone: '', subZone: '', weight: 0 };
const DEFAULT_HEALTH_CHECK_CONFIG: HostHealthCheckConfig = { port: 0, address: '', hostname: '', disabled: false };

/** What an endpoint says about itself besides its address, weight and priority. */
export interface HostPlacement {
  locality?: HostLocality;
  edsHealthStatus?: EdsHealthStatus;
  healthCheckConfig?: HostHealthCheckConfig;
}

function hostKey(address: string, port: number): string {
  return isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

/**
 * One upstream endpoint: an address to connect to, its load-balancing weight and priority, and a keep-alive
 * connection pool created on first use. A host outlives configuration changes that keep its address, so its
 * pooled connections survive them too.
 */
export type ConnectCallback = (...result: [null, Socket] | [ConnectError, null]) => void;

export class Host {
  /** `ip:port`, as Envoy prints upstream hosts (`%UPSTREAM_HOST%`, `/clusters`). */
  key: string;
  /** Counters shown per host by `/clusters`. */
  readonly stats = new StatScope(HOST_STATS, '');
  private connectionPool: UpstreamConnectionPool | undefined;
  /** The last TLS session the host gave, offered for resumption on the next connection. */
  private tlsSession: Buffer | undefined;
  /**
   * `HealthFlag` bits. Only `Cluster.setHostHealthFlag` changes them, so that load balancing and the membership
   * gauges follow.
   */
  healthFlags: number;
  readonly edsHealthStatus: EdsHealthStatus;
  readonly locality: HostLocality;
  readonly healthCheckConfig: HostHealthCheckConfig;
  /** The host's outlier detection monitor when the cluster has `outlier_detection`: the request path reports to it. */
  outlier: HostOutlierMonitor | undefined;
  /** The host's active health check session, when the cluster has one. */
  healthCheck: HostHealthCheck | undefined;

  constructor(
    /** The IP address new connections go to; LOGICAL_DNS clusters change it on re-resolution. */
    public address: string,
    readonly port: number,
    /**
     * The endpoint's `hostname`, or the DNS name it was resolved from; empty for an IP endpoint without one.
     * `auto_host_rewrite` uses it.
     */
    readonly hostname: string,
    readonly weight: number,
    readonly priority: number,
    /** False for endpoints configured `UNHEALTHY`, `DRAINING` or `TIMEOUT` (FAILED_EDS_HEALTH). */
    edsHealthy: boolean,
    private readonly settings: ClusterSettings,
    /** The stats of the cluster this host belongs to. */
    readonly clusterStats: StatScope,
    placement: HostPlacement = {},
    /** The cluster's `max_connections` circuit breaker, which this host's connections count against. */
    private readonly connectionLimit?: Resource,
  ) {
    this.key = hostKey(address, port);
    this.healthFlags = edsHealthy ? 0 : HealthFlag.FAILED_EDS_HEALTH;
    this.edsHealthStatus = placement.edsHealthStatus ?? (edsHealthy ? 'HEALTHY' : 'UNHEALTHY');
    this.locality = placement.locality ?? NO_LOCALITY;
    this.healthCheckConfig = placement.healthCheckConfig ?? DEFAULT_HEALTH_CHECK_CONFIG;
  }

  /** No FAILED_* flag: load balancers use the host (outside panic). */
  get healthy(): boolean {
    return (this.healthFlags & UNHEALTHY) === 0;
  }

  /** Points new connections at another address (LOGICAL_DNS re-resolution); pooled ones stay where they are. */
  moveTo(address: string): void {
    this.address = address;
    this.key = hostKey(address, this.port);
  }

  /**
   * Counts `upstream_cx_overflow` when a request about to be dispatched finds no connection with room (an idle
   * HTTP/1.1 connection, an HTTP/2 connection below its stream limit) and may not open one: this host's pool is full, or the cluster is at its `max_connections`. The request then waits for a
   * connection (pending), as in Envoy. Returns whether it will wait for one.
   */
  wouldWaitForConnection(): boolean {
    if (this.connectionPool?.hasFreeStream()) return false;
    const connections = this.stats.gauges[HG.cx_active]!;
    if (connections >= this.settings.maxConnections || (this.connectionLimit !== undefined && !this.connectionLimit.canCreate())) {
      this.clusterStats.counters[C.upstream_cx_overflow]++;
    }
    return true;
  }

  /** The pool requests to this host are dispatched on, of the cluster's protocol. */
  pool(): UpstreamConnectionPool {
    const protocol = this.settings.protocol;
    return (this.connectionPool ??= protocol === 'alpn' ? new AlpnConnectionPool(this) : this.protocolPool(protocol));
  }

  /** A pool of one protocol's connections; `auto_config` makes one once ALPN has chosen. */
  protocolPool(protocol: 'http1' | 'http2'): Http1ConnectionPool | Http2ConnectionPool {
    const source = new ProtocolConnectionSource(this, protocol);
    const settings = this.settings;
    return protocol === 'http2' ? new Http2ConnectionPool(source, settings, this.key, this.clusterStats) : new Http1ConnectionPool(source, settings);
  }

  /** Closes pooled connections once their requests finish. */
  async close(): Promise<void> {
    const pool = this.connectionPool;
    this.connectionPool = undefined;
    if (pool) await pool.close();
  }

  /**
   * The cluster's `max_connections` circuit breaker allows another connection. (The pool may still open one when
   * it has none, as Envoy's does.)
   */
  mayOpenConnection(): boolean {
    return this.connectionLimit === undefined || this.connectionLimit.canCreate();
  }

  /**
   * Opens a connection to whatever address the host has now (LOGICAL_DNS re-resolution moves new connections
   * only): plain or the cluster's TLS, within its connect timeout, counted in the cluster's and host's
   * connection stats and circuit breaker. `protocol` is what the connection is for: a pool's HTTP protocol (its
   * ALPN offer and `upstream_cx_http{1,2}_total`), or false for TCP proxying.
   */
  openConnection(callback: ConnectCallback, protocol: UpstreamProtocol | false): void {
    const started = performance.now();
    const settings = this.settings;
    const tls = settings.tls;
    this.connectionLimit?.inc();
    const socket: Socket =
      tls === undefined
        ? connectTcp({ host: this.address, port: this.port })
        : connectTls({
            host: this.address,
            port: this.port,
            servername: tls.servername,
            secureContext: tls.secureContext,
            rejectUnauthorized: tls.rejectUnauthorized,
            checkServerIdentity: tls.checkServerIdentity,
            session: this.tlsSession,
            ALPNProtocols: protocol === false ? undefined : ALPN[protocol],
          });
    socket.setNoDelay(true);
    const ready = tls === undefined ? 'connect' : 'secureConnect';
    const timer = setTimeout(() => socket.destroy(connectTimeoutError()), settings.connectTimeoutMs);
    const onFailed = (err: ConnectError): void => {
      clearTimeout(timer);
      socket.removeListener(ready, onReady);
      this.connectionLimit?.dec();
      this.onConnectFailed(err);
      callback(err, null);
    };
    const onReady = (): void => {
      clearTimeout(timer);
      socket.removeListener('error', onFailed);
      this.onConnected(socket, started, protocol);
      callback(null, socket);
    };
    socket.once('error', onFailed);
    socket.once(ready, onReady);
    if (tls !== undefined) socket.on('session', (session: Buffer) => (this.tlsSession = session));
  }

  private onConnected(socket: Socket, started: number, protocol: UpstreamProtocol | false): void {
    const cluster = this.clusterStats;
    const now = performance.now();
    cluster.counters[C.upstream_cx_total]++;
    if (protocol !== false) {
      const http2 = protocol === 'http2' || (protocol === 'alpn' && negotiatedHttp2(socket));
      cluster.counters[http2 ? C.upstream_cx_http2_total : C.upstream_cx_http1_total]++;
    }
    cluster.gauges[G.upstream_cx_active]++;
    cluster.histograms[H.upstream_cx_connect_ms]!.record(now - started);
    this.stats.counters[HC.cx_total]++;
    this.stats.gauges[HG.cx_active]++;
    if (this.settings.tls !== undefined) {
      cluster.counters[C['ssl.handshake']]++;
      if ((socket as TLSSocket).isSessionReused()) cluster.counters[C['ssl.session_reused']]++;
    }
    (socket as UpstreamSocket)[kConnection] = { host: this, openedAt: now, closedLocally: false };
    socket.once('close', onUpstreamSocketClose);
  }

  /** A connection of this host closed. */
  releaseConnection(): void {
    this.connectionLimit?.dec();
  }

  private onConnectFailed(err: Error & { code?: string }): void {
    (err as TaggedConnectError)[kConnectFailure] = true;
    const cluster = this.clusterStats;
    cluster.counters[C.upstream_cx_connect_fail]++;
    if (err.code === CONNECT_TIMEOUT) cluster.counters[C.upstream_cx_connect_timeout]++;
    else if (this.settings.tls !== undefined && !TCP_CONNECT_ERRORS.has(err.code ?? '')) countTlsFailure(cluster, err.code ?? '');
    this.stats.counters[HC.cx_connect_fail]++;
  }
}

/** Connections for one protocol's pool to a host. */
class ProtocolConnectionSource implements ConnectionSource {
  constructor(
    private readonly host: Host,
    private readonly protocol: 'http1' | 'http2',
  ) {}

  openConnection(callback: ConnectCallback): void {
    this.host.openConnection(callback, this.protocol);
  }

  mayOpenConnection(): boolean {
    return this.host.mayOpenConnection();
  }
}

/** What a TLS connection offers; `auto_config` lets the upstream choose. */
const ALPN: Record<UpstreamProtocol, string[]> = { http1: ['http/1.1'], http2: ['h2'], alpn: ['h2', 'http/1.1'] };

/** The upstream chose HTTP/2 by ALPN (a plain socket negotiated nothing). */
export function negotiatedHttp2(socket: Socket): boolean {
  return (socket as TLSSocket).alpnProtocol === 'h2';
}

const CONNECT_TIMEOUT = 'ETIMEDOUT';

function connectTimeoutError(): ConnectError {
  return Object.assign(new Error('connect timeout'), { code: CONNECT_TIMEOUT });
}

const kConnectFailure = Symbol('portico.connectFailure');
type TaggedConnectError = ConnectError & { [kConnectFailure]?: true };

/**
 * True for an error that ended an upstream connection attempt (refused, unreachable, TLS handshake) rather than
 * an established connection: the request then fails with UF, not UC.
 */
export function isConnectFailure(err: Error): boolean {
  return (err as TaggedConnectError)[kConnectFailure] === true;
}

/** True for a connection attempt that ran out of `connect_timeout` (or the kernel's). */
export function isConnectTimeout(err: ConnectError): boolean {
  return isConnectFailure(err) && err.code === CONNECT_TIMEOUT;
}

/** Failures before any TLS byte was exchanged; anything else on a TLS cluster failed in the handshake. */
const TCP_CONNECT_ERRORS = new Set(['ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

/** Node's codes for a peer certificate that failed verification (chain, dates, self-signed). */
const CERT_VERIFY_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
]);

function countTlsFailure(cluster: StatScope, code: string): void {
  cluster.counters[C['ssl.connection_error']]++;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') cluster.counters[C['ssl.fail_verify_san']]++;
  else if (CERT_VERIFY_ERRORS.has(code)) cluster.counters[C['ssl.fail_verify_error']]++;
}

const kConnection = Symbol('portico.upstreamConnection');
type UpstreamSocket = Socket & { [kConnection]?: { host: Host; openedAt: number; closedLocally: boolean } };

/**
 * Says that Portico is closing this connection, for a codec whose graceful close ends with the peer's FIN too
 * (HTTP/2's GOAWAY): the FIN alone would make it look closed by the upstream.
 */
export function markClosedLocally(socket: Socket): void {
  const connection = (socket as UpstreamSocket)[kConnection];
  if (connection !== undefined) connection.closedLocally = true;
}

/** Connection teardown stats; a peer that sent FIN first closed it (remote), otherwise the proxy did (local). */
function onUpstreamSocketClose(this: UpstreamSocket): void {
  const connection = this[kConnection];
  if (connection === undefined) return;
  const cluster = connection.host.clusterStats;
  cluster.gauges[G.upstream_cx_active]--;
  cluster.counters[C.upstream_cx_destroy]++;
  cluster.counters[this.readableEnded && !connection.closedLocally ? C.upstream_cx_destroy_remote : C.upstream_cx_destroy_local]++;
  cluster.counters[C.upstream_cx_rx_bytes_total] += this.bytesRead;
  cluster.counters[C.upstream_cx_tx_bytes_total] += this.bytesWritten;
  cluster.histograms[H.upstream_cx_length_ms]!.record(performance.now() - connection.openedAt);
  connection.host.stats.gauges[HG.cx_active]--;
  connection.host.releaseConnection();
}
