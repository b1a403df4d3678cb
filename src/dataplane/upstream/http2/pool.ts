/**
 * One host's HTTP/2 connection pool, as Envoy's: requests become streams on a connection with room for one (below
 * the cluster's `max_concurrent_streams` and the peer's SETTINGS), and a new connection opens only when none has
 * room, within `maxConnections` and the cluster's `max_connections` circuit breaker (as the HTTP/1.1 pool, a pool
 * with no connection may always open one). Otherwise requests wait (pending). A connection drains (takes no new
 * streams, closes once its streams end) after `max_requests_per_connection` streams or the upstream's GOAWAY.
 * A connection that fails before the peer's SETTINGS came fails every pending request, as a failed connect does.
 */
import type { Socket } from 'node:net';
import type { StatScope } from '../../../stats/store.js';
import type { ClusterSettings } from '../cluster-settings.js';
import {
  type ConnectError,
  type ConnectionSource,
  PROTOCOL_ERROR,
  UNCONNECTED,
  upstreamError,
  type UpstreamConnectionPool,
  type UpstreamRequestHead,
  type UpstreamStreamHandler,
} from '../pool-types.js';
import { CLUSTER_STATS } from '../stats.js';
import { Http2Connection, type Http2ConnectionOwner } from './connection.js';

const C = CLUSTER_STATS.c;
const G = CLUSTER_STATS.g;

interface PendingRequest {
  head: UpstreamRequestHead;
  handler: UpstreamStreamHandler;
}

function onIdleTimer(pool: Http2ConnectionPool): void {
  pool.closeIdleConnections();
}

export class Http2ConnectionPool implements UpstreamConnectionPool, Http2ConnectionOwner {
  /** Connections with room for another stream; the last one listed takes the next, so streams gather. */
  private readonly ready: Http2Connection[] = [];
  private readonly open = new Set<Http2Connection>();
  private pending: PendingRequest[] = [];
  /** Connections open or being opened. */
  private connections = 0;
  /** Connections being opened or waiting for the peer's SETTINGS. */
  private connecting = 0;
  /** Streams a new connection is expected to take, to decide how many to open for the pending requests. */
  private readonly streamsPerConnection: number;
  private idleTimer: NodeJS.Timeout | undefined;
  private closing = false;
  private onClosed: (() => void) | undefined;

  constructor(
    private readonly source: ConnectionSource,
    private readonly settings: ClusterSettings,
    /** `ip:port` of the host: the `:authority` of requests that came without a `host`. */
    private readonly authority: string,
    private readonly stats: StatScope,
  ) {
    const max = settings.maxRequestsPerConnection;
    const streams = settings.http2.maxConcurrentStreams;
    this.streamsPerConnection = max === 0 ? streams : Math.min(max, streams);
  }

  dispatch(head: UpstreamRequestHead, handler: UpstreamStreamHandler): void {
    // Envoy has no upgrade over an HTTP/2 upstream without extended CONNECT, which Portico does not speak.
    if (head.upgrade !== undefined) {
      handler.onResponseError(UNCONNECTED, upstreamError(PROTOCOL_ERROR, `upgrade ${head.upgrade} over an HTTP/2 upstream is not supported`));
      return;
    }
    const connection = this.ready[this.ready.length - 1];
    if (connection !== undefined) {
      this.startOn(connection, head, handler);
      return;
    }
    this.pending.push({ head, handler });
    this.connectForPending();
  }

  hasFreeStream(): boolean {
    return this.ready.length > 0;
  }

  /** Takes a connection opened for the pool elsewhere (auto_config's ALPN probe). */
  adopt(socket: Socket): void {
    this.connections++;
    this.connecting++;
    this.onConnected(socket);
  }

  close(): Promise<void> {
    this.closing = true;
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    for (const connection of this.open) if (connection.active === 0) connection.close();
    if (this.connections === 0) return Promise.resolve();
    return new Promise((resolve) => (this.onClosed = resolve));
  }

  /** Closes the connections idle for `idleTimeoutMs`, and waits for the next to be. */
  closeIdleConnections(): void {
    this.idleTimer = undefined;
    const timeout = this.settings.idleTimeoutMs;
    const now = performance.now();
    let next = Infinity;
    for (const connection of this.open) {
      if (connection.active > 0 || !connection.ready) continue;
      const due = connection.idleSince + timeout;
      if (due <= now) connection.close();
      else next = Math.min(next, due);
    }
    if (next !== Infinity) this.armIdleTimer(next - now);
  }

