/**
 * Emissary's shadow Mappings through the all-in-one gateway: a Mapping with `shadow: true` mirrors the traffic
 * of the Mappings with the same prefix to its own service, and the client only ever sees the serving Mapping's.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/upstreams.js';
import { waitFor } from '../support/wait.js';

describe('shadow Mappings', () => {
  let serving: RecordingUpstream;
  let shadow: RecordingUpstream;
  let gw: TestGateway;
  before(async () => {
    serving = await startRecordingUpstream();
    shadow = await startRecordingUpstream((_req, res) => {
      res.writeHead(500);
      res.end('the shadow answer is never seen');
    });
    gw = await startTestGateway();
  });
  after(async () => {
    await gw?.close();
    await Promise.all([serving?.close(), shadow?.close()]);
  });

  it('mirror the serving Mapping with its rewrite to the shadow service, which never answers the client', async () => {
    const yaml = [
      `kind: Mapping\nmetadata: { name: orders }\nspec: { prefix: /orders/, service: "127.0.0.1:${serving.port}" }\n`,
      `kind: Mapping\nmetadata: { name: orders-shadow }\nspec: { prefix: /orders/, service: "127.0.0.1:${shadow.port}", shadow: true }\n`,
    ].join('---\n');
    const applied = await gw.api('/api/v1/apply', { method: 'POST', body: yaml });
    assert.equal(applied.status, 200, JSON.stringify(applied.json));
    const res = await gw.proxy('/orders/42', { host: 'shop.example' });
    assert.equal(res.status, 200);
    assert.equal(res.body, 'ok');
    await waitFor(() => shadow.requests.length === 1, 'the shadow copy');
    assert.equal(shadow.requests[0]!.url, '/42');
    assert.equal(serving.requests[0]!.url, '/42');
    assert.equal(shadow.requests[0]!.headers.host, 'shop.example-shadow');
  });

  it('mirror none of the traffic with weight 0', async () => {
    const yaml = `kind: Mapping\nmetadata: { name: orders-shadow }\nspec: { prefix: /orders/, service: "127.0.0.1:${shadow.port}", shadow: true, weight: 0 }\n`;
    assert.equal((await gw.api('/api/v1/apply', { method: 'POST', body: yaml })).status, 200);
    const before = serving.requests.length;
    for (let i = 0; i < 10; i++) assert.equal((await gw.proxy('/orders/1')).status, 200);
    assert.equal(serving.requests.length, before + 10);
    assert.equal(shadow.requests.length, 1);
  });
});
