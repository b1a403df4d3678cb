/**
 * Envoy's `envoy.filters.network.tcp_proxy`: the terminal network filter that joins each downstream connection
 * (after TLS termination when its filter chain has it) to a connection to a host of a cluster, plain or with
 * the cluster's TLS, and pipes bytes both ways until both sides are done.
 */
import type { Socket } from 'node:net';
import type { envoy } from '../../generated/envoy.js';
import type { ConfigError } from '../../config/errors.js';
import type { StatScope, StatsStore } from '../../stats/store.js';
import { type AccessLogContext, type AccessLogger, compileAccessLogs, connectionStreamInfo, emitAccessLogs } from '../access-log/access-log.js';
import { ResponseFlag } from '../response-flags.js';
import type { StreamInfo } from '../stream-info.js';
import type { Cluster } from '../upstream/cluster.js';
import type { ClusterManager } from '../upstream/cluster-manager.js';
import { LocalOriginFailure } from '../upstream/health/outlier-detector.js';
import { isConnectTimeout, type Host } from '../upstream/host.js';
import { CLUSTER_STATS } from '../upstream/stats.js';
import { splice } from './splice.js';
import { TCP_PROXY_STATS } from './stats.js';

type TcpProxyConfig = envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy;

const T = TCP_PROXY_STATS.c;
const CS = CLUSTER_STATS.c;

export interface TcpProxyContext extends AccessLogContext {
  clusters: ClusterManager;
  stats: StatsStore;
}

interface WeightedClusterEntry {
  readonly name: string;
  /** Running total of weights up to and including this entry. */
  readonly cumulativeWeight: number;
}

export class TcpProxy {
  /** `tcp.<stat_prefix>.` */
  readonly stats: StatScope;
  readonly idleTimeoutMs: number;
  readonly maxConnectAttempts: number;
  readonly accessLogs: readonly AccessLogger[] | undefined;
  private readonly cluster: string | undefined;
  private readonly weightedClusters: readonly WeightedClusterEntry[] | undefined;
  private readonly totalWeight: number;

  constructor(
    config: TcpProxyConfig,
    path: string,
    errors: ConfigError[],
    readonly context: TcpProxyContext,
  ) {
    // The schema checks stat_prefix, the cluster oneof and the weights (at least 1).
    this.stats = context.stats.scope(TCP_PROXY_STATS, `tcp.${config.stat_prefix ?? ''}.`);
    this.cluster = config.cluster;
    let total = 0;
    this.weightedClusters = config.weighted_clusters?.clusters?.map((entry) => {
      total += entry.weight ?? 0;
      return { name: entry.name ?? '', cumulativeWeight: total };
    });
    this.totalWeight = total;
    this.idleTimeoutMs = config.idle_timeout ?? 3_600_000;
    this.maxConnectAttempts = config.max_connect_attempts ?? 1;
    this.accessLogs = compileAccessLogs(config.access_log, `${path}.access_log`, errors, context);
  }

  handleConnection(socket: Socket): void {
    this.stats.counters[T.downstream_cx_total]++;
    new TcpProxySession(this, socket).connect(this.pickCluster());
  }

  /** Gives back the stats scope (the filter chain is gone). */
  close(): void {
    this.context.stats.release(this.stats);
  }

  private pickCluster(): string {
    const entries = this.weightedClusters;
    if (entries === undefined || entries.length === 0) return this.cluster ?? '';
    const pick = Math.floor(Math.random() * this.totalWeight);
    let index = 0;
    while (index < entries.length - 1 && pick >= entries[index]!.cumulativeWeight) index++;
    return entries[index]!.name;
  }
}

const kSession = Symbol('portico.tcpProxySession');
type SessionSocket = Socket & { [kSession]?: TcpProxySession };

/** One proxied connection: connecting (with retries on other hosts), then spliced, then logged. */
class TcpProxySession {
  private readonly info: StreamInfo | undefined;
  private cluster: Cluster | undefined;
  private attempts = 0;
  /** Reading from downstream is paused because the upstream is not taking more yet. */
  private readingPaused = false;

  constructor(
    private readonly proxy: TcpProxy,
    private readonly downstream: Socket,
  ) {
    this.info = proxy.accessLogs === undefined ? undefined : connectionStreamInfo(downstream, '');
    (downstream as SessionSocket)[kSession] = this;
    downstream.once('close', onDownstreamClose);
  }

