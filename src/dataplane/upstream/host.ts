import { isIP } from 'node:net';
import { Pool, buildConnector } from 'undici';
import type { ClusterSettings } from './cluster-settings.js';

/**
 * One upstream endpoint: an address to connect to, its load-balancing weight and priority, and a keep-alive
 * connection pool created on first use. A host outlives configuration changes that keep its address, so its
 * pooled connections survive them too.
 */
function hostKey(address: string, port: number): string {
  return isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

export class Host {
  /** `ip:port`, as Envoy prints upstream hosts (`%UPSTREAM_HOST%`, `/clusters`). */
  key: string;
  /** Requests dispatched to this host and not yet complete (Envoy's `rq_active`), for LEAST_REQUEST. */
  activeRequests = 0;
  private pool: Pool | undefined;

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
    /**
     * False for endpoints configured `UNHEALTHY`, `DRAINING` or `TIMEOUT`. Whatever changes it must then call
     * the cluster's `refreshLoadBalancing()`.
     */
    public healthy: boolean,
    private readonly settings: ClusterSettings,
  ) {
    this.key = hostKey(address, port);
  }

  /** Points new connections at another address (LOGICAL_DNS re-resolution); pooled ones stay where they are. */
  moveTo(address: string): void {
    this.address = address;
    this.key = hostKey(address, this.port);
  }

  /**
   * With `max_requests_per_connection: 1` every request must close its connection (`reset` on dispatch):
   * undici's `maxRequestsPerClient` cannot express 1.
   */
  get closeAfterEachRequest(): boolean {
    return this.settings.maxRequestsPerConnection === 1;
  }

  /** The pool requests to this host are dispatched on. */
  dispatcher(): Pool {
    if (this.pool === undefined) this.pool = this.createPool();
    return this.pool;
  }

  /** Closes pooled connections once their requests finish. */
  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    if (pool) await pool.close().catch(() => undefined);
  }

  private createPool(): Pool {
    const settings = this.settings;
    const connector = buildConnector({ timeout: settings.connectTimeoutMs });
    // Connect to whatever address the host has now: LOGICAL_DNS re-resolution moves new connections only.
    const connect: buildConnector.connector = (options, callback) =>
      connector({ ...options, hostname: this.address, port: String(this.port) }, callback);
    return new Pool(`http://${this.key}`, {
      connections: settings.maxConnections,
      pipelining: 1,
      connect,
      keepAliveTimeout: settings.idleTimeoutMs || 2_147_483_647,
      keepAliveMaxTimeout: settings.idleTimeoutMs || 2_147_483_647,
      // Timeouts are the router's (route timeout, idle timeout), as in Envoy.
      headersTimeout: 0,
      bodyTimeout: 0,
      maxHeaderSize: 60 * 1024,
      // undici lets one request more than maxRequestsPerClient through a connection (it marks the connection
      // for closing once its counter already equals the limit), so Envoy's N is undici's N - 1.
      maxRequestsPerClient: settings.maxRequestsPerConnection > 1 ? settings.maxRequestsPerConnection - 1 : undefined,
      strictContentLength: true,
    });
  }
}
