/**
 * A third-party xDS client against Portico's xDS server: proxyless gRPC clients (@grpc/grpc-js-xds) dial
 * `xds:///echo`, and the Mappings of `portico start` route their calls, a weighted split between two
 * @grpc/grpc-js servers included, moving when a Mapping's weight changes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { register as registerXdsResolver } from '@grpc/grpc-js-xds';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

const METHOD = '/portico.test.Echo/Who';
const identity = (b: Buffer) => b;

/** A gRPC server whose one method answers its name. */
async function nameServer(name: string): Promise<{ port: number; close(): void }> {
  const server = new grpc.Server();
  server.addService(
    { Who: { path: METHOD, requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
    { Who: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(null, Buffer.from(name)) },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { port, close: () => server.forceShutdown() };
}

function proxylessClient(xdsPort: number, nodeId: string): grpc.Client {
  const bootstrap = {
    xds_servers: [{ server_uri: `127.0.0.1:${xdsPort}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
    node: { id: nodeId, locality: {} },
  };
  return new grpc.Client('xds:///echo', grpc.credentials.createInsecure(), {
    'grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config': JSON.stringify(bootstrap),
  });
}

function call(client: grpc.Client): Promise<string> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(METHOD, identity, identity, Buffer.alloc(0), { deadline: Date.now() + 10_000 } as grpc.CallOptions, (err, value) =>
      err ? reject(err) : resolve(value!.toString()),
    ),
  );
}

async function counts(client: grpc.Client, n: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const who = await call(client);
    out[who] = (out[who] ?? 0) + 1;
  }
  return out;
}

async function putMapping(gw: TestGateway, name: string, spec: Record<string, unknown>): Promise<void> {
  const res = await gw.api(`/api/v1/mappings/${name}`, {
    method: 'PUT',
    body: { apiVersion: 'getambassador.io/v3alpha1', kind: 'Mapping', metadata: { name }, spec: { prefix: '/portico.test.Echo/', rewrite: '', ...spec } },
  });
  assert.ok(res.status < 300, `${res.status} ${res.body}`);
}

describe('proxyless gRPC clients on xDS', () => {
  let gw: TestGateway;
  let stable: Awaited<ReturnType<typeof nameServer>>;
  let canary: Awaited<ReturnType<typeof nameServer>>;
  let client: grpc.Client;

  before(async () => {
    registerXdsResolver();
    stable = await nameServer('stable');
    canary = await nameServer('canary');
    gw = await startTestGateway();
    await putMapping(gw, 'echo', { service: `127.0.0.1:${stable.port}` });
    await putMapping(gw, 'echo-canary', { service: `127.0.0.1:${canary.port}`, weight: 30 });
    client = proxylessClient(gw.xdsPort, 'proxyless-test');
  });

  after(async () => {
    client?.close();
    await gw?.close();
    stable?.close();
    canary?.close();
  });

  it('splits calls by the Mappings weights', async () => {
    const seen = await counts(client, 300);
    assert.equal((seen.stable ?? 0) + (seen.canary ?? 0), 300);
    // 30 % of 300 is 90 with a standard deviation of 8: the bounds are over four deviations wide.
    assert.ok((seen.canary ?? 0) >= 54 && (seen.canary ?? 0) <= 126, JSON.stringify(seen));
  });

  it('moves when a weight changes', async () => {
    await putMapping(gw, 'echo-canary', { service: `127.0.0.1:${canary.port}`, weight: 100 });
    const deadline = Date.now() + 20_000;
    let seen: Record<string, number> = {};
    while (Date.now() < deadline) {
      seen = await counts(client, 20);
      if (seen.canary === 20) break;
    }
    assert.equal(seen.canary, 20, JSON.stringify(seen));
  });

  it('lists the client among the nodes, with what it acknowledged', async () => {
    const { json } = await gw.api('/api/v1/nodes');
    const node = json.nodes.find((n: { id: string }) => n.id === 'proxyless-test');
    assert.ok(node, JSON.stringify(json));
    assert.ok(node.streams >= 1);
    assert.ok(node.acked['type.googleapis.com/envoy.config.listener.v3.Listener'] !== undefined, JSON.stringify(node));
    assert.deepEqual(node.rejected, {});
  });
});