  /** Picks a host of the cluster and connects to it; the downstream is not read until then. */
  connect(clusterName: string): void {
    const proxy = this.proxy;
    const info = this.info;
    if (info !== undefined) info.upstreamCluster = clusterName;
    const cluster = (this.cluster ??= proxy.context.clusters.get(clusterName));
    if (cluster === undefined) {
      proxy.stats.counters[T.downstream_cx_no_route]++;
      this.fail(ResponseFlag.NC);
      return;
    }
    const host = cluster.chooseHost();
    if (host === undefined) {
      cluster.stats.counters[CS.upstream_cx_none_healthy]++;
      this.fail(ResponseFlag.UH);
      return;
    }
    if (!cluster.resources.forPriority(false).connections.canCreate()) {
      cluster.stats.counters[CS.upstream_cx_overflow]++;
      this.fail(ResponseFlag.UO);
      return;
    }
    this.attempts++;
    if (info !== undefined) info.upstreamHost = host.key;
    host.openConnection((err, socket) => (err === null ? this.onConnected(socket) : this.onConnectFailed(host, err)), false);
  }

  private onConnectFailed(host: Host, err: Error & { code?: string }): void {
    host.outlier?.onLocalOriginFailure(isConnectTimeout(err) ? LocalOriginFailure.TIMEOUT : LocalOriginFailure.CONNECT_FAILED);
    if (this.info !== undefined) this.info.upstreamTransportFailureReason = err.message;
    if (this.downstream.destroyed) return;
    if (this.attempts < this.proxy.maxConnectAttempts) this.connect(this.cluster!.name);
    else this.fail(ResponseFlag.UF);
  }

  private onConnected(upstream: Socket): void {
    const downstream = this.downstream;
    if (downstream.destroyed) {
      upstream.destroy();
      return;
    }
    (upstream as SessionSocket)[kSession] = this;
    downstream.on('data', onDownstreamData);
    upstream.on('data', onUpstreamData);
    downstream.on('pause', onDownstreamPause);
    upstream.on('drain', onUpstreamDrain);
    if (this.proxy.idleTimeoutMs > 0) {
      // The downstream socket sees every byte both ways, so its inactivity is the connection's.
      downstream.setTimeout(this.proxy.idleTimeoutMs);
      downstream.once('timeout', onIdleTimeout);
    }
    splice(downstream, upstream);
  }

  private fail(flag: number): void {
    if (this.info !== undefined) this.info.responseFlags |= flag;
    this.downstream.destroy();
  }

  onIdleTimeout(): void {
    this.proxy.stats.counters[T.idle_timeout]++;
    if (this.info !== undefined) this.info.responseFlags |= ResponseFlag.SI;
    this.downstream.destroy();
  }

  onDownstreamData(length: number): void {
    this.proxy.stats.counters[T.downstream_cx_rx_bytes_total] += length;
  }

  onUpstreamData(length: number): void {
    this.proxy.stats.counters[T.downstream_cx_tx_bytes_total] += length;
  }

  onDownstreamPause(): void {
    if (this.readingPaused) return;
    this.readingPaused = true;
    this.proxy.stats.counters[T.downstream_flow_control_paused_reading_total]++;
  }

  onUpstreamDrain(): void {
    if (!this.readingPaused) return;
    this.readingPaused = false;
    this.proxy.stats.counters[T.downstream_flow_control_resumed_reading_total]++;
  }

  /** The connection's access log line: bytes both ways, its duration, the host it went to. */
  onDownstreamClose(): void {
    const info = this.info;
    if (info === undefined) return;
    info.bytesReceived = this.downstream.bytesRead;
    info.bytesSent = this.downstream.bytesWritten;
    info.lastResponseByteMonotonic = performance.now();
    emitAccessLogs(this.proxy.accessLogs!, info);
  }
}

function onDownstreamClose(this: SessionSocket): void {
  this[kSession]?.onDownstreamClose();
}

function onDownstreamData(this: SessionSocket, chunk: Buffer): void {
  this[kSession]?.onDownstreamData(chunk.length);
}

function onUpstreamData(this: SessionSocket, chunk: Buffer): void {
  this[kSession]?.onUpstreamData(chunk.length);
}

function onDownstreamPause(this: SessionSocket): void {
  this[kSession]?.onDownstreamPause();
}

function onUpstreamDrain(this: SessionSocket): void {
  this[kSession]?.onUpstreamDrain();
}

function onIdleTimeout(this: SessionSocket): void {
  this[kSession]?.onIdleTimeout();
}
