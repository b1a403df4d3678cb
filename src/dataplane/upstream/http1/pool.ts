/**
 * One host's HTTP/1.1 connection pool, as Envoy's: a request takes an idle connection, or waits (pending) for
 * one to be opened or freed. At most `maxConnections` connections, and none beyond the cluster's
 * `max_connections` circuit breaker unless the pool has none at all (so that its pending requests can always
 * be served). A failed connection attempt fails every pending request, which the router may then retry.
 */
import type { Socket } from 'node:net';
import { Http1Connection, type ConnectionOwner } from './connection.js';
import {
  type ConnectError,
  type ConnectionSource,
  UNCONNECTED,
  type UpstreamConnectionPool,
  type UpstreamRequestHead,
  type UpstreamStreamHandler,
} from '../pool-types.js';

export interface PoolSettings {
  maxConnections: number;
  /** 0: unlimited. */
  maxRequestsPerConnection: number;
  /** 0: idle connections stay open. */
  idleTimeoutMs: number;
}

interface PendingRequest {
  head: UpstreamRequestHead;
  handler: UpstreamStreamHandler;
}

function onIdleTimer(pool: Http1ConnectionPool): void {
  pool.closeIdleConnections();
}

export class Http1ConnectionPool implements ConnectionOwner, UpstreamConnectionPool {
  /** Most recently used last: requests take the warmest connection, the oldest time out first. */
  private readonly idle: Http1Connection[] = [];
  private pending: PendingRequest[] = [];
  /** Connections open or being opened. */
  private connections = 0;
  private connecting = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private closing = false;
  private onClosed: (() => void) | undefined;

  constructor(
    private readonly source: ConnectionSource,
    private readonly settings: PoolSettings,
  ) {}

  dispatch(head: UpstreamRequestHead, handler: UpstreamStreamHandler): void {
    const connection = this.idle.pop();
    if (connection !== undefined) {
      if (!connection.start(head, handler)) this.idle.push(connection);
      return;
    }
    this.pending.push({ head, handler });
    this.connectForPending();
  }

  hasFreeStream(): boolean {
    return this.idle.length > 0;
  }

  /** Takes a connection opened for the pool elsewhere (auto_config's ALPN probe). */
  adopt(socket: Socket): void {
    this.connections++;
    this.onConnected(socket);
  }

  release(connection: Http1Connection): void {
    const pending = this.pending;
    while (pending.length > 0) {
      const next = pending.shift()!;
      if (connection.start(next.head, next.handler)) return;
    }
    if (this.closing) {
      connection.close();
      return;
    }
    connection.idleSince = performance.now();
    this.idle.push(connection);
    if (this.idleTimer === undefined && this.settings.idleTimeoutMs > 0) this.armIdleTimer(this.settings.idleTimeoutMs);
  }

  mayReuse(requests: number): boolean {
    const max = this.settings.maxRequestsPerConnection;
    return !this.closing && (max === 0 || requests < max);
  }

  remove(connection: Http1Connection): void {
    const index = this.idle.lastIndexOf(connection);
    if (index >= 0) this.idle.splice(index, 1);
    this.connections--;
    this.afterConnectionGone();
  }

  /** Closes idle connections now and the others once their response is over; resolves when all are closed. */
  close(): Promise<void> {
    this.closing = true;
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    for (const connection of this.idle.splice(0)) connection.close();
    if (this.connections === 0) return Promise.resolve();
    return new Promise((resolve) => (this.onClosed = resolve));
  }

  /** Closes the connections idle for `idleTimeoutMs`, and waits for the next to be. */
  closeIdleConnections(): void {
    this.idleTimer = undefined;
    const timeout = this.settings.idleTimeoutMs;
    const now = performance.now();
    const idle = this.idle;
    while (idle.length > 0 && now - idle[0]!.idleSince >= timeout) idle.shift()!.close();
    if (idle.length > 0) this.armIdleTimer(idle[0]!.idleSince + timeout - now);
  }

  private armIdleTimer(delayMs: number): void {
    this.idleTimer = setTimeout(onIdleTimer, delayMs, this);
    this.idleTimer.unref();
  }

  /** Opens connections for the requests that no connection being opened will serve, as far as limits allow. */
  private connectForPending(): void {
    while (this.pending.length > this.connecting && this.connections < this.settings.maxConnections) {
      if (this.connections > 0 && !this.source.mayOpenConnection()) return;
      this.connections++;
      this.connecting++;
      this.source.openConnection((error, socket) => {
        this.connecting--;
        if (error === null) this.onConnected(socket);
        else this.onConnectFailed(error);
      });
    }
  }

  private onConnected(socket: Socket): void {
    const connection = new Http1Connection(this, socket);
    if (this.pending.length === 0 && this.closing) connection.close();
    else this.release(connection);
  }

  /** As Envoy does, every pending request fails with the connection attempt; retries queue anew. */
  private onConnectFailed(error: ConnectError): void {
    this.connections--;
    const failed = this.pending;
    this.pending = [];
    for (const request of failed) request.handler.onResponseError(UNCONNECTED, error);
    this.afterConnectionGone();
  }

  /**
   * A connection closed or never opened. Requests still waiting get one, even from a closing pool, which is
   * closed once none is left.
   */
  private afterConnectionGone(): void {
    this.connectForPending();
    if (this.connections === 0 && this.onClosed !== undefined) this.onClosed();
  }
}
