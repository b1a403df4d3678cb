import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Pool } from 'undici';
import { checkBootstrap, parseDocument } from '../../src/config/load.js';
import type { ConfigError } from '../../src/config/errors.js';
import { DataPlane } from '../../src/dataplane/data-plane.js';
import { createLogger } from '../../src/util/logger.js';
import { freePort } from '../support/ports.js';
import { httpRequest } from '../support/upstreams.js';
import { parseBootstrap, simpleBootstrap, startPortico, staticCluster } from '../support/portico.js';
import { waitFor } from '../support/wait.js';
import { connectWebSocket, startWebSocketServer } from '../support/websocket.js';
import { EXTENSIONS } from '../../src/extensions/registry.js';

/** An upstream answering its name; `/slow` answers after 300 ms. */
async function namedUpstream(name: string): Promise<{ port: number; server: Server }> {
  const server = createServer((req, res) => {
    const reply = () => res.end(name);
    if (req.url?.endsWith('/slow')) setTimeout(reply, 300);
    else reply();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, server };
}

function bootstrap(yaml: string) {
  const errors: ConfigError[] = [];
  const checked = checkBootstrap(parseDocument(yaml, 'test.yaml', errors));
  assert.deepEqual([...errors, ...checked.errors], []);
  return checked.bootstrap;
}

describe('DataPlane.update', () => {
  let one: Awaited<ReturnType<typeof namedUpstream>>;
  let two: Awaited<ReturnType<typeof namedUpstream>>;
  let port: number;
  let plane: DataPlane;
  const config = (upstream: number, extra = '') =>
    bootstrap(
      simpleBootstrap({ listenerPort: port, routes: '- match: { prefix: "/" }\n  route: { cluster: c }', clusters: staticCluster('c', upstream) }) + extra,
    );

  before(async () => {
    [one, two] = await Promise.all([namedUpstream('one'), namedUpstream('two')]);
    port = await freePort();
    plane = await DataPlane.start(config(one.port), createLogger('off'), EXTENSIONS);
  });
  after(async () => {
    await plane.close(0);
    one.server.close();
    two.server.close();
  });

  it('switches configurations under keep-alive load without failing a request', async () => {
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 4 });
    let running = true;
    const failures: string[] = [];
    let served = 0;
    const loop = async () => {
      while (running) {
        try {
          const res = await pool.request({ path: '/x', method: 'GET' });
          const body = await res.body.text();
          if (res.statusCode !== 200 || (body !== 'one' && body !== 'two')) failures.push(`${res.statusCode} ${body}`);
          served++;
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    };
    const slow = httpRequest(`http://127.0.0.1:${port}/slow`).then((res) => [res.status, res.body]);
    await new Promise((resolve) => setTimeout(resolve, 50)); // the slow request is in flight
    const loops = Array.from({ length: 4 }, loop);
    for (let i = 0; i < 10; i++) {
      await new Promise((resolve) => setTimeout(resolve, 30));
      await plane.update(config(i % 2 === 0 ? two.port : one.port), 2000);
    }
    running = false;
    await Promise.all(loops);
    assert.deepEqual(await slow, [200, 'one'], 'the request in flight during the first change finishes on the old configuration');
    await pool.close();
    assert.deepEqual(failures, []);
    assert.ok(served > 10, `served ${served}`);
    assert.equal((await httpRequest(`http://127.0.0.1:${port}/x`)).body, 'one');
    await plane.update(config(two.port), 2000);
    assert.equal((await httpRequest(`http://127.0.0.1:${port}/x`)).body, 'two');
  });

  it('switches a route between two clusters (blue/green) under load without failing a request', async () => {
    const blueGreen = (color: 'blue' | 'green') =>
      bootstrap(
        simpleBootstrap({
          listenerPort: port,
          routes: `- match: { prefix: "/" }\n  route: { cluster: ${color}, retry_policy: { retry_on: "5xx,reset" } }`,
          clusters: staticCluster('blue', one.port) + staticCluster('green', two.port),
        }),
      );
    await plane.update(blueGreen('blue'), 2000);
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 4 });
    let running = true;
    const failures: string[] = [];
    const seen = new Set<string>();
    const loop = async () => {
      while (running) {
        try {
          const res = await pool.request({ path: '/x', method: 'POST', body: 'payload' });
          const body = await res.body.text();
          if (res.statusCode !== 200) failures.push(`${res.statusCode} ${body}`);
          seen.add(body);
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    };
    const loops = Array.from({ length: 4 }, loop);
    for (let i = 0; i < 6; i++) {
      await new Promise((resolve) => setTimeout(resolve, 30));
      await plane.update(blueGreen(i % 2 === 0 ? 'green' : 'blue'), 2000);
    }
    running = false;
    await Promise.all(loops);
    await pool.close();
    assert.deepEqual(failures, []);
    assert.deepEqual([...seen].sort(), ['one', 'two']);
    await plane.update(blueGreen('green'), 2000);
    assert.equal((await httpRequest(`http://127.0.0.1:${port}/x`)).body, 'two');
    // Back to the configuration the next test starts from.
    await plane.update(config(two.port), 2000);
  });

  it('keeps unchanged clusters and serves on with the old configuration when the new one is invalid', async () => {
    const before = plane.config.clusters.get('c');
    await plane.update(config(two.port), 1000);
    assert.equal(plane.config.clusters.get('c'), before);
    const invalid = simpleBootstrap({ listenerPort: port, routes: '- match: { prefix: "/" }\n  route: { cluster: c, regex_rewrite: { pattern: { regex: "(" }, substitution: "" } }', clusters: staticCluster('c', two.port) });
    await assert.rejects(plane.update(bootstrap(invalid), 1000), /invalid regex/);
    assert.equal((await httpRequest(`http://127.0.0.1:${port}/x`)).body, 'two');
  });

  it('starts listeners a configuration adds and stops those it drops', async () => {
    const extraPort = await freePort();
    const withExtra = simpleBootstrap({ listenerPort: port, routes: '- match: { prefix: "/" }\n  route: { cluster: c }', clusters: staticCluster('c', two.port) }).replace(
      /^static_resources:\n  listeners:\n/m,
      `static_resources:\n  listeners:\n  - name: extra\n    address: { socket_address: { address: 127.0.0.1, port_value: ${extraPort} } }\n    filter_chains: [{ filters: [{ name: envoy.filters.network.http_connection_manager, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: extra, route_config: { virtual_hosts: [{ name: x, domains: ["*"], routes: [{ match: { prefix: "/" }, direct_response: { status: 204 } }] }] }, http_filters: [{ name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }] } }] }]\n`,
    );
    await plane.update(bootstrap(withExtra), 1000);
    assert.equal((await httpRequest(`http://127.0.0.1:${extraPort}/`)).status, 204);
    await plane.update(config(two.port), 1000);
    await assert.rejects(httpRequest(`http://127.0.0.1:${extraPort}/`, { timeoutMs: 1000 }));
    assert.equal((await httpRequest(`http://127.0.0.1:${port}/x`)).body, 'two');
  });

  it('moves a listener whose address changed: the new address serves, the old one is closed', async () => {
    const moved = await freePort();
    const at = (listenerPort: number) =>
      bootstrap(simpleBootstrap({ listenerPort, routes: '- match: { prefix: "/" }\n  route: { cluster: c }', clusters: staticCluster('c', two.port) }));
    await plane.update(at(moved), 1000);
    assert.equal((await httpRequest(`http://127.0.0.1:${moved}/x`)).body, 'two');
    await assert.rejects(httpRequest(`http://127.0.0.1:${port}/x`, { timeoutMs: 1000 }));
    await plane.update(at(port), 1000);
    assert.equal((await httpRequest(`http://127.0.0.1:${port}/x`)).body, 'two');
  });
});

describe('DataPlane.update of routes only', () => {
  it('keeps keep-alive connections and WebSockets open, and serves their further requests by the new routes', async () => {
    const ws = await startWebSocketServer({ reply: (m) => `[ws] ${m}` });
    const [one, two] = await Promise.all([namedUpstream('one'), namedUpstream('two')]);
    const yaml = (extraRoute: string, hcmExtra = '') =>
      simpleBootstrap({
        hcmExtra: `upgrade_configs: [{ upgrade_type: websocket }]\n${hcmExtra}`,
        routes: `- match: { prefix: "/chat" }\n  route: { cluster: ws }\n${extraRoute}- match: { prefix: "/" }\n  route: { cluster: one }`,
        clusters: staticCluster('ws', ws.port) + staticCluster('one', one.port) + staticCluster('two', two.port),
      });
    const gw = await startPortico(yaml(''));
    const socket = connect(gw.port(), '127.0.0.1');
    let received = '';
    let closed = false;
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    socket.on('close', () => (closed = true));
    const ask = async (path: string, body: string): Promise<string> => {
      const from = received.length;
      socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
      await waitFor(() => received.slice(from).endsWith(`\r\n\r\n${body}`), () => `${path} answered ${body}, got ${JSON.stringify(received.slice(from))}`);
      return received.slice(from);
    };
    try {
      const { client } = await connectWebSocket({ port: gw.port(), path: '/chat' });
      assert.ok(client);
      await ask('/x', 'one');
      await gw.plane.update(parseBootstrap(yaml('- match: { prefix: "/new" }\n  route: { cluster: two }\n')), 200);
      // Past the drain time: nothing of the old configuration is waited for any more.
      await new Promise((resolve) => setTimeout(resolve, 400));
      const answer = await ask('/new', 'two');
      assert.doesNotMatch(answer, /connection: close/i);
      assert.equal(closed, false);
      client.send('still there');
      assert.equal(await client.receive(), '[ws] still there');
      // A change of the connection manager itself drains its connections, as before.
      await gw.plane.update(parseBootstrap(yaml('', 'server_name: other')), 200);
      assert.match(await ask('/x', 'one'), /connection: close/i);
      await client.close();
    } finally {
      socket.destroy();
      await gw.close();
      await ws.close();
      one.server.close();
      two.server.close();
    }
  });
});
