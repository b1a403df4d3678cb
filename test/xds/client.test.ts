/**
 * The xDS client's warming, in-process against the test's own ADS server: a cluster whose endpoints never come
 * is served without them once the fetch timeout is over, and takes its endpoints when they arrive.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEchoServer, type EchoServer } from '../../src/echo/echo-server.js';
import { startXdsDataPlane, type XdsDataPlane } from '../../src/server/xds-data-plane.js';
import { createLogger } from '../../src/util/logger.js';
import { FakeXdsServer, packAny, TYPES } from '../support/fake-xds-server.js';
import { freePort } from '../support/ports.js';
import { httpRequest } from '../support/upstreams.js';

describe('xDS client warming', () => {
  const fake = new FakeXdsServer();
  let echo: EchoServer;
  let plane: XdsDataPlane;
  let listenerPort: number;

  before(async () => {
    echo = await startEchoServer({ name: 'warm', host: '127.0.0.1', port: 0 });
    listenerPort = await freePort();
    const xdsPort = await fake.start(0);
    const hcm = packAny(TYPES.hcm, {
      stat_prefix: 'warm',
      route_config: {
        name: 'inline',
        virtual_hosts: [
          {
            name: 'all',
            domains: ['*'],
            routes: [
              { match: { prefix: '/direct' }, direct_response: { status: 200, body: { inline_string: 'direct' } } },
              { match: { prefix: '/' }, route: { cluster: 'eds' } },
            ],
          },
        ],
      },
      http_filters: [{ name: 'envoy.filters.http.router', typed_config: packAny(TYPES.router, {}) }],
    });
    fake.serve('1', {
      [TYPES.listener]: [
        {
          name: 'warm',
          any: packAny(TYPES.listener, {
            name: 'warm',
            address: { socket_address: { address: '127.0.0.1', port_value: listenerPort } },
            filter_chains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm }] }],
          }),
        },
      ],
      [TYPES.cluster]: [{ name: 'eds', any: packAny(TYPES.cluster, { name: 'eds', type: 'EDS', eds_cluster_config: { eds_config: { ads: {} } } }) }],
    });
    plane = await startXdsDataPlane(
      {
        node: { id: 'warming', cluster: 'tests' },
        dynamic_resources: {
          ads_config: { api_type: 'GRPC', grpc_services: [{ google_grpc: { target_uri: `127.0.0.1:${xdsPort}`, stat_prefix: 'ads' } }] },
          cds_config: { ads: {}, initial_fetch_timeout: '0.5s' },
          lds_config: { ads: {}, initial_fetch_timeout: '0.5s' },
        },
      },
      createLogger('off'),
      1000,
    );
  });

  after(async () => {
    await plane?.close(0);
    fake.stop();
    await echo?.close();
  });

  it('serves a cluster without its endpoints once the fetch timeout is over', async () => {
    const direct = await httpRequest(`http://127.0.0.1:${listenerPort}/direct`);
    assert.deepEqual([direct.status, direct.body], [200, 'direct']);
    assert.equal((await httpRequest(`http://127.0.0.1:${listenerPort}/app`)).status, 503);
    assert.ok(fake.requests.some((r) => r.type_url === TYPES.endpoint && r.resource_names.includes('eds')), 'the client asked for the endpoints');
  });

  it('takes the endpoints when they arrive', async () => {
    fake.serve('2', {
      [TYPES.endpoint]: [
        {
          name: 'eds',
          any: packAny(TYPES.endpoint, {
            cluster_name: 'eds',
            endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: echo.port } } } }] }],
          }),
        },
      ],
    });
    const deadline = Date.now() + 10_000;
    let status = 0;
    while (Date.now() < deadline && status !== 200) {
      status = (await httpRequest(`http://127.0.0.1:${listenerPort}/app`)).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(status, 200);
  });
});
