/**
 * A listener's `listener_filters`, run on each new connection before its filter chain is chosen. The filters
 * see the connection's first bytes; those bytes are put back into the socket afterwards, so the chosen chain
 * (TLS termination, a connection manager, a TCP proxy) reads the stream from its first byte.
 */
import type { Socket } from 'node:net';
import type { envoy } from '../../generated/envoy.js';
import type { ConfigError } from '../../config/errors.js';
import { typeNameFromUrl } from '../../config/extensions.js';
import type { StatScope, StatsStore } from '../../stats/store.js';
import type { ConnectionProtocols, ListenerFilter, ListenerFilterFactory, ListenerFilterRegistry } from './listener-filter.js';
import { LISTENER_STATS } from './stats.js';

type ListenerConfig = envoy.config.listener.v3.Listener;

const L = LISTENER_STATS.c;
const LG = LISTENER_STATS.g;
/** Envoy's default `listener_filters_timeout`. */
const DEFAULT_TIMEOUT_MS = 15_000;
const EMPTY = Buffer.alloc(0);

export class ListenerFilters {
  private constructor(
    private readonly filters: readonly ListenerFilter[],
    /** 0: no timeout. */
    private readonly timeoutMs: number,
    private readonly continueOnTimeout: boolean,
    private readonly stats: StatScope,
  ) {}

  /**
   * The listener's filters, or undefined when it has none, so that accepting a connection costs nothing more.
   * `injectTlsInspector` adds a TLS inspector the chains need but the configuration lacks, as Envoy does.
   */
  static compile(
    config: ListenerConfig,
    path: string,
    errors: ConfigError[],
    registry: ListenerFilterRegistry,
    injectTlsInspector: boolean,
    stats: StatsStore,
    listenerStats: StatScope,
  ): ListenerFilters | undefined {
    const factories: ListenerFilterFactory[] = [];
    (config.listener_filters ?? []).forEach((filter, i) => {
      const type = filter.typed_config ? typeNameFromUrl(filter.typed_config.type_url) : undefined;
      const factory = type === undefined ? registry.byName(filter.name ?? '') : registry.byConfig(type);
      if (factory === undefined) {
        errors.push({ code: 'unsupported_extension', path: `${path}.listener_filters[${i}]`, message: `unsupported extension ${filter.name ?? type ?? ''}` });
      } else {
        factories.push(factory);
      }
    });
    if (injectTlsInspector) factories.push(registry.tlsInspector);
    if (factories.length === 0) return undefined;
    const filters = factories.map((factory) => factory.create(stats));
    const timeoutMs = config.listener_filters_timeout ?? DEFAULT_TIMEOUT_MS;
    return new ListenerFilters(filters, timeoutMs, config.continue_on_listener_filters_timeout ?? false, listenerStats);
  }

  /** Gives back the filters' stats scopes. */
  close(): void {
    for (const filter of this.filters) filter.close();
  }

  /**
   * Runs the filters on a new connection; calls `done` with what they found once each is done, or closes the
   * connection (a filter asked to, the peer closed first, the timeout passed).
   */
  run(socket: Socket, done: (protocols: ConnectionProtocols) => void): void {
    const protocols: ConnectionProtocols = { serverName: '', transportProtocol: '', applicationProtocols: [] };
    const { filters, stats } = this;
    stats.gauges[LG.downstream_pre_cx_active]++;
    let index = 0;
    let received: Buffer = EMPTY;
    let timer: NodeJS.Timeout | undefined;
    const cleanUp = (): void => {
      stats.gauges[LG.downstream_pre_cx_active]--;
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('close', cleanUp);
    };
    const finish = (): void => {
      cleanUp();
      // Without a 'readable' listener (removed above) the socket is back to the state of a new one: it starts
      // flowing when the chain listens for data or pipes it.
      if (received.length > 0) socket.unshift(received);
      // Envoy's value when no listener filter recognised the transport.
      if (protocols.transportProtocol === '') protocols.transportProtocol = 'raw_buffer';
      done(protocols);
    };
    /** Runs the filters not done yet on what has arrived; true when the connection has been handed on or closed. */
    const step = (): boolean => {
      for (; index < filters.length; index++) {
        const status = filters[index]!.inspect(received, protocols);
        if (status === 'more') return false;
        if (status === 'close') {
          cleanUp();
          socket.destroy();
          return true;
        }
      }
      finish();
      return true;
    };
    // Reading with 'readable' rather than 'data' leaves no flowing state behind for the chain to undo.
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
        if (step()) return;
      }
    };
    const onEnd = (): void => {
      cleanUp();
      socket.destroy();
    };
    if (step()) return;
    socket.on('readable', onReadable);
    socket.once('end', onEnd);
    socket.once('close', cleanUp);
    if (this.timeoutMs > 0) {
      timer = setTimeout(() => {
        stats.counters[L.downstream_pre_cx_timeout]++;
        if (this.continueOnTimeout) {
          finish();
        } else {
          cleanUp();
          socket.destroy();
        }
      }, this.timeoutMs);
    }
  }
}
