/** `envoy.filters.listener.tls_inspector`: TLS detection, SNI and ALPN from the ClientHello, as Envoy does it. */
import { defineStats, type StatScope, type StatsStore } from '../../../../stats/store.js';
import type { ConnectionProtocols, InspectStatus, ListenerFilter, ListenerFilterFactory } from '../../../../dataplane/listener/listener-filter.js';
import { parseClientHello } from './client-hello.js';

/** At the root scope, shared by every listener, as Envoy's are. */
export const TLS_INSPECTOR_STATS = defineStats({
  counters: ['client_hello_too_large', 'tls_found', 'tls_not_found', 'alpn_found', 'alpn_not_found', 'sni_found', 'sni_not_found'],
  gauges: [],
  histograms: [],
});
const C = TLS_INSPECTOR_STATS.c;

/** The most Envoy's TLS inspector reads of a ClientHello. */
const MAX_CLIENT_HELLO = 64 * 1024;

class TlsInspector implements ListenerFilter {
  private readonly scope: StatScope;

  constructor(private readonly stats: StatsStore) {
    this.scope = stats.scope(TLS_INSPECTOR_STATS, 'tls_inspector.');
  }

  inspect(data: Buffer, connection: ConnectionProtocols): InspectStatus {
    const hello = parseClientHello(data, MAX_CLIENT_HELLO);
    const counters = this.scope.counters;
    switch (hello.kind) {
      case 'incomplete':
        return 'more';
      case 'too_large':
        counters[C.client_hello_too_large]++;
        return 'close';
      case 'not_tls':
        counters[C.tls_not_found]++;
        return 'done';
      case 'tls':
        counters[C.tls_found]++;
        counters[hello.serverName ? C.sni_found : C.sni_not_found]++;
        counters[hello.alpn.length > 0 ? C.alpn_found : C.alpn_not_found]++;
        connection.transportProtocol = 'tls';
        connection.serverName = hello.serverName.toLowerCase();
        connection.applicationProtocols = hello.alpn;
        return 'done';
    }
  }

  close(): void {
    this.stats.release(this.scope);
  }
}

export const TLS_INSPECTOR: ListenerFilterFactory = {
  name: 'envoy.filters.listener.tls_inspector',
  create: (stats) => new TlsInspector(stats),
};
