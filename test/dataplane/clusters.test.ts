/**
 * Clusters end to end: DNS cluster types, load balancing (round robin, weights, priorities), upstream
 * connection reuse and limits, and connect timeouts, observed on recording upstreams.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { simpleBootstrap, startPortico, type RunningPortico } from '../support/portico.js';
import { httpRequest, startRecordingUpstream, type RecordingUpstream } from '../support/upstreams.js';

interface Labelled extends RecordingUpstream {
  name: string;
  /** TCP connections accepted so far. */
  connections: number;
}

const started: { close(): Promise<void> }[] = [];
after(async () => {
  await Promise.all(started.map((s) => s.close()));
});

/** A recording upstream that answers its own name and counts its connections. */
async function labelled(name: string): Promise<Labelled> {
  const upstream = await startRecordingUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(name) });
    res.end(name);
  });
  const result = Object.assign(upstream, { name, connections: 0 });
  upstream.server.on('connection', () => result.connections++);
  started.push(upstream);
  return result;
}

interface EndpointSpec {
  address?: string;
  port: number;
  weight?: number;
  health?: string;
}

/** A cluster with one locality per priority level. */
function cluster(name: string, levels: EndpointSpec[][], extra = ''): string {
  const localities = levels
    .map((endpoints, priority) => {
      const lbEndpoints = endpoints
        .map((e) => {
          const fields = [`endpoint: { address: { socket_address: { address: ${e.address ?? '127.0.0.1'}, port_value: ${e.port} } } }`];
          if (e.weight !== undefined) fields.push(`load_balancing_weight: ${e.weight}`);
          if (e.health !== undefined) fields.push(`health_status: ${e.health}`);
          return `      - { ${fields.join(', ')} }`;
        })
        .join('\n');
      return `    - priority: ${priority}\n      lb_endpoints:\n${lbEndpoints}`;
    })
    .join('\n');
  return `- name: ${name}
${extra}
  load_assignment:
    cluster_name: ${name}
    endpoints:
${localities}
`;
}

async function gateway(clusterYaml: string, name: string): Promise<RunningPortico> {
  const gw = await startPortico(
    simpleBootstrap({ routes: `- match: { prefix: "/" }\n  route: { cluster: ${name} }`, clusters: clusterYaml }),
  );
  started.push(gw);
  return gw;
}

/** `n` sequential GETs over one keep-alive client connection; the response bodies in order. */
async function sendMany(url: string, n: number): Promise<string[]> {
  const dispatcher = new Agent({ connections: 1 });
  const bodies: string[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const res = await request(`${url}/r${i}`, { dispatcher });
      const body = await res.body.text();
      assert.equal(res.statusCode, 200, body);
      bodies.push(body);
    }
  } finally {
    await dispatcher.destroy();
  }
  return bodies;
}

function count(bodies: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const body of bodies) counts[body] = (counts[body] ?? 0) + 1;
  return counts;
}

describe('DNS clusters', () => {
  it('STRICT_DNS resolves localhost (V4_ONLY)', async () => {
    const up = await labelled('dns');
    const gw = await gateway(cluster('strict', [[{ address: 'localhost', port: up.port }]], '  type: STRICT_DNS\n  dns_lookup_family: V4_ONLY'), 'strict');
    const hosts = gw.plane.config.clusters.get('strict')!.allHosts().map((h) => h.key);
    assert.deepEqual(hosts, [`127.0.0.1:${up.port}`]);
    assert.deepEqual(await sendMany(gw.url(), 3), ['dns', 'dns', 'dns']);
    assert.equal(up.requests.length, 3);
  });

  it('LOGICAL_DNS resolves localhost to one host', async () => {
    const up = await labelled('logical');
    const gw = await gateway(cluster('logical', [[{ address: 'localhost', port: up.port }]], '  type: LOGICAL_DNS\n  dns_lookup_family: V4_ONLY'), 'logical');
    assert.equal(gw.plane.config.clusters.get('logical')!.allHosts().length, 1);
    assert.deepEqual(await sendMany(gw.url(), 3), ['logical', 'logical', 'logical']);
  });
});

