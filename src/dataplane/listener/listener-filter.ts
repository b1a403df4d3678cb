/**
 * Listener filters: they look at a new connection's first bytes before a filter chain is chosen, without
 * consuming them, and record what they learn (transport protocol, SNI, ALPN) for filter chain matching.
 */
import type { StatsStore } from '../../stats/store.js';

/** What filter chain matching knows about a connection beyond its addresses. */
export interface ConnectionProtocols {
  /** The SNI of a TLS ClientHello, lower-cased; empty when none was seen. */
  serverName: string;
  /** `tls` or `raw_buffer` (Envoy's value when nothing detected the protocol). */
  transportProtocol: string;
  /** ALPN protocols the client offered, or the protocol the HTTP inspector detected, in the client's order. */
  applicationProtocols: string[];
}

/** `done`: the filter has what it needs; `more`: it needs more bytes; `close`: the connection must be closed. */
export type InspectStatus = 'done' | 'more' | 'close';

export interface ListenerFilter {
  /**
   * Called with every byte received so far (none on the first call), until it returns something else than
   * `more`. It must not keep `data`.
   */
  inspect(data: Buffer, connection: ConnectionProtocols): InspectStatus;
  /** Gives back what the filter holds (its stats scope). */
  close(): void;
}

export interface ListenerFilterFactory {
  /** Envoy's extension name, which also identifies a filter configured by `name` alone. */
  name: string;
  /** Neither inspector has options Portico supports, so there is no config to pass. */
  create(stats: StatsStore): ListenerFilter;
}

/**
 * The listener filter extensions the program is composed with, by config type. `tlsInspector` is the one Envoy
 * adds to a listener whose chains match on what only a ClientHello tells (SNI, ALPN) but that configures none.
 */
export class ListenerFilterRegistry {
  private readonly byType: ReadonlyMap<string, ListenerFilterFactory>;

  constructor(
    factories: ReadonlyMap<string, ListenerFilterFactory>,
    readonly tlsInspector: ListenerFilterFactory,
    readonly tlsInspectorType: string,
  ) {
    this.byType = factories;
  }

  byConfig(typeName: string): ListenerFilterFactory | undefined {
    return this.byType.get(typeName);
  }

  /** A filter configured by its name alone (no `typed_config`), as Envoy still accepts. */
  byName(name: string): ListenerFilterFactory | undefined {
    for (const factory of this.byType.values()) if (factory.name === name) return factory;
    return undefined;
  }
}
