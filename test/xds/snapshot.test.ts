/** The snapshot's per-node listener ports (node metadata `listener_port`) on a gateway of several listeners. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SnapshotBuilder } from '../../src/controlplane/xds/snapshot.js';
import { anyToJson } from '../../src/grpc/proto-json.js';

const listener = (port: number) => ({
  name: `ambassador-listener-${port}`,
  address: { socket_address: { address: '0.0.0.0', port_value: port } },
  filter_chains: [{ filters: [{ name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', stat_prefix: 'tcp', cluster: 'c' } }] }],
});

describe('xDS snapshot listener ports', () => {
  it('moves the first listener to the node port and the others by as much, keeping a port that would leave the range', () => {
    const snapshot = new SnapshotBuilder().build('1', [listener(8080), listener(8443), listener(1000)], []);
    const ports = [...snapshot.listenersOnPort(9080).values()].map((r) => {
      const json = anyToJson(r.any) as { address: { socket_address: { port_value: number } } };
      return `${r.name} ${json.address.socket_address.port_value}`;
    });
    assert.deepEqual(ports, ['ambassador-listener-8080 9080', 'ambassador-listener-8443 9443', 'ambassador-listener-1000 2000']);
    const low = [...snapshot.listenersOnPort(80).values()].map((r) => (anyToJson(r.any) as { address: { socket_address: { port_value: number } } }).address.socket_address.port_value);
    assert.deepEqual(low, [80, 443, 1000]);
  });
});