describe('load balancing', () => {
  it('round robin over three endpoints is exact: each gets one of every three', async () => {
    const ups = await Promise.all(['a', 'b', 'c'].map(labelled));
    const gw = await gateway(cluster('rr', [ups.map((u) => ({ port: u.port }))]), 'rr');
    const bodies = await sendMany(gw.url(), 30);
    for (let i = 0; i < bodies.length; i += 3) {
      assert.deepEqual(bodies.slice(i, i + 3).sort(), ['a', 'b', 'c'], `requests ${i}..${i + 2}: ${bodies.join(',')}`);
    }
  });

  it('weights 3:1 split 400 requests 300/100', async () => {
    const [heavy, light] = await Promise.all([labelled('heavy'), labelled('light')]);
    const gw = await gateway(cluster('weighted', [[{ port: heavy!.port, weight: 3 }, { port: light!.port, weight: 1 }]]), 'weighted');
    const bodies = await sendMany(gw.url(), 400);
    assert.deepEqual(count(bodies), { heavy: 300, light: 100 });
    // Smooth: never more than three heavy picks in a row.
    assert.ok(!bodies.join(',').includes('heavy,heavy,heavy,heavy'), bodies.slice(0, 16).join(','));
  });

  it('uses priority 0 while it is healthy', async () => {
    const [p0, p1] = await Promise.all([labelled('p0'), labelled('p1')]);
    const gw = await gateway(cluster('prio', [[{ port: p0!.port }], [{ port: p1!.port }]]), 'prio');
    assert.deepEqual(count(await sendMany(gw.url(), 20)), { p0: 20 });
  });

  it('fails over to priority 1 when every priority 0 endpoint is UNHEALTHY', async () => {
    const [a, b, c] = await Promise.all([labelled('p0a'), labelled('p0b'), labelled('p1')]);
    const gw = await gateway(
      cluster('failover', [
        [
          { port: a!.port, health: 'UNHEALTHY' },
          { port: b!.port, health: 'UNHEALTHY' },
        ],
        [{ port: c!.port }],
      ]),
      'failover',
    );
    assert.deepEqual(count(await sendMany(gw.url(), 20)), { p1: 20 });
  });

  it(
    'spills over from a partly unhealthy priority 0 by the overprovisioning factor',
    async () => {
      const [a, b, c] = await Promise.all([labelled('half-a'), labelled('half-b'), labelled('half-p1')]);
      const gw = await gateway(
        cluster('spill', [
          [
            { port: a!.port },
            { port: b!.port, health: 'UNHEALTHY' },
          ],
          [{ port: c!.port }],
        ]),
        'spill',
      );
      const counts = count(await sendMany(gw.url(), 400));
      // 70 % / 30 %, with generous room for Envoy's random priority pick.
      assert.ok((counts['half-p1'] ?? 0) > 60 && (counts['half-p1'] ?? 0) < 180, JSON.stringify(counts));
    },
  );
});

describe('upstream connections', () => {
  it('reuses one keep-alive connection for sequential requests', async () => {
    const up = await labelled('keepalive');
    const gw = await gateway(cluster('ka', [[{ port: up.port }]]), 'ka');
    for (let i = 0; i < 10; i++) {
      // A new downstream connection each time: upstream reuse does not depend on it.
      const res = await httpRequest(`${gw.url()}/k${i}`);
      assert.equal(res.status, 200);
    }
    assert.equal(up.requests.length, 10);
    assert.equal(up.connections, 1);
  });

  it('max_requests_per_connection 2 (HttpProtocolOptions) opens 5 connections for 10 requests', async () => {
    const up = await labelled('limited');
    const options = `  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      common_http_protocol_options: { max_requests_per_connection: 2 }
      explicit_http_config: { http_protocol_options: {} }`;
    const gw = await gateway(cluster('limited', [[{ port: up.port }]], options), 'limited');
    await sendMany(gw.url(), 10);
    assert.equal(up.requests.length, 10);
    assert.equal(up.connections, 5);
  });

  it('max_requests_per_connection 1 opens a connection per request', async () => {
    const up = await labelled('single');
    const options = `  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      common_http_protocol_options: { max_requests_per_connection: 1 }
      explicit_http_config: { http_protocol_options: {} }`;
    const gw = await gateway(cluster('single', [[{ port: up.port }]], options), 'single');
    await sendMany(gw.url(), 6);
    assert.equal(up.requests.length, 6);
    assert.equal(up.connections, 6);
  });
});

describe('connect timeout', () => {
  const hasPython = spawnSync('python3', ['-c', 'pass']).status === 0;

  /**
   * A listener that never accepts, with its one-slot backlog filled: further connection attempts get no
   * SYN-ACK, so they stay pending until the client gives up.
   */
  async function blackhole(): Promise<{ port: number; close(): void }> {
    const child: ChildProcess = spawn(
      'python3',
      ['-c', 'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(120)'],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
      child.once('error', reject);
    });
    const fillers: Socket[] = [];
    for (let i = 0; i < 3; i++) {
      const socket = connect({ port, host: '127.0.0.1' });
      socket.on('error', () => {});
      fillers.push(socket);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    return {
      port,
      close() {
        for (const socket of fillers) socket.destroy();
        child.kill('SIGKILL');
      },
    };
  }

  it('defaults to 5 s', async () => {
    const gw = await gateway(cluster('defaults', [[{ port: 9 }]]), 'defaults');
    assert.equal(gw.plane.config.clusters.get('defaults')!.settings.connectTimeoutMs, 5000);
  });

  it('a connect that gets no answer fails after the default 5 s with 503 connection timeout', { skip: hasPython ? false : 'needs python3 for a listener that never accepts' }, async () => {
    const hole = await blackhole();
    try {
      const gw = await gateway(cluster('slow_connect', [[{ port: hole.port }]]), 'slow_connect');
      const startedAt = Date.now();
      const res = await httpRequest(gw.url(), { timeoutMs: 30_000 });
      const elapsed = Date.now() - startedAt;
      assert.equal(res.status, 503);
      assert.equal(res.body, 'upstream connect error or disconnect/reset before headers. reset reason: connection timeout');
      assert.ok(elapsed >= 4_500, `gave up after ${elapsed} ms, before the 5 s default`);
    } finally {
      hole.close();
    }
  });

  it('honours a configured connect_timeout', { skip: hasPython ? false : 'needs python3 for a listener that never accepts' }, async () => {
    const hole = await blackhole();
    try {
      const gw = await gateway(cluster('quick_connect', [[{ port: hole.port }]], '  connect_timeout: 0.5s'), 'quick_connect');
      const startedAt = Date.now();
      const res = await httpRequest(gw.url(), { timeoutMs: 30_000 });
      assert.equal(res.status, 503);
      assert.match(res.body, /reset reason: connection timeout$/);
      assert.ok(Date.now() - startedAt >= 450);
    } finally {
      hole.close();
    }
  });
});
