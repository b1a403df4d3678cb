/**
 * `grpc_health_check` against a real `@grpc/grpc-js` server answering `grpc.health.v1.Health/Check`: a host is
 * healthy while it says SERVING for the service asked about, and fails when it says NOT_SERVING.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import { type RunningPortico, simpleBootstrap, startPortico, stat } from '../support/portico.js';
import { startGrpcServer } from '../support/grpc.js';
import { waitFor } from '../support/wait.js';

/** HealthCheckResponse { status } as bytes: field 1, varint. */
const response = (status: number): Buffer => Buffer.from([0x08, status]);

describe('gRPC health checks', () => {
  let server: grpc.Server;
  let gw: RunningPortico;
  let serving = true;
  const asked: string[] = [];

  before(async () => {
    let port: number;
    ({ server, port } = await startGrpcServer({
      Check: {
        path: '/grpc.health.v1.Health/Check',
        handler: (call, callback) => {
          // HealthCheckRequest { service }: field 1, length-delimited.
          asked.push(call.request.length > 2 ? call.request.subarray(2).toString() : '');
          callback(null, response(serving ? 1 : 2));
        },
      },
    }));
    gw = await startPortico(
      simpleBootstrap({
        routes: `- match: { prefix: "/" }\n  route: { cluster: c }`,
        clusters: `- name: c
  connect_timeout: 1s
  health_checks:
  - timeout: 1s
    interval: 0.05s
    no_traffic_interval: 0.05s
    unhealthy_threshold: 1
    healthy_threshold: 1
    grpc_health_check: { service_name: shop.Cart }
  load_assignment:
    cluster_name: c
    endpoints:
    - lb_endpoints:
      - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${port} } } }`,
      }),
    );
  });

  after(async () => {
    await gw.close();
    server.forceShutdown();
  });

  it('SERVING keeps the host healthy; NOT_SERVING fails it; SERVING again brings it back', async () => {
    await waitFor(() => (stat(gw, 'cluster.c.health_check.success') ?? 0) >= 2, 'checks succeed');
    assert.equal(stat(gw, 'cluster.c.membership_healthy'), 1);
    assert.equal(asked[0], 'shop.Cart');
    serving = false;
    await waitFor(() => stat(gw, 'cluster.c.membership_healthy') === 0, 'the host fails its check');
    assert.ok((stat(gw, 'cluster.c.health_check.failure') ?? 0) >= 1);
    serving = true;
    await waitFor(() => stat(gw, 'cluster.c.membership_healthy') === 1, 'the host is back');
  });
});
