/**
 * `envoy.filters.network.local_ratelimit` before a tcp_proxy, through real sockets: connections past the bucket
 * are closed before the upstream sees them, and counted.
 */
import assert from 'node:assert/strict';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { tcpExchange } from '../support/streams.js';
import { type RunningPortico, startPortico, stat } from '../support/portico.js';


describe('network local rate limit filter', () => {
  let echo: Server;
  let upstreamConnections = 0;
  let gw: RunningPortico;

  before(async () => {
    echo = createServer({ allowHalfOpen: true }, (socket) => {
      upstreamConnections++;
      socket.on('error', () => socket.destroy());
      socket.pipe(socket);
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    gw = await startPortico(`static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit
          stat_prefix: tcp_edge
          token_bucket: { max_tokens: 2, tokens_per_fill: 2, fill_interval: 3600s }
      - name: envoy.filters.network.tcp_proxy
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: tcp, cluster: echo }
  clusters:
  - name: echo
    connect_timeout: 1s
    load_assignment: { cluster_name: echo, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${(echo.address() as AddressInfo).port} } } } }] }] }
`);
  });

  after(async () => {
    await gw.close();
    await new Promise((resolve) => echo.close(resolve));
  });

  it('proxies max_tokens connections, then closes the next before it reaches the upstream', async () => {
    assert.equal(await tcpExchange(gw.port()), 'hello\n');
    assert.equal(await tcpExchange(gw.port()), 'hello\n');
    assert.equal(await tcpExchange(gw.port()), '');
    assert.equal(upstreamConnections, 2);
    assert.equal(stat(gw, 'local_ratelimit.tcp_edge.rate_limited'), 1);
  });
});
