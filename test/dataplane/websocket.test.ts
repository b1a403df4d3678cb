/**
 * HTTP/1.1 upgrades end to end through real sockets: WebSocket through connection-manager and route
 * `upgrade_configs`, the 403 for a route without upgrades, rewrites on the upgrade request, non-101 answers,
 * connect failures, large transfers both ways with backpressure, half-close, upstream TLS, the stream idle
 * timeout, stats and access logs, and configuration errors.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { hasOpenssl, makeTestPki, OPENSSL_MISSING } from '../support/certificates.js';
import { checkYaml, type RunningPortico, simpleBootstrap, startPortico, staticCluster, statValue, tlsCluster } from '../support/portico.js';
import { sendAndHalfClose, sha256 } from '../support/streams.js';
import { httpRequest, refusedPort } from '../support/upstreams.js';
import { waitFor } from '../support/wait.js';
import { connectWebSocket, startWebSocketServer, type WebSocketServer } from '../support/websocket.js';

const HCM_UPGRADES = 'upgrade_configs: [{ upgrade_type: websocket }]';
const FILE_LOG = 'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog';

/**
 * An upstream for the `echo` upgrade type: after its 101 it sends back every byte it receives, and when the
 * client half-closes it sends `bye` and closes its side too.
 */
async function startEchoUpgradeServer(): Promise<{ port: number; server: Server; received: () => number }> {
  let received = 0;
  const server = createServer((_req, res) => res.end('no upgrade'));
  server.on('upgrade', (_req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: echo\r\nconnection: upgrade\r\n\r\n');
    if (head.length > 0) socket.write(head);
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (!socket.write(chunk)) {
        socket.pause();
        socket.once('drain', () => socket.resume());
      }
    });
    socket.on('end', () => socket.end('bye'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, server, received: () => received };
}

/** Opens a raw upgrade (`upgrade: echo`) through the proxy; resolves with the socket once the 101 head arrived. */
function openEchoTunnel(port: number, path = '/'): Promise<{ socket: Socket; head: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    socket.write(`GET ${path} HTTP/1.1\r\nhost: localhost\r\nupgrade: echo\r\nconnection: upgrade\r\n\r\n`);
    let buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffer = Buffer.concat([buffer, chunk]);
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.pause();
      resolve({ socket, head: buffer.subarray(0, end).toString(), rest: buffer.subarray(end + 4) });
    };
    socket.on('data', onData);
    socket.once('error', reject);
  });
}

