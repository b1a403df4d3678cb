/**
 * `portico run` with `dynamic_resources`, as a process:
 * - Envoy's dynamic-config-cp example against an ADS server the test writes (not Portico's own): nothing served
 *   before the control plane is reachable, version 1 served once it is, kept while it is away, version 2 after;
 *   an invalid listener refused with a NACK that names the problem, the old configuration serving on.
 * - Envoy's dynamic-config-fs example: discovery files, changed by an atomic rename.
 * - Data planes made by `portico bootstrap` (incremental xDS) on one machine, each on its own listener port,
 *   following `portico start`'s Mappings.
 * The corpus examples skip when ../shared is absent.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import YAML from 'yaml';
import { startEchoServer, type EchoServer } from '../../src/echo/echo-server.js';
import { CORPUS_FOUND, corpusPath, SKIP_MESSAGE } from '../conformance/harness.js';
import { FakeXdsServer, packAny, TYPES } from '../support/fake-xds-server.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { freePort } from '../support/ports.js';
import { BIN, startRun, type LiveProcess } from '../support/start-process.js';
import { waitFor } from '../support/wait.js';
import { httpRequest } from '../support/upstreams.js';

/** waitFor with the data plane's output in the failure; a check that throws (a refused connection) is a no. */
function until(what: string, check: () => Promise<boolean>, run: LiveProcess, timeoutMs = 15_000): Promise<void> {
  return waitFor(() => check().catch(() => false), () => `${what}\n${run.output()}`, { timeoutMs });
}

const answeredBy = async (port: number, name: string) => (await httpRequest(`http://127.0.0.1:${port}/`, { timeoutMs: 2000 })).headers['x-echo-name'] === name;

async function configDump(adminPort: number, resource: string): Promise<any[]> {
  return JSON.parse((await httpRequest(`http://127.0.0.1:${adminPort}/config_dump?resource=${resource}`)).body).configs;
}

