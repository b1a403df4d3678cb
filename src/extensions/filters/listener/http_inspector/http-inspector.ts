/** `envoy.filters.listener.http_inspector`: the application protocol of plaintext connections, as Envoy detects it. */
import { defineStats, type StatScope, type StatsStore } from '../../../../stats/store.js';
import type { ConnectionProtocols, InspectStatus, ListenerFilter, ListenerFilterFactory } from '../../../../dataplane/listener/listener-filter.js';
import { detectHttp } from './detect.js';

/** At the root scope, shared by every listener, as Envoy's are. */
export const HTTP_INSPECTOR_STATS = defineStats({
  counters: ['http10_found', 'http11_found', 'http2_found', 'http_not_found'],
  gauges: [],
  histograms: [],
});
const C = HTTP_INSPECTOR_STATS.c;

class HttpInspector implements ListenerFilter {
  private readonly scope: StatScope;

  constructor(private readonly stats: StatsStore) {
    this.scope = stats.scope(HTTP_INSPECTOR_STATS, 'http_inspector.');
  }

  inspect(data: Buffer, connection: ConnectionProtocols): InspectStatus {
    // After a TLS inspector found TLS, the bytes are a ClientHello: HTTP is for the chain to negotiate by ALPN.
    if (connection.transportProtocol === 'tls') return 'done';
    const detected = detectHttp(data);
    const counters = this.scope.counters;
    switch (detected) {
      case 'incomplete':
        return 'more';
      case 'not_http':
        counters[C.http_not_found]++;
        return 'done';
      case 'http/1.0':
        counters[C.http10_found]++;
        break;
      case 'http/1.1':
        counters[C.http11_found]++;
        break;
      case 'h2c':
        counters[C.http2_found]++;
        break;
    }
    connection.applicationProtocols = [detected];
    return 'done';
  }

  close(): void {
    this.stats.release(this.scope);
  }
}

export const HTTP_INSPECTOR: ListenerFilterFactory = {
  name: 'envoy.filters.listener.http_inspector',
  create: (stats) => new HttpInspector(stats),
};
