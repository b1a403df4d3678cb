/**
 * Request mirroring (`request_mirror_policies`) end to end: what the mirror receives, that nothing the mirror
 * does reaches the client, which requests are mirrored, the stats of mirror copies, and that a slow mirror
 * never slows the main request's body.
 */
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { checkBootstrap, parseDocument } from '../../src/config/load.js';
import type { ConfigError } from '../../src/config/errors.js';
import { compileBootstrap } from '../../src/dataplane/data-plane.js';
import { shadowAuthority } from '../../src/dataplane/router/request-mirror.js';
import { createLogger } from '../../src/util/logger.js';
import { type RunningPortico, simpleBootstrap, startPortico, stat, staticCluster } from '../support/portico.js';
import {
  httpRequest,
  refusedPort,
  startMisbehavingUpstream,
  startRecordingUpstream,
  type MisbehavingUpstream,
  type RecordingUpstream,
} from '../support/upstreams.js';
import { waitFor } from '../support/wait.js';
import { EXTENSIONS } from '../../src/extensions/registry.js';

const started: Array<{ close(): Promise<void> }> = [];
after(async () => {
  await Promise.all(started.map((s) => s.close()));
});

function track<T extends { close(): Promise<void> }>(thing: T): T {
  started.push(thing);
  return thing;
}

async function recording(status = 200): Promise<RecordingUpstream> {
  return track(
    await startRecordingUpstream((_req, res) => {
      res.writeHead(status, { 'content-type': 'text/plain', 'content-length': 6 });
      res.end(`${status} ok`);
    }),
  );
}

/** A gateway with a `main` and a `mirror` cluster (plus `extra`) whose routes are given in YAML. */
async function gateway(routes: string, ports: { main: number; mirror: number; extra?: number }, prefix = ''): Promise<RunningPortico> {
  const clusters = staticCluster('main', ports.main) + staticCluster('mirror', ports.mirror) + staticCluster('extra', ports.extra ?? ports.mirror);
  return track(await startPortico(prefix + simpleBootstrap({ routes, clusters })));
}

/** `size` bytes streamed in 64 KiB chunks (chunked unless the request sets content-length). */
function bigBody(size: number): Readable {
  const chunk = Buffer.alloc(64 * 1024, 'm');
  return Readable.from(
    (function* () {
      for (let sent = 0; sent < size; sent += chunk.length) yield chunk;
    })(),
  );
}

const MIRROR_ALL = `- match: { prefix: / }
  route:
    cluster: main
    timeout: 1s
    request_mirror_policies: [{ cluster: mirror }]
`;