describe('WebSocket and HTTP upgrades', () => {
  let ws: WebSocketServer;
  let echo: Awaited<ReturnType<typeof startEchoUpgradeServer>>;
  let refused: number;
  const logDir = mkdtempSync(join(tmpdir(), 'portico-ws-'));
  const logFile = join(logDir, 'access.log');
  let gw: RunningPortico;
  let routeGw: RunningPortico;

  before(async () => {
    ws = await startWebSocketServer({ reply: (m) => `[ws] ${m}` });
    echo = await startEchoUpgradeServer();
    refused = await refusedPort();
    const accessLog = `access_log:
- name: envoy.access_loggers.file
  typed_config:
    "@type": ${FILE_LOG}
    path: ${logFile}
    log_format: { text_format_source: { inline_string: "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %UPSTREAM_HOST%\\n" } }`;
    // Upgrades enabled for the whole connection manager (websocket and echo); /no-echo turns echo off.
    gw = await startPortico(
      simpleBootstrap({
        hcmExtra: `upgrade_configs: [{ upgrade_type: websocket }, { upgrade_type: ECHO }]\nstream_idle_timeout: 30s\n${accessLog}`,
        routes: `- match: { prefix: "/chat" }
  route: { cluster: ws, prefix_rewrite: "/ws" }
- match: { prefix: "/no-echo" }
  route: { cluster: echo, upgrade_configs: [{ upgrade_type: echo, enabled: false }] }
- match: { prefix: "/refused" }
  route: { cluster: refused }
- match: { prefix: "/echo" }
  route: { cluster: echo }
- match: { prefix: "/" }
  route: { cluster: ws }`,
        clusters: staticCluster('ws', ws.port) + staticCluster('echo', echo.port) + staticCluster('refused', refused),
      }),
    );
    // Upgrades only on /ws (the conformance example's shape); / is a direct response.
    routeGw = await startPortico(
      simpleBootstrap({
        routes: `- match: { prefix: "/ws" }
  route: { cluster: ws, upgrade_configs: [{ upgrade_type: websocket }] }
- match: { prefix: "/idle" }
  route: { cluster: ws, idle_timeout: 0.2s, upgrade_configs: [{ upgrade_type: websocket }] }
- match: { prefix: "/" }
  direct_response: { status: 200, body: { inline_string: "NotWebSocket\\n" } }`,
        clusters: staticCluster('ws', ws.port),
      }),
    );
  });

  after(async () => {
    await gw?.close();
    await routeGw?.close();
    await ws?.close();
    await new Promise<void>((resolve) => {
      echo?.server.closeAllConnections();
      echo?.server.close(() => resolve());
    });
  });

  it('proxies a WebSocket when the connection manager enables upgrades: messages both ways, stats, access log', async () => {
    const before = statValue(gw, 'http.ingress_http.downstream_cx_upgrades_total') ?? 0;
    const upgradesSeen = ws.upgrades.length;
    const { status, client, headers } = await connectWebSocket({ port: gw.port(), path: '/room?x=1' });
    assert.equal(status, 101);
    assert.ok(client);
    assert.equal(headers['upgrade'], 'websocket');
    assert.equal(headers['connection'], 'upgrade');
    assert.equal(headers['server'], 'envoy');
    client.send('HELO');
    assert.equal(await client.receive(), '[ws] HELO');
    client.send('GOODBYE');
    assert.equal(await client.receive(), '[ws] GOODBYE');
    // The upstream got the request as any other: sanitised, with the proxy's headers.
    const seen = ws.upgrades[upgradesSeen]!;
    assert.equal(seen.path, '/room?x=1');
    assert.equal(seen.headers['upgrade'], 'websocket');
    assert.match(String(seen.headers['connection']), /upgrade/i);
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.ok(seen.headers['x-request-id']);
    assert.equal(statValue(gw, 'http.ingress_http.downstream_cx_upgrades_total'), before + 1);
    assert.equal(statValue(gw, 'http.ingress_http.downstream_cx_upgrades_active'), 1);
    assert.equal(statValue(gw, 'cluster.ws.upstream_rq_active'), 1);
    assert.equal(statValue(gw, 'cluster.ws.upstream_cx_active'), 1);
    await client.close();
    await waitFor(() => statValue(gw, 'http.ingress_http.downstream_cx_upgrades_active') === 0, 'upgrades_active back to 0');
    await waitFor(() => statValue(gw, 'cluster.ws.upstream_rq_active') === 0, 'upstream_rq_active back to 0');
    assert.equal(statValue(gw, 'cluster.ws.upstream_rq_101'), 1);
    assert.equal(statValue(gw, 'http.ingress_http.downstream_rq_1xx'), 1);
    // One line when the tunnel closes: the bytes of the frames each way (HELO 10 + GOODBYE 13 + close 8 from
    // the client, masked; 11 + 14 + 4 back), the upstream host.
    await waitFor(() => readFileSync(logFile, 'utf8').includes('/room?x=1 101'), 'the access log line');
    const line = readFileSync(logFile, 'utf8').split('\n').find((l) => l.startsWith('/room?x=1 101'))!;
    assert.equal(line, `/room?x=1 101 - 31 29 127.0.0.1:${ws.port}`);
  });

  it('applies the route: prefix_rewrite reaches the upstream of an upgrade', async () => {
    const upgradesSeen = ws.upgrades.length;
    const { client } = await connectWebSocket({ port: gw.port(), path: '/chat/lobby' });
    assert.ok(client);
    client.send('HELO');
    assert.equal(await client.receive(), '[ws] HELO');
    assert.equal(ws.upgrades[upgradesSeen]!.path, '/ws/lobby');
    assert.equal(ws.upgrades[upgradesSeen]!.headers['x-envoy-original-path'], '/chat/lobby');
    await client.close();
  });

  it('refuses an upgrade on a route that does not enable it: 403, empty body, connection closed, counted', async () => {
    const before = statValue(routeGw, 'http.ingress_http.downstream_rq_ws_on_non_ws_route') ?? 0;
    const refusedRoute = await connectWebSocket({ port: routeGw.port(), path: '/' });
    assert.equal(refusedRoute.status, 403);
    assert.equal(refusedRoute.body, '');
    assert.equal(refusedRoute.headers['content-length'], '0');
    assert.equal(refusedRoute.headers['connection'], 'close');
    assert.equal(statValue(routeGw, 'http.ingress_http.downstream_rq_ws_on_non_ws_route'), before + 1);
    // The same path without upgrade headers gets the direct response; /ws upgrades.
    const plain = await httpRequest(`${routeGw.url()}/`);
    assert.equal(plain.status, 200);
    assert.equal(plain.body, 'NotWebSocket\n');
    const { client } = await connectWebSocket({ port: routeGw.port(), path: '/ws' });
    assert.ok(client);
    client.send('HELO');
    assert.equal(await client.receive(), '[ws] HELO');
    await client.close();
    // A route-level `enabled: false` overrides the connection manager's.
    const disabled = await openEchoTunnelStatus(gw.port(), '/no-echo');
    assert.match(disabled, /^HTTP\/1\.1 403 /);
  });

  it('forwards a plain request on an upgrade route to the upstream as usual', async () => {
    const res = await httpRequest(`${routeGw.url()}/ws`);
    assert.equal(res.status, 400);
    assert.equal(res.body, 'Only WebSocket connections are welcome here');
  });

  it('forwards a non-101 answer to an upgrade request and closes the connection', async () => {
    // The WebSocket server refuses an upgrade to anything but websocket.
    const result = await new Promise<string>((resolve, reject) => {
      const socket = connect(gw.port(), '127.0.0.1');
      let data = '';
      socket.on('data', (chunk) => (data += chunk.toString()));
      socket.on('close', () => resolve(data));
      socket.on('error', reject);
      socket.write('GET / HTTP/1.1\r\nhost: localhost\r\nupgrade: echo\r\nconnection: upgrade\r\n\r\n');
    });
    assert.match(result, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.match(result, /\r\nconnection: close\r\n/i);
  });

  it('answers 503 UF when the upstream refuses the connection', async () => {
    const before = statValue(gw, 'cluster.refused.upstream_cx_connect_fail') ?? 0;
    const result = await connectWebSocket({ port: gw.port(), path: '/refused' });
    assert.equal(result.status, 503);
    assert.match(result.body, /upstream connect error or disconnect\/reset before headers\. reset reason: connection failure/);
    assert.ok((statValue(gw, 'cluster.refused.upstream_cx_connect_fail') ?? 0) > before);
    await waitFor(() => readFileSync(logFile, 'utf8').includes('/refused 503 UF'), 'a 503 UF access log line');
  });

  it('carries 20 MiB each way with backpressure, then half-closes cleanly', { timeout: 60_000 }, async () => {
    const { socket, head, rest } = await openEchoTunnel(gw.port(), '/echo');
    assert.match(head, /^HTTP\/1\.1 101 /);
    const size = 20 * 1024 * 1024;
    // Half-close at the end: the client is done sending, the server's goodbye still comes back through the tunnel.
    const { sent, received } = await sendAndHalfClose(socket, size, rest);
    assert.equal(received.length, size + 3);
    assert.equal(sha256(received.subarray(0, size)), sent);
    assert.equal(received.subarray(size).toString(), 'bye');
    assert.equal(echo.received(), size);
  });

  it('closes a tunnel that stays idle for the stream idle timeout (route idle_timeout)', async () => {
    const before = statValue(routeGw, 'http.ingress_http.downstream_rq_idle_timeout') ?? 0;
    const { client } = await connectWebSocket({ port: routeGw.port(), path: '/idle' });
    assert.ok(client);
    client.send('HELO');
    assert.equal(await client.receive(), '[ws] HELO');
    await new Promise<void>((resolve) => (client.socket.destroyed ? resolve() : client.socket.once('close', () => resolve())));
    assert.equal(statValue(routeGw, 'http.ingress_http.downstream_rq_idle_timeout'), before + 1);
    await waitFor(() => statValue(routeGw, 'http.ingress_http.downstream_cx_upgrades_active') === 0, 'upgrades_active back to 0');
  });

  describe('to a TLS upstream', { skip: hasOpenssl ? false : OPENSSL_MISSING }, () => {
    let wss: WebSocketServer;
    let tlsGw: RunningPortico;

    before(async () => {
      const pki = makeTestPki([{ name: 'wss', commonName: 'service-wss' }]);
      wss = await startWebSocketServer({
        reply: (m) => `[wss] ${m}`,
        tls: { cert: readFileSync(pki.file('wss.crt')), key: readFileSync(pki.file('wss.key')) },
      });
      tlsGw = await startPortico(
        simpleBootstrap({
          hcmExtra: HCM_UPGRADES,
          routes: '- match: { prefix: "/" }\n  route: { cluster: wss }',
          clusters: tlsCluster('wss', wss.port),
        }),
      );
    });

    after(async () => {
      await tlsGw?.close();
      await wss?.close();
    });

    it('upgrades over the cluster TLS connection', async () => {
      const { client } = await connectWebSocket({ port: tlsGw.port(), path: '/' });
      assert.ok(client);
      client.send('HELO');
      assert.equal(await client.receive(), '[wss] HELO');
      client.send('GOODBYE');
      assert.equal(await client.receive(), '[wss] GOODBYE');
      assert.equal(statValue(tlsGw, 'cluster.wss.ssl.handshake'), 1);
      await client.close();
    });
  });

  it('refuses what it does not implement, with paths', () => {
    const errors = checkYaml(
      simpleBootstrap({
        hcmExtra: `upgrade_configs:
- upgrade_type: websocket
  filters: [{ name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }]`,
        routes: '- match: { prefix: "/" }\n  route: { cluster: ws, upgrade_configs: [{ upgrade_type: CONNECT, connect_config: {} }] }',
        clusters: staticCluster('ws', 1),
      }),
    );
    const hcm = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config';
    assert.deepEqual(
      errors.map((e) => e.path),
      [`${hcm}.upgrade_configs[0].filters`, `${hcm}.route_config.virtual_hosts[0].routes[0].route.upgrade_configs[0].connect_config`],
    );
  });

  it('refuses CONNECT and a type listed twice', async () => {
    await assert.rejects(
      startPortico(
        simpleBootstrap({
          hcmExtra: 'upgrade_configs: [{ upgrade_type: websocket }, { upgrade_type: WebSocket }]',
          routes: '- match: { prefix: "/" }\n  route: { cluster: ws, upgrade_configs: [{ upgrade_type: connect }] }',
          clusters: staticCluster('ws', 1),
        }),
      ),
      (err: Error) => {
        assert.match(err.message, /upgrade_configs\[1\]\.upgrade_type: upgrade type WebSocket is listed twice/);
        assert.match(err.message, /route\.upgrade_configs\[0\]\.upgrade_type: CONNECT upgrades are not supported/);
        return true;
      },
    );
  });
});

/** The status line of the answer to an `upgrade: echo` request. */
async function openEchoTunnelStatus(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.on('data', (chunk) => (data += chunk.toString()));
    socket.on('close', () => resolve(data));
    socket.on('error', reject);
    socket.write(`GET ${path} HTTP/1.1\r\nhost: localhost\r\nupgrade: echo\r\nconnection: upgrade\r\n\r\n`);
  });
}
