/**
 * `auto_config` over TLS: the host's first connection offers `h2,http/1.1` by ALPN, and what the upstream picks
 * decides the pool (HTTP/2 or HTTP/1.1) that takes that connection and every request after it. Until then requests
 * wait here; a failed attempt fails them, as a pool's failed connection attempt does, and the next request tries
 * again. Later connections offer only the chosen protocol.
 */
import type { Socket } from 'node:net';
import { type Host, negotiatedHttp2 } from './host.js';
import type { Http1ConnectionPool } from './http1/pool.js';
import type { Http2ConnectionPool } from './http2/pool.js';
import {
  type ConnectError,
  UNCONNECTED,
  type UpstreamConnectionPool,
  type UpstreamRequestHead,
  type UpstreamStreamHandler,
} from './pool-types.js';

interface PendingRequest {
  head: UpstreamRequestHead;
  handler: UpstreamStreamHandler;
}

export class AlpnConnectionPool implements UpstreamConnectionPool {
  private pool: Http1ConnectionPool | Http2ConnectionPool | undefined;
  private pending: PendingRequest[] = [];
  private probing = false;
  private closing = false;
  private onClosed: (() => void) | undefined;

  constructor(private readonly host: Host) {}

  dispatch(head: UpstreamRequestHead, handler: UpstreamStreamHandler): void {
    if (this.pool !== undefined) {
      this.pool.dispatch(head, handler);
      return;
    }
    this.pending.push({ head, handler });
    if (this.probing) return;
    this.probing = true;
    this.host.openConnection((error, socket) => {
      this.probing = false;
      if (error === null) this.onNegotiated(socket);
      else this.onProbeFailed(error);
    }, 'alpn');
  }

  hasFreeStream(): boolean {
    return this.pool?.hasFreeStream() ?? false;
  }

  close(): Promise<void> {
    this.closing = true;
    if (this.pool !== undefined) return this.pool.close();
    if (!this.probing) return Promise.resolve();
    return new Promise((resolve) => (this.onClosed = resolve));
  }

  private onNegotiated(socket: Socket): void {
    const pool = this.host.protocolPool(negotiatedHttp2(socket) ? 'http2' : 'http1');
    this.pool = pool;
    pool.adopt(socket);
    const waiting = this.pending;
    this.pending = [];
    for (const request of waiting) pool.dispatch(request.head, request.handler);
    if (this.closing) void pool.close().then(this.onClosed);
  }

  private onProbeFailed(error: ConnectError): void {
    const failed = this.pending;
    this.pending = [];
    for (const request of failed) request.handler.onResponseError(UNCONNECTED, error);
    this.onClosed?.();
  }
}
