/**
 * `envoy.filters.network.rbac`: allows or closes each connection of a filter chain by its `rules`, after
 * evaluating its `shadow_rules` (counted only: a connection has no dynamic metadata to record them in). Policies
 * see the connection's addresses, its SNI and its TLS peer; `header`, `url_path` and `metadata` match nothing at
 * L4. Envoy decides ONE_TIME_ON_FIRST_BYTE when the first byte arrives; Portico decides when the connection is
 * handed to the chain (after the TLS handshake), which is the same decision without the terminal filter having
 * started on a connection that is then closed. Stats: `<stat_prefix>.rbac.allowed`, as Envoy's.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { envoy } from '../../../../generated/envoy.js';
import { childPath, type ConfigError } from '../../../../config/errors.js';
import { plainAddress } from '../../../../dataplane/http/forwarded.js';
import type { ConnectionProtocols } from '../../../../dataplane/listener/listener-filter.js';
import type { NetworkFilter, NetworkFilterContext, NetworkFilterFactory, NetworkFilterStatus } from '../../../../dataplane/listener/network-filter.js';
import type { RbacSubject } from '../../common/rbac/engine.js';
import { RbacEngines, RbacReporter } from '../../common/rbac/rbac-config.js';

type RbacConfig = envoy.extensions.filters.network.rbac.v3.RBAC;

/** What the policies see of one connection. */
class ConnectionSubject implements RbacSubject {
  readonly info: RbacSubject['info'];
  readonly head = undefined;

  constructor(
    readonly connection: Socket,
    protocols: ConnectionProtocols | undefined,
  ) {
    const remote = plainAddress(connection.remoteAddress);
    const sni = protocols?.serverName || (connection as TLSSocket).servername || '';
    this.info = {
      downstreamRemoteAddress: remote,
      downstreamDirectRemoteAddress: remote,
      downstreamLocalAddress: plainAddress(connection.localAddress),
      downstreamLocalPort: connection.localPort ?? 0,
      requestedServerName: sni,
      dynamicMetadata: undefined,
    };
  }
}

class NetworkRbacFilter implements NetworkFilter {
  constructor(
    private readonly engines: RbacEngines,
    private readonly reporter: RbacReporter,
  ) {}

  onNewConnection(socket: Socket, protocols: ConnectionProtocols | undefined): NetworkFilterStatus {
    const subject = new ConnectionSubject(socket, protocols);
    this.reporter.shadow(this.engines, subject);
    return this.reporter.enforce(this.engines, subject) === undefined ? 'continue' : 'close';
  }

  release(): void {
    this.reporter.release();
  }
}

export const NETWORK_RBAC_FILTER_FACTORY: NetworkFilterFactory = {
  name: 'envoy.filters.network.rbac',
  configType: 'envoy.extensions.filters.network.rbac.v3.RBAC',

  create(config: unknown, context: NetworkFilterContext, path: string, errors: ConfigError[]): NetworkFilter {
    const c = config as RbacConfig;
    if (c.enforcement_type === 'CONTINUOUS') {
      errors.push({ code: 'unsupported_field', path: childPath(path, 'enforcement_type'), message: 'enforcement_type CONTINUOUS is not supported' });
    }
    // The schema requires stat_prefix; `matcher` and `shadow_matcher` are refused by name when the configuration
    // is checked.
    const reporter = new RbacReporter(context.stats, c.stat_prefix ?? '', '', c.shadow_rules_stat_prefix ?? '', 'envoy.filters.network.rbac');
    return new NetworkRbacFilter(new RbacEngines(c, path, errors), reporter);
  },
};
