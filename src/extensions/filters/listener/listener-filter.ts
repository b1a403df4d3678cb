/**
 * Listener filters: they look at a new connection's first bytes before a filter chain is chosen, without
 * consuming them, and record what they learn (transport protocol, SNI, ALPN) for filter chain matching.
 */
import type { StatsStore } from '../../../stats/store.js';

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
