/**
 * WebSocket Mappings through the all-in-one gateway: `allow_upgrade: [websocket]` (and its older spelling
 * `use_websocket`) lets a Mapping's route upgrade; a Mapping without it refuses the upgrade with 403.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { connectWebSocket, startWebSocketServer, type WebSocketServer } from '../support/websocket.js';

describe('WebSocket Mappings', () => {
  let ws: WebSocketServer;
  let gw: TestGateway;
  before(async () => {
    ws = await startWebSocketServer({ reply: (m) => `echo: ${m}` });
    gw = await startTestGateway();
    const service = `127.0.0.1:${ws.port}`;
    const yaml = [
      `kind: Mapping\nmetadata: { name: chat }\nspec: { prefix: /chat/, service: "${service}", allow_upgrade: [websocket] }\n`,
      `kind: Mapping\nmetadata: { name: legacy }\nspec: { prefix: /legacy/, service: "${service}", use_websocket: true }\n`,
      `kind: Mapping\nmetadata: { name: plain }\nspec: { prefix: /plain/, service: "${service}" }\n`,
    ].join('---\n');
    const applied = await gw.api('/api/v1/apply', { method: 'POST', body: yaml });
    assert.equal(applied.status, 200, JSON.stringify(applied.json));
  });
  after(async () => {
    await gw?.close();
    await ws?.close();
  });

  it('upgrade on a Mapping with allow_upgrade, with its rewrite', async () => {
    for (const [prefix, name] of [['/chat/', 'chat'], ['/legacy/', 'legacy']] as const) {
      const seen = ws.upgrades.length;
      const { status, client } = await connectWebSocket({ port: gw.proxyPort, path: `${prefix}room` });
      assert.equal(status, 101, name);
      client!.send('HELO');
      assert.equal(await client!.receive(), 'echo: HELO');
      await client!.close();
      assert.equal(ws.upgrades[seen]!.path, '/room');
    }
  });

  it('refuse the upgrade on a Mapping without it, and still proxy plain requests there', async () => {
    const refused = await connectWebSocket({ port: gw.proxyPort, path: '/plain/room' });
    assert.equal(refused.status, 403);
    const plain = await gw.proxy('/plain/room');
    assert.equal(plain.body, 'Only WebSocket connections are welcome here');
  });
});