describe('request mirroring', () => {
  it('shadowAuthority appends -shadow to the host part, before any port', () => {
    assert.equal(shadowAuthority('localhost:10000'), 'localhost-shadow:10000');
    assert.equal(shadowAuthority('example.com'), 'example.com-shadow');
    assert.equal(shadowAuthority('[::1]:8080'), '[::1]-shadow:8080');
    assert.equal(shadowAuthority('[::1]'), '[::1]-shadow');
  });

  it('sends the mirror the method, rewritten path, headers and body of the upstream request, with a -shadow host', async () => {
    const main = await recording();
    const mirror = await recording();
    const gw = await gateway(
      `- match: { prefix: /api/ }
  request_headers_to_add: [{ header: { key: x-added, value: by-route } }]
  route:
    cluster: main
    prefix_rewrite: /v2/
    request_mirror_policies: [{ cluster: mirror }]
`,
      { main: main.port, mirror: mirror.port },
    );
    const res = await httpRequest(`${gw.url()}/api/items?q=1`, {
      method: 'POST',
      headers: { host: 'shop.example:8080', 'x-custom': 'yes', 'content-type': 'text/plain' },
      body: 'the request body',
    });
    assert.equal(res.status, 200);
    assert.equal(res.body, '200 ok');
    await waitFor(() => mirror.requests.length === 1, 'the mirrored request');
    const [sent] = main.requests;
    const [copy] = mirror.requests;
    assert.equal(copy!.method, 'POST');
    assert.equal(copy!.url, '/v2/items?q=1');
    assert.equal(copy!.body.toString(), 'the request body');
    assert.equal(sent!.headers.host, 'shop.example:8080');
    assert.equal(copy!.headers.host, 'shop.example-shadow:8080');
    for (const name of ['x-custom', 'x-added', 'x-envoy-original-path', 'x-request-id', 'x-forwarded-proto', 'content-length']) {
      assert.equal(copy!.headers[name], sent!.headers[name], name);
    }
    await waitFor(() => stat(gw, 'cluster.mirror.upstream_rq_completed') === 1, 'the mirror copy to be counted');
    assert.equal(stat(gw, 'cluster.mirror.upstream_rq_total'), 1);
    assert.equal(stat(gw, 'cluster.mirror.upstream_rq_200'), 1);
    assert.equal(stat(gw, 'cluster.mirror.upstream_rq_2xx'), 1);
    assert.equal(stat(gw, 'cluster.mirror.upstream_rq_active'), 0);
    assert.equal(stat(gw, 'cluster.mirror.upstream_rq_pending_active'), 0);
    assert.equal(stat(gw, 'cluster.main.upstream_rq_total'), 1);
  });

  it('keeps the host as it is with disable_shadow_host_suffix_append', async () => {
    const main = await recording();
    const mirror = await recording();
    const gw = await gateway(
      `- match: { prefix: / }
  route: { cluster: main, request_mirror_policies: [{ cluster: mirror, disable_shadow_host_suffix_append: true }] }
`,
      { main: main.port, mirror: mirror.port },
    );
    assert.equal((await httpRequest(`${gw.url()}/`, { headers: { host: 'plain.example' } })).status, 200);
    await waitFor(() => mirror.requests.length === 1, 'the mirrored request');
    assert.equal(mirror.requests[0]!.headers.host, 'plain.example');
  });

  describe('the client never sees the mirror', () => {
    const modes: Array<['reset' | 'garbage', string]> = [
      ['reset', 'upstream_rq_rx_reset'],
      ['garbage', 'upstream_cx_protocol_error'],
    ];
    for (const [mode, counter] of modes) {
      it(`a mirror that answers with ${mode}: 200 from main, ${counter} and a 503 on the mirror cluster`, async () => {
        const main = await recording();
        const mirror = track(await startMisbehavingUpstream(mode));
        const gw = await gateway(MIRROR_ALL, { main: main.port, mirror: mirror.port });
        const res = await httpRequest(`${gw.url()}/x`);
        assert.equal(res.status, 200);
        assert.equal(res.body, '200 ok');
        await waitFor(() => stat(gw, `cluster.mirror.${counter}`) === 1, `${counter} on the mirror cluster`);
        await waitFor(() => stat(gw, 'cluster.mirror.upstream_rq_active') === 0, 'the mirror copy to end');
        assert.equal(stat(gw, 'cluster.mirror.upstream_rq_503'), 1);
        assert.equal(stat(gw, 'cluster.main.upstream_rq_200'), 1);
      });
    }

    it('a mirror answering 500: 200 from main, upstream_rq_500 on the mirror cluster', async () => {
      const main = await recording();
      const mirror = await recording(500);
      const gw = await gateway(MIRROR_ALL, { main: main.port, mirror: mirror.port });
      const res = await httpRequest(`${gw.url()}/x`);
      assert.equal(res.status, 200);
      assert.equal(res.body, '200 ok');
      await waitFor(() => stat(gw, 'cluster.mirror.upstream_rq_500') === 1, 'the 500 to be counted');
      assert.equal(stat(gw, 'cluster.mirror.upstream_rq_5xx'), 1);
    });

    it('an unreachable mirror: 200 from main, a connect failure on the mirror cluster', async () => {
      const main = await recording();
      const gw = await gateway(MIRROR_ALL, { main: main.port, mirror: await refusedPort() });
      const res = await httpRequest(`${gw.url()}/x`);
      assert.equal(res.status, 200);
      await waitFor(() => stat(gw, 'cluster.mirror.upstream_cx_connect_fail') === 1, 'the connect failure');
      await waitFor(() => stat(gw, 'cluster.mirror.upstream_rq_active') === 0, 'the mirror copy to end');
      assert.equal(stat(gw, 'cluster.mirror.upstream_rq_503'), 1);
    });

    it('a hanging mirror: the client has its answer while the copy is still waiting; the route timeout ends the copy', async () => {
      const main = await recording();
      const mirror: MisbehavingUpstream = track(await startMisbehavingUpstream('hang'));
      const gw = await gateway(MIRROR_ALL.replace('timeout: 1s', 'timeout: 2s'), { main: main.port, mirror: mirror.port });
      const res = await httpRequest(`${gw.url()}/x`);
      assert.equal(res.status, 200);
      assert.equal(res.body, '200 ok');
      // The answer came while the mirror copy was still outstanding (it only ends with the 2 s route timeout).
      assert.equal(stat(gw, 'cluster.mirror.upstream_rq_active'), 1);
      assert.equal(stat(gw, 'cluster.mirror.upstream_rq_timeout'), 0);
      await waitFor(() => stat(gw, 'cluster.mirror.upstream_rq_timeout') === 1, 'the mirror timeout');
      assert.equal(stat(gw, 'cluster.mirror.upstream_rq_504'), 1);
      assert.equal(stat(gw, 'cluster.mirror.upstream_rq_active'), 0);
      assert.equal(mirror.requests.length, 1);
      assert.equal(stat(gw, 'cluster.main.upstream_rq_timeout'), 0);
    });
  });

  describe('which requests are mirrored', () => {
    it('runtime_fraction 0 mirrors nothing; a runtime key overrides the default', async () => {
      const main = await recording();
      const mirror = await recording();
      const runtime = 'layered_runtime: { layers: [{ name: static, static_layer: { mirror: { percent: 100 } } }] }\n';
      const gw = await gateway(
        `- match: { prefix: /never }
  route: { cluster: main, request_mirror_policies: [{ cluster: mirror, runtime_fraction: { default_value: { numerator: 0 } } }] }
- match: { prefix: /runtime }
  route:
    cluster: main
    request_mirror_policies: [{ cluster: mirror, runtime_fraction: { default_value: { numerator: 0 }, runtime_key: mirror.percent } }]
`,
        { main: main.port, mirror: mirror.port },
        runtime,
      );
      for (let i = 0; i < 20; i++) assert.equal((await httpRequest(`${gw.url()}/never`)).status, 200);
      assert.equal((await httpRequest(`${gw.url()}/runtime`)).status, 200);
      await waitFor(() => mirror.requests.length === 1, 'the mirrored request');
      assert.equal(mirror.requests[0]!.url, '/runtime');
      assert.equal(stat(gw, 'cluster.mirror.upstream_rq_total'), 1);
    });

    it('cluster_header: the named cluster gets the copy; a missing, empty or unknown name mirrors nothing, without error', async () => {
      const main = await recording();
      const mirror = await recording();
      const extra = await recording();
      const gw = await gateway(
        `- match: { prefix: / }
  route: { cluster: main, request_mirror_policies: [{ cluster_header: x-mirror-cluster }] }
`,
        { main: main.port, mirror: mirror.port, extra: extra.port },
      );
      const send = (value?: string) =>
        httpRequest(`${gw.url()}/h`, { headers: value === undefined ? {} : { 'x-mirror-cluster': value } });
      for (const value of [undefined, '', 'no-such-cluster']) assert.equal((await send(value)).status, 200);
      assert.equal((await send('extra')).status, 200);
      await waitFor(() => extra.requests.length === 1, 'the copy on extra');
      assert.equal((await send('mirror')).status, 200);
      await waitFor(() => mirror.requests.length === 1, 'the copy on mirror');
      assert.equal(main.requests.length, 5);
      assert.equal(stat(gw, 'http.ingress_http.no_cluster'), 0);
    });

    it('every policy sends its own copy; a virtual host policy applies to routes without their own', async () => {
      const main = await recording();
      const mirror = await recording();
      const extra = await recording();
      const clusters = staticCluster('main', main.port) + staticCluster('mirror', mirror.port) + staticCluster('extra', extra.port);
      const gw = track(
        await startPortico(
          simpleBootstrap({
            routes: `- match: { prefix: /own }
  route: { cluster: main, request_mirror_policies: [{ cluster: mirror }, { cluster: extra }] }
- match: { prefix: /inherited }
  route: { cluster: main }
`,
            clusters,
          }).replace('            - name: backend\n', '            - name: backend\n              request_mirror_policies: [{ cluster: extra }]\n'),
        ),
      );
      assert.equal((await httpRequest(`${gw.url()}/own`)).status, 200);
      await waitFor(() => mirror.requests.length === 1 && extra.requests.length === 1, 'both copies');
      assert.equal((await httpRequest(`${gw.url()}/inherited`)).status, 200);
      await waitFor(() => extra.requests.length === 2, 'the inherited copy');
      assert.equal(extra.requests[1]!.url, '/inherited');
      assert.equal(mirror.requests.length, 1);
    });
  });

  it('a mirror that keeps up gets the whole of a large streamed body', async () => {
    const main = await recording();
    const mirror = await recording();
    const gw = await gateway(MIRROR_ALL, { main: main.port, mirror: mirror.port });
    const size = 4 * 1024 * 1024;
    const res = await httpRequest(`${gw.url()}/upload`, { method: 'POST', body: bigBody(size) });
    assert.equal(res.status, 200);
    await waitFor(() => mirror.requests.length === 1, 'the mirrored upload');
    assert.equal(main.requests[0]!.bodySize, size);
    assert.equal(mirror.requests[0]!.bodySize, size);
    assert.equal(stat(gw, 'cluster.main.retry_or_shadow_abandoned'), 0);
  });

  it('a mirror that does not read never slows the main request: its body reaches main in full, the copy is abandoned', async () => {
    const main = await recording();
    // Accepts connections and never reads from them.
    const sockets = new Set<Socket>();
    const stalled = createServer((socket) => {
      socket.pause();
      sockets.add(socket);
    });
    await new Promise<void>((resolve) => stalled.listen(0, '127.0.0.1', resolve));
    track({
      close: () =>
        new Promise<void>((resolve) => {
          for (const socket of sockets) socket.destroy();
          stalled.close(() => resolve());
        }),
    });
    const gw = await gateway(MIRROR_ALL.replace('timeout: 1s', 'timeout: 30s'), { main: main.port, mirror: (stalled.address() as AddressInfo).port });
    const size = 48 * 1024 * 1024;
    const res = await httpRequest(`${gw.url()}/upload`, { method: 'POST', headers: { 'content-length': String(size) }, body: bigBody(size), timeoutMs: 60_000 });
    assert.equal(res.status, 200);
    assert.equal(main.requests[0]!.bodySize, size);
    assert.equal(stat(gw, 'cluster.main.retry_or_shadow_abandoned'), 1);
    assert.equal(stat(gw, 'cluster.mirror.upstream_rq_tx_reset'), 1);
    assert.equal(stat(gw, 'cluster.mirror.upstream_rq_active'), 0);
  });

  it('refuses a policy with both or neither of cluster and cluster_header, and an unknown mirror cluster, with paths', () => {
    const yaml = simpleBootstrap({
      routes: `- match: { prefix: / }
  route:
    cluster: main
    request_mirror_policies: [{ cluster: main, cluster_header: x-c }, { runtime_fraction: { default_value: { numerator: 5 } } }, { cluster: nowhere }]
`,
      clusters: staticCluster('main', 1),
    });
    const errors: ConfigError[] = [];
    const { bootstrap, errors: checked } = checkBootstrap(parseDocument(yaml, 'test.yaml', errors));
    compileBootstrap(bootstrap, createLogger('off'), errors, EXTENSIONS);
    const policies =
      'static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route.request_mirror_policies';
    assert.deepEqual(
      [...checked, ...errors].map((e) => `${e.code} ${e.path}`),
      [`unknown_cluster ${policies}[2].cluster`, `oneof_conflict ${policies}[0]`, `missing_required ${policies}[1]`],
    );
  });
});
