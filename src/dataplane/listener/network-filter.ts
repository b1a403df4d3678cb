/**
 * Network filters that are not terminal: the filters of a filter chain's `filters` before the terminal one
 * (`http_connection_manager`, `tcp_proxy`). Each is compiled once per chain; for every connection the chain
 * accepts, after TLS termination, they run in order, and the first one that answers `close` closes it before the
 * terminal filter sees it. Reading and writing bytes (Envoy's `onData`) is not part of the API yet.
 */
import type { Socket } from 'node:net';
import type { ConfigError } from '../../config/errors.js';
import type { StatsStore } from '../../stats/store.js';
import type { Logger } from '../../util/logger.js';
import type { Runtime } from '../runtime/runtime.js';
import type { ConnectionProtocols } from './listener-filter.js';

export type NetworkFilterStatus = 'continue' | 'close';

/** One filter's compiled config in one filter chain. */
export interface NetworkFilter {
  /**
   * A new connection: `socket` is the TLSSocket on chains that terminate TLS (its handshake done), `protocols`
   * what the listener filters found (undefined without listener filters).
   */
  onNewConnection(socket: Socket, protocols: ConnectionProtocols | undefined): NetworkFilterStatus;
  /** The chain is gone: give back stat scopes. */
  release(): void;
}

/** Services a factory compiles against. */
export interface NetworkFilterContext {
  readonly stats: StatsStore;
  readonly runtime: Runtime;
  readonly log: Logger;
}

export interface NetworkFilterFactory {
  /** Envoy's extension name, e.g. `envoy.filters.network.rbac`. */
  readonly name: string;
  /** Type of the filter's `typed_config`. */
  readonly configType: string;
  create(config: unknown, context: NetworkFilterContext, path: string, errors: ConfigError[]): NetworkFilter;
}

/** The non-terminal network filter extensions the program is composed with, by config type. */
export class NetworkFilterRegistry {
  private readonly byConfigType: ReadonlyMap<string, NetworkFilterFactory>;

  constructor(factories: readonly NetworkFilterFactory[]) {
    this.byConfigType = new Map(factories.map((f) => [f.configType, f]));
  }

  byConfig(typeName: string): NetworkFilterFactory | undefined {
    return this.byConfigType.get(typeName);
  }
}