describe('portico run from a control plane the test writes (dynamic-config-cp)', { skip: CORPUS_FOUND ? false : SKIP_MESSAGE }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-xds-cp-'));
  const fake = new FakeXdsServer();
  let service1: EchoServer;
  let service2: EchoServer;
  let xdsPort: number;
  let listenerPort: number;
  let adminPort: number;
  let run: LiveProcess;

  const cluster = (port: number) =>
    packAny(TYPES.cluster, {
      name: 'example_proxy_cluster',
      type: 'LOGICAL_DNS',
      dns_lookup_family: 'V4_ONLY',
      connect_timeout: { seconds: 5 },
      lb_policy: 'ROUND_ROBIN',
      load_assignment: {
        cluster_name: 'example_proxy_cluster',
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }],
      },
    });
  const routes = (prefix = '/') =>
    packAny(TYPES.route, {
      name: 'local_route',
      virtual_hosts: [{ name: 'local_service', domains: ['*'], routes: [{ match: { prefix }, route: { cluster: 'example_proxy_cluster' } }] }],
    });
  const listener = (http_filters = [{ name: 'envoy.filters.http.router', typed_config: packAny(TYPES.router, {}) }]) =>
    packAny(TYPES.listener, {
      name: 'listener_0',
      address: { socket_address: { address: '127.0.0.1', port_value: listenerPort } },
      filter_chains: [
        {
          filters: [
            {
              name: 'envoy.filters.network.http_connection_manager',
              typed_config: packAny(TYPES.hcm, {
                stat_prefix: 'http',
                codec_type: 'AUTO',
                rds: {
                  route_config_name: 'local_route',
                  config_source: {
                    resource_api_version: 'V3',
                    api_config_source: {
                      api_type: 'GRPC',
                      transport_api_version: 'V3',
                      set_node_on_first_message_only: true,
                      grpc_services: [{ envoy_grpc: { cluster_name: 'xds_cluster' } }],
                    },
                  },
                },
                http_filters,
              }),
            },
          ],
        },
      ],
    });
  const snapshot = (version: string, upstream: number) =>
    fake.serve(version, {
      [TYPES.cluster]: [{ name: 'example_proxy_cluster', any: cluster(upstream) }],
      [TYPES.listener]: [{ name: 'listener_0', any: listener() }],
      [TYPES.route]: [{ name: 'local_route', any: routes() }],
    });

  before(async () => {
    service1 = await startEchoServer({ name: 'service1', host: '127.0.0.1', port: 0 });
    service2 = await startEchoServer({ name: 'service2', host: '127.0.0.1', port: 0 });
    [xdsPort, listenerPort, adminPort] = [await freePort(), await freePort(), await freePort()];
    const bootstrap = YAML.parse(readFileSync(corpusPath('dynamic-config-cp/envoy.yaml'), 'utf8'));
    const address = bootstrap.static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
    Object.assign(address, { address: '127.0.0.1', port_value: xdsPort });
    bootstrap.admin.address.socket_address = { address: '127.0.0.1', port_value: adminPort };
    writeFileSync(join(dir, 'envoy.yaml'), YAML.stringify(bootstrap));
    // Live (the admin answering) before any control plane is reachable.
    run = await startRun(join(dir, 'envoy.yaml'), ['--concurrency', '2', '--drain-time-s', '1']);
  });

  after(async () => {
    await run?.stop();
    fake.stop();
    await service1?.close();
    await service2?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves nothing before the control plane is reachable, and shows only the static xds_cluster', async () => {
    await assert.rejects(httpRequest(`http://127.0.0.1:${listenerPort}/`, { timeoutMs: 1000 }));
    const clusters = JSON.parse((await httpRequest(`http://127.0.0.1:${adminPort}/config_dump`)).body).configs[1];
    assert.deepEqual(clusters.static_clusters.map((c: any) => c.cluster.name), ['xds_cluster']);
    assert.equal(clusters.dynamic_active_clusters, undefined);
  });

  it('serves version 1 once the control plane answers, and acknowledges every type', async () => {
    snapshot('1', service1.port);
    await fake.start(xdsPort);
    await until('service1 answering', () => answeredBy(listenerPort, 'service1'), run);
    const [dynamic] = await configDump(adminPort, 'dynamic_active_clusters');
    assert.equal(dynamic.version_info, '1');
    assert.equal(dynamic.cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value, service1.port);
    for (const type of [TYPES.cluster, TYPES.listener, TYPES.route]) {
      await until(`an ACK of ${type}`, async () => fake.answers(type).some((a) => a.version_info === '1' && a.error_detail === undefined), run);
    }
    // The route table comes over its own RDS stream, as the listener's api_config_source says.
    assert.ok(fake.requests.some((r) => r.service === 'rds' && r.resource_names.includes('local_route')));
    // set_node_on_first_message_only: the node is on the first request of the RDS stream only.
    const rdsRequests = fake.requests.filter((r) => r.service === 'rds');
    assert.equal(rdsRequests[0]!.node?.id, 'test-id');
  });

  it('refuses an invalid listener with a NACK that names the problem, and keeps serving', async () => {
    const before = fake.answers(TYPES.listener).length;
    fake.serve('bad', { [TYPES.listener]: [{ name: 'listener_0', any: listener([]) }] });
    await until('a NACK', async () => fake.answers(TYPES.listener).slice(before).some((a) => a.error_detail !== undefined), run);
    const nack = fake.answers(TYPES.listener).slice(before).find((a) => a.error_detail !== undefined)!;
    assert.match(nack.error_detail!.message ?? '', /http_filters/);
    // A NACK carries the last version accepted.
    assert.equal(nack.version_info, '1');
    assert.ok(await answeredBy(listenerPort, 'service1'));
  });

  it('keeps serving while the control plane is away, and takes version 2 when it is back', async () => {
    fake.stop();
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(await answeredBy(listenerPort, 'service1'));
    assert.equal((await configDump(adminPort, 'dynamic_active_clusters'))[0].version_info, '1');
    snapshot('2', service2.port);
    await fake.start(xdsPort);
    // The server restarted with the listener of version 2 again: the refused one is gone.
    await until('service2 answering', () => answeredBy(listenerPort, 'service2'), run, 30_000);
    assert.equal((await configDump(adminPort, 'dynamic_active_clusters'))[0].version_info, '2');
    const stats = (await httpRequest(`http://127.0.0.1:${adminPort}/stats?filter=^(control_plane|listener_manager.lds)`)).body;
    assert.match(stats, /control_plane\.connected_state: 1/);
    assert.match(stats, /listener_manager\.lds\.update_rejected: [1-9]/);
  });
});