  // ---- the connections' owner ------------------------------------------------------------------------------

  onSettings(connection: Http2Connection, first: boolean): void {
    // The first SETTINGS: the peer speaks HTTP/2, and the connection is ready (and idle).
    if (first) {
      this.connecting--;
      connection.idleSince = performance.now();
      if (this.closing && this.pending.length === 0) return connection.close();
    }
    this.relist(connection);
    this.servePending();
    // The peer may allow fewer streams than a new connection was expected to take.
    this.connectForPending();
  }

  onStreamClosed(connection: Http2Connection): void {
    if (connection.draining) {
      if (connection.active === 0) connection.close();
      return;
    }
    this.relist(connection);
    this.servePending();
    if (connection.active === 0) {
      if (this.closing) connection.close();
      else if (this.idleTimer === undefined && this.settings.idleTimeoutMs > 0) this.armIdleTimer(this.settings.idleTimeoutMs);
    }
  }

  onDraining(connection: Http2Connection, goaway: boolean): void {
    if (goaway) this.stats.counters[C.upstream_cx_close_notify]++;
    this.unlist(connection);
    this.connectForPending();
  }

  remove(connection: Http2Connection, error: ConnectError): void {
    this.unlist(connection);
    this.open.delete(connection);
    this.connections--;
    if (!connection.ready) {
      this.connecting--;
      this.failPending(error);
    }
    this.connectForPending();
    if (this.connections === 0 && this.onClosed !== undefined) this.onClosed();
  }

  countReset(received: boolean): void {
    this.stats.counters[received ? C['http2.rx_reset'] : C['http2.tx_reset']]++;
  }

  countKeepaliveTimeout(): void {
    this.stats.counters[C['http2.keepalive_timeout']]++;
  }

  countStreams(delta: number): void {
    this.stats.gauges[G['http2.streams_active']] += delta;
  }

  // ---- internals -------------------------------------------------------------------------------------------

  private startOn(connection: Http2Connection, head: UpstreamRequestHead, handler: UpstreamStreamHandler): void {
    connection.start(head, handler, this.settings.maxRequestsPerConnection);
    if (!connection.hasCapacity()) this.unlist(connection);
  }

  private servePending(): void {
    const pending = this.pending;
    while (pending.length > 0) {
      const connection = this.ready[this.ready.length - 1];
      if (connection === undefined) return;
      const next = pending.shift()!;
      this.startOn(connection, next.head, next.handler);
    }
  }

  private relist(connection: Http2Connection): void {
    if (connection.hasCapacity()) {
      if (!connection.listed) {
        connection.listed = true;
        this.ready.push(connection);
      }
    } else {
      this.unlist(connection);
    }
  }

  private unlist(connection: Http2Connection): void {
    if (!connection.listed) return;
    connection.listed = false;
    this.ready.splice(this.ready.indexOf(connection), 1);
  }

  private armIdleTimer(delayMs: number): void {
    this.idleTimer = setTimeout(onIdleTimer, delayMs, this);
    this.idleTimer.unref();
  }

  /** Opens connections for the requests that the connections being opened will not take, as far as limits allow. */
  private connectForPending(): void {
    while (this.pending.length > this.connecting * this.streamsPerConnection && this.connections < this.settings.maxConnections) {
      if (this.connections > 0 && !this.source.mayOpenConnection()) return;
      this.connections++;
      this.connecting++;
      this.source.openConnection((error, socket) => {
        if (error === null) this.onConnected(socket);
        else this.onConnectFailed(error);
      });
    }
  }

  private onConnected(socket: Socket): void {
    const scheme = this.settings.tls === undefined ? 'http' : 'https';
    const connection = new Http2Connection(this, socket, `${scheme}://${this.authority}`, scheme, this.settings.http2);
    this.open.add(connection);
    if (this.pending.length === 0 && this.closing) connection.close();
  }

  /** As Envoy does, every pending request fails with the connection attempt; retries queue anew. */
  private onConnectFailed(error: ConnectError): void {
    this.connections--;
    this.connecting--;
    this.failPending(error);
    this.connectForPending();
    if (this.connections === 0 && this.onClosed !== undefined) this.onClosed();
  }

  private failPending(error: ConnectError): void {
    const failed = this.pending;
    this.pending = [];
    for (const request of failed) request.handler.onResponseError(UNCONNECTED, error);
  }
}
