/**
 * HTTP/1.1 upgrades (WebSocket and any other `Upgrade:` protocol), as Envoy proxies them: which upgrade types
 * a connection manager and a route allow, and the tunnel that carries raw bytes both ways once the upstream
 * answered `101 Switching Protocols`. The downstream codec answers a refused upgrade and closes the connection.
 *
 * The request itself takes the normal path (header sanitising, routing, rewrites, load balancing, circuit
 * breakers, retries before the upstream answers): the connection manager only asks `upgradeAllowed` after route
 * selection and dispatches the request with an `upgrade` token; the host's connection pool hands over the
 * upstream socket on a 101 (plain TCP or the cluster's TLS).
 */
import type { Socket } from 'node:net';
import type { envoy } from '../../generated/envoy.js';
import type { ConfigError } from '../../config/errors.js';
import { splice } from '../tcp/splice.js';

type HcmUpgradeConfig = envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.UpgradeConfig;
type RouteUpgradeConfig = envoy.config.route.v3.RouteAction.UpgradeConfig;

/** `upgrade_configs` compiled: lower-case upgrade type → enabled. */
export type UpgradeMap = ReadonlyMap<string, boolean>;

/**
 * Compiles the `upgrade_configs` of a connection manager or of a route. Types compare case-insensitively;
 * a type listed twice is an error (as in Envoy), and so is CONNECT, which Portico does not proxy.
 */
export function compileUpgradeConfigs(
  configs: readonly (HcmUpgradeConfig | RouteUpgradeConfig)[] | undefined,
  path: string,
  errors: ConfigError[],
): UpgradeMap | undefined {
  if (configs === undefined || configs.length === 0) return undefined;
  const map = new Map<string, boolean>();
  configs.forEach((config, i) => {
    const type = (config.upgrade_type ?? '').toLowerCase();
    const at = `${path}[${i}].upgrade_type`;
    if (type === '') errors.push({ code: 'missing_required', path: at, message: 'an upgrade config needs an upgrade_type' });
    else if (type === 'connect') errors.push({ code: 'unsupported_field', path: at, message: 'CONNECT upgrades are not supported' });
    else if (map.has(type)) errors.push({ code: 'duplicate_name', path: at, message: `upgrade type ${config.upgrade_type} is listed twice` });
    else map.set(type, config.enabled ?? true);
  });
  return map;
}

/**
 * Envoy's rule: a route that lists the type decides (enabled or not); otherwise the connection manager's
 * `upgrade_configs` do. `route` is undefined when no route matched or the route is not a forward.
 */
export function upgradeAllowed(type: string, hcm: UpgradeMap | undefined, route: UpgradeMap | undefined): boolean {
  const lower = type.toLowerCase();
  return route?.get(lower) ?? hcm?.get(lower) ?? false;
}

/** The upstream request a tunnel belongs to, which ends when the upstream connection closes. */
export interface TunnelOwner {
  complete(): void;
}

const kTunnel = Symbol('portico.tunnel');
type TunnelSocket = Socket & { [kTunnel]?: Tunnel };

/**
 * An upgraded connection: the downstream and upstream sockets spliced together (see splice.ts) until both
 * sides are done. The upstream attempt lasts as long as the upstream connection, as Envoy's upstream request.
 */
export class Tunnel {
  /** Downstream byte counts when the tunnel opened, so that the access log counts tunnel bytes only. */
  private readonly receivedBefore: number;
  private readonly sentBefore: number;

  constructor(
    private readonly downstream: Socket,
    upstream: Socket,
    /** Bytes the client sent after its request head, read along with it: the first upstream-bound bytes. */
    downstreamHead: Buffer,
    private readonly attempt: TunnelOwner,
  ) {
    this.receivedBefore = downstream.bytesRead - downstreamHead.length;
    this.sentBefore = downstream.bytesWritten;
    upstream.setNoDelay(true);
    (upstream as TunnelSocket)[kTunnel] = this;
    upstream.once('close', onTunnelUpstreamClose);
    if (downstreamHead.length > 0) upstream.write(downstreamHead);
    splice(downstream, upstream);
  }

  /** Bytes the client sent through the tunnel (%BYTES_RECEIVED%). */
  get bytesReceived(): number {
    return this.downstream.bytesRead - this.receivedBefore;
  }

  /** Bytes sent to the client through the tunnel, the 101 head excluded (%BYTES_SENT%). */
  get bytesSent(): number {
    return this.downstream.bytesWritten - this.sentBefore;
  }

  onUpstreamClose(): void {
    this.attempt.complete();
  }
}

function onTunnelUpstreamClose(this: TunnelSocket): void {
  this[kTunnel]?.onUpstreamClose();
}