describe('portico run from discovery files (dynamic-config-fs)', { skip: CORPUS_FOUND ? false : SKIP_MESSAGE }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-xds-fs-'));
  let service1: EchoServer;
  let service2: EchoServer;
  let listenerPort: number;
  let adminPort: number;
  let run: LiveProcess;
  let cds: any;

  before(async () => {
    service1 = await startEchoServer({ name: 'service1', host: '127.0.0.1', port: 0 });
    service2 = await startEchoServer({ name: 'service2', host: '127.0.0.1', port: 0 });
    [listenerPort, adminPort] = [await freePort(), await freePort()];
    const bootstrap = YAML.parse(readFileSync(corpusPath('dynamic-config-fs/envoy.yaml'), 'utf8'));
    bootstrap.dynamic_resources.cds_config.path_config_source.path = join(dir, 'cds.yaml');
    bootstrap.dynamic_resources.lds_config.path_config_source.path = join(dir, 'lds.yaml');
    bootstrap.admin.address.socket_address = { address: '127.0.0.1', port_value: adminPort };
    const lds = YAML.parse(readFileSync(corpusPath('dynamic-config-fs/configs/lds.yaml'), 'utf8'));
    lds.resources[0].address.socket_address = { address: '127.0.0.1', port_value: listenerPort };
    cds = YAML.parse(readFileSync(corpusPath('dynamic-config-fs/configs/cds.yaml'), 'utf8'));
    cds.resources[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address = { address: '127.0.0.1', port_value: service1.port };
    writeFileSync(join(dir, 'envoy.yaml'), YAML.stringify(bootstrap));
    writeFileSync(join(dir, 'lds.yaml'), YAML.stringify(lds));
    writeFileSync(join(dir, 'cds.yaml'), YAML.stringify(cds));
    run = await startRun(join(dir, 'envoy.yaml'), ['--concurrency', '1', '--drain-time-s', '1']);
  });

  after(async () => {
    await run?.stop();
    await service1?.close();
    await service2?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the files, and lists the cluster under dynamic_active_clusters', async () => {
    await until('service1 answering', () => answeredBy(listenerPort, 'service1'), run);
    const [dynamic] = await configDump(adminPort, 'dynamic_active_clusters');
    assert.equal(dynamic.cluster.name, 'example_proxy_cluster');
    assert.equal(dynamic.cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value, service1.port);
  });

  it('applies a cluster file replaced by a rename, without a restart', async () => {
    cds.resources[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value = service2.port;
    writeFileSync(join(dir, 'cds.yaml.new'), YAML.stringify(cds));
    renameSync(join(dir, 'cds.yaml.new'), join(dir, 'cds.yaml'));
    await until('service2 answering', () => answeredBy(listenerPort, 'service2'), run, 10_000);
    const [dynamic] = await configDump(adminPort, 'dynamic_active_clusters');
    assert.equal(dynamic.cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value, service2.port);
  });
});

describe('data planes of portico start, over incremental xDS, two on one machine', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-xds-dp-'));
  let gw: TestGateway;
  let echo: EchoServer;
  const planes: { run: LiveProcess; port: number; admin: number }[] = [];

  before(async () => {
    echo = await startEchoServer({ name: 'backend', host: '127.0.0.1', port: 0 });
    gw = await startTestGateway();
    for (const node of ['edge-a', 'edge-b']) {
      const [port, admin] = [await freePort(), await freePort()];
      const printed = spawnSync(process.execPath, [BIN, 'bootstrap', '--node', node, '--xds-server', `127.0.0.1:${gw.xdsPort}`, '--delta', '--admin-port', String(admin), '--listener-port', String(port)], { encoding: 'utf8' });
      assert.equal(printed.status, 0, printed.stderr);
      writeFileSync(join(dir, `${node}.yaml`), printed.stdout);
      planes.push({ run: await startRun(join(dir, `${node}.yaml`), ['--concurrency', '1', '--drain-time-s', '1']), port, admin });
    }
  });

  after(async () => {
    await Promise.all(planes.map((p) => p.run.stop()));
    await gw?.close();
    await echo?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves a Mapping on every data plane, and stops when it is deleted', async () => {
    const put = await gw.api('/api/v1/mappings/app', {
      method: 'PUT',
      body: { apiVersion: 'getambassador.io/v3alpha1', kind: 'Mapping', metadata: { name: 'app' }, spec: { prefix: '/app/', service: `127.0.0.1:${echo.port}` } },
    });
    assert.equal(put.status, 201, put.body);
    for (const plane of planes) {
      await until(`node on ${plane.port} serving /app/`, async () => (await httpRequest(`http://127.0.0.1:${plane.port}/app/x`)).headers['x-echo-name'] === 'backend', plane.run);
    }
    const { json } = await gw.api('/api/v1/nodes');
    const ids = json.nodes.map((n: { id: string }) => n.id);
    assert.ok(ids.includes('edge-a') && ids.includes('edge-b'), ids.join());
    assert.equal((await gw.api('/api/v1/mappings/app', { method: 'DELETE' })).status, 200);
    for (const plane of planes) {
      await until(`node on ${plane.port} no longer serving /app/`, async () => (await httpRequest(`http://127.0.0.1:${plane.port}/app/x`)).status === 404, plane.run);
    }
  });
});
