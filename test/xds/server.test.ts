/**
 * The control plane's xDS server at the protocol level, driven by raw gRPC streams: versions and nonces, ACK and
 * NACK (the NACK's error shown in the API), stale nonces, subscriptions by name, the per-type services, and the
 * incremental variant sending only what changed and what went away.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { grpcDefinition } from '../../src/grpc/envoy-protos.js';
import { anyToJson } from '../../src/grpc/proto-json.js';
import { CLUSTER_TYPE, discoveryMethod, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, type XdsVariant } from '../../src/xds/protocol.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

type Json = Record<string, any>;

/** A raw discovery stream whose responses are read one at a time. */
function openStream(port: number, variant: XdsVariant, typeUrl?: string) {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const definition = grpcDefinition(discoveryMethod(variant, typeUrl).method);
  const call = client.makeBidiStreamRequest(definition.path, definition.requestSerialize, definition.responseDeserialize as (b: Buffer) => Json);
  const queue: Json[] = [];
  const waiting: ((r: Json) => void)[] = [];
  call.on('data', (r: Json) => (waiting.length > 0 ? waiting.shift()!(r) : queue.push(r)));
  call.on('error', () => undefined);
  return {
    send: (request: Json) => call.write(request),
    next: (ms = 5000) =>
      new Promise<Json>((resolve, reject) => {
        if (queue.length > 0) return resolve(queue.shift()!);
        const timer = setTimeout(() => reject(new Error('no response')), ms);
        waiting.push((r) => {
          clearTimeout(timer);
          resolve(r);
        });
      }),
    /** True when nothing arrives within `ms`. */
    silent: async (ms = 500) => {
      await new Promise((r) => setTimeout(r, ms));
      return queue.length === 0;
    },
    close: () => {
      call.cancel();
      client.close();
    },
  };
}

const names = (response: Json, variant: XdsVariant = 'sotw') =>
  (response.resources ?? []).map((r: Json) => {
    const json = anyToJson(variant === 'sotw' ? r : r.resource);
    return String(json.name ?? json.cluster_name);
  });

async function putMapping(gw: TestGateway, name: string, prefix: string, port: number): Promise<void> {
  const res = await gw.api(`/api/v1/mappings/${name}`, {
    method: 'PUT',
    body: { apiVersion: 'getambassador.io/v3alpha1', kind: 'Mapping', metadata: { name }, spec: { prefix, service: `127.0.0.1:${port}` } },
  });
  assert.ok(res.status < 300, res.body);
}

describe('the xDS server', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway();
    await putMapping(gw, 'one', '/one/', 7001);
  });
  after(() => gw?.close());

  it('sends every cluster to a wildcard subscription, keeps a NACK until the next ACK, and ignores stale nonces', async () => {
    const stream = openStream(gw.xdsPort, 'sotw');
    const node = { id: 'raw-sotw', cluster: 'tests' };
    stream.send({ node, type_url: CLUSTER_TYPE });
    const first = await stream.next();
    assert.equal(first.type_url, CLUSTER_TYPE);
    assert.deepEqual(names(first), ['cluster_127_0_0_1_7001']);
    const cluster = anyToJson(first.resources[0]);
    assert.equal(cluster.type, 'EDS');
    stream.send({ node, type_url: CLUSTER_TYPE, version_info: '', response_nonce: first.nonce, error_detail: { code: 3, message: 'cluster not to my taste' } });
    await new Promise((r) => setTimeout(r, 200));
    let shown = (await gw.api('/api/v1/nodes')).json.nodes.find((n: Json) => n.id === 'raw-sotw');
    assert.equal(shown.rejected[CLUSTER_TYPE].message, 'cluster not to my taste');
    assert.equal(shown.rejected[CLUSTER_TYPE].version, first.version_info);
    // A request answering an older nonce is stale: no response.
    stream.send({ node, type_url: CLUSTER_TYPE, version_info: first.version_info, response_nonce: 'not-the-last' });
    assert.ok(await stream.silent());
    await putMapping(gw, 'two', '/two/', 7002);
    const second = await stream.next();
    assert.deepEqual(names(second).sort(), ['cluster_127_0_0_1_7001', 'cluster_127_0_0_1_7002']);
    assert.notEqual(second.version_info, first.version_info);
    stream.send({ node, type_url: CLUSTER_TYPE, version_info: second.version_info, response_nonce: second.nonce });
    await new Promise((r) => setTimeout(r, 200));
    shown = (await gw.api('/api/v1/nodes')).json.nodes.find((n: Json) => n.id === 'raw-sotw');
    assert.deepEqual(shown.rejected, {});
    assert.equal(shown.acked[CLUSTER_TYPE], second.version_info);
    stream.close();
  });

  it('answers named subscriptions with those resources only, on ADS and on the per-type services', async () => {
    const ads = openStream(gw.xdsPort, 'sotw');
    ads.send({ node: { id: 'raw-named' }, type_url: ROUTE_TYPE, resource_names: ['ambassador-routes-0'] });
    const routes = await ads.next();
    assert.deepEqual(names(routes), ['ambassador-routes-0']);
    ads.send({ node: { id: 'raw-named' }, type_url: ENDPOINT_TYPE, resource_names: ['cluster_127_0_0_1_7001'] });
    const endpoints = await ads.next();
    assert.deepEqual(names(endpoints), ['cluster_127_0_0_1_7001']);
    ads.close();
    const lds = openStream(gw.xdsPort, 'sotw', LISTENER_TYPE);
    lds.send({ node: { id: 'raw-lds' } });
    const listeners = await lds.next();
    assert.deepEqual(names(listeners), ['ambassador-listener-0']);
    lds.close();
  });

  it('sends only what changed and what went away over the incremental protocol', async () => {
    const stream = openStream(gw.xdsPort, 'delta');
    stream.send({ node: { id: 'raw-delta' }, type_url: CLUSTER_TYPE, resource_names_subscribe: ['*'] });
    const first = await stream.next();
    const all = names(first, 'delta').sort();
    assert.ok(all.includes('cluster_127_0_0_1_7001'), all.join());
    assert.ok(first.resources.every((r: Json) => r.version !== ''));
    stream.send({ type_url: CLUSTER_TYPE, response_nonce: first.nonce });
    await putMapping(gw, 'three', '/three/', 7003);
    const added = await stream.next();
    assert.deepEqual(names(added, 'delta'), ['cluster_127_0_0_1_7003']);
    assert.deepEqual(added.removed_resources ?? [], []);
    stream.send({ type_url: CLUSTER_TYPE, response_nonce: added.nonce });
    assert.equal((await gw.api('/api/v1/mappings/three', { method: 'DELETE' })).status, 200);
    const removed = await stream.next();
    assert.deepEqual(removed.resources ?? [], []);
    assert.deepEqual(removed.removed_resources, ['cluster_127_0_0_1_7003']);
    stream.close();
  });
});
