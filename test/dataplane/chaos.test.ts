/**
 * Chaos: steady load while upstreams die, come back, hang, reset or answer garbage. With retries and outlier
 * detection a dead host costs the client (almost) nothing and gets traffic again once it is back; a host that
 * misbehaves gets its own 5xx and response flag while the others keep serving.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Pool } from 'undici';
import { simpleBootstrap, startPortico, stat, staticCluster } from '../support/portico.js';
import { startMisbehavingUpstream } from '../support/upstreams.js';
import { waitFor } from '../support/wait.js';

const closers: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const close of closers.reverse()) await close();
});

/** An HTTP upstream that can be killed (listener closed, every connection destroyed) and revived on its port. */
class Backend {
  served = 0;
  port = 0;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(readonly name: string) {}

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      req.resume();
      this.served++;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(this.name) });
      res.end(this.name);
    });
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  async kill(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    const closed = new Promise((resolve) => server.close(resolve));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }
}

/** Keeps `concurrency` keep-alive clients sending GET `path` until stopped; counts answers by status. */
class SteadyLoad {
  readonly statuses = new Map<number, number>();
  total = 0;
  private stopped: Promise<void> | undefined;
  private readonly loops: Promise<void>[];
  private readonly pool: Pool;

  constructor(url: string, path: string, concurrency: number) {
    this.pool = new Pool(url, { connections: concurrency });
    this.loops = Array.from({ length: concurrency }, () => this.loop(path));
  }

  get failures(): number {
    return this.total - (this.statuses.get(200) ?? 0);
  }

  /** Lets each client finish its request, then closes; callable more than once. */
  stop(): Promise<void> {
    this.stopped ??= Promise.all(this.loops).then(() => this.pool.close());
    return this.stopped;
  }

  private async loop(path: string): Promise<void> {
    while (this.stopped === undefined) {
      let status: number;
      try {
        const res = await this.pool.request({ path, method: 'GET' });
        await res.body.text();
        status = res.statusCode;
      } catch {
        status = 0;
      }
      this.total++;
      this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1);
    }
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('chaos', () => {
  it('loses (almost) no request when one of three upstreams dies under load, and sends it traffic again once back', async (t) => {
    const backends = [new Backend('a'), new Backend('b'), new Backend('c')];
    for (const backend of backends) {
      await backend.start();
      closers.push(() => backend.kill());
    }
    const gw = await startPortico(
      simpleBootstrap({
        routes: `- match: { prefix: "/" }
  route:
    cluster: c
    retry_policy:
      retry_on: connect-failure,reset,5xx
      num_retries: 3
      retry_host_predicate:
      - name: envoy.retry_host_predicates.previous_hosts
        typed_config: { "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate }
      host_selection_retry_max_attempts: 3`,
        clusters: `${staticCluster('c', ...backends.map((b) => b.port))}  outlier_detection:
    consecutive_5xx: 3
    interval: 0.1s
    base_ejection_time: 0.5s
`,
      }),
    );
    closers.push(() => gw.close());
    const load = new SteadyLoad(gw.url(), '/work', 8);
    try {
      await waitFor(() => backends.every((b) => b.served > 20), 'every upstream to serve');
      const victim = backends[1]!;
      await victim.kill();
      await sleep(1500);
      const duringOutage = { total: load.total, failures: load.failures };
      await victim.start();
      const servedBeforeReturn = victim.served;
      await waitFor(() => victim.served > servedBeforeReturn + 20, 'the revived upstream to get traffic again', { timeoutMs: 20_000 });
      await load.stop();
      assert.ok(duringOutage.total > 100, `only ${duringOutage.total} requests were sent`);
      const errorRate = load.failures / load.total;
      t.diagnostic(`${load.total} requests, ${load.failures} failed; ${duringOutage.total} sent before the dead upstream came back`);
      assert.ok(
        errorRate < 0.005,
        `${load.failures} of ${load.total} requests failed (${(errorRate * 100).toFixed(2)} %): ${JSON.stringify([...load.statuses])}`,
      );
      assert.ok((stat(gw, 'cluster.c.outlier_detection.ejections_enforced_total') ?? 0) >= 1, 'the dead host was ejected');
      assert.ok((stat(gw, 'cluster.c.upstream_rq_retry') ?? 0) >= 1, 'requests caught by the dying host were retried');
    } finally {
      await load.stop();
    }
  });

  it('answers for upstreams that hang, reset or send garbage with their own 5xx and flag, while another keeps serving', async () => {
    const good = new Backend('good');
    await good.start();
    closers.push(() => good.kill());
    const hang = await startMisbehavingUpstream('hang');
    const reset = await startMisbehavingUpstream('reset');
    const garbage = await startMisbehavingUpstream('garbage');
    for (const u of [hang, reset, garbage]) closers.push(() => u.close());
    const log = join(mkdtempSync(join(tmpdir(), 'portico-chaos-')), 'access.log');
    const gw = await startPortico(
      simpleBootstrap({
        routes: `- match: { prefix: "/hang" }
  route: { cluster: hang, timeout: 0.3s }
- match: { prefix: "/reset" }
  route: { cluster: reset }
- match: { prefix: "/garbage" }
  route: { cluster: garbage }
- match: { prefix: "/" }
  route: { cluster: good }`,
        clusters: [
          staticCluster('good', good.port),
          staticCluster('hang', hang.port),
          staticCluster('reset', reset.port),
          staticCluster('garbage', garbage.port),
        ].join(''),
        hcmExtra: `access_log:
- name: file
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: ${log}
    log_format: { text_format_source: { inline_string: "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\\n" } }`,
      }),
    );
    closers.push(() => gw.close());
    const load = new SteadyLoad(gw.url(), '/good', 4);
    const misbehaving = new Pool(gw.url(), { connections: 6 });
    try {
      await waitFor(() => good.served > 20, 'the good upstream to serve');
      const answers = await Promise.all(
        ['/hang', '/reset', '/garbage'].flatMap((path) =>
          [1, 2].map(async () => {
            const res = await misbehaving.request({ path, method: 'GET' });
            return `${path} ${res.statusCode} ${(await res.body.text()).split('.')[0]}`;
          }),
        ),
      );
      const servedDuring = good.served;
      await waitFor(() => good.served > servedDuring + 20, 'the good upstream to keep serving');
      await load.stop();
      assert.deepEqual(answers.sort(), [
        '/garbage 503 upstream connect error or disconnect/reset before headers',
        '/garbage 503 upstream connect error or disconnect/reset before headers',
        '/hang 504 upstream request timeout',
        '/hang 504 upstream request timeout',
        '/reset 503 upstream connect error or disconnect/reset before headers',
        '/reset 503 upstream connect error or disconnect/reset before headers',
      ]);
      assert.equal(load.failures, 0, `the good route failed: ${JSON.stringify([...load.statuses])}`);
      let lines: string[] = [];
      await waitFor(() => {
        lines = readFileSync(log, 'utf8').split('\n').filter((line) => line !== '' && !line.startsWith('/good '));
        return lines.length === 6;
      }, 'the access log lines of the misbehaving routes');
      assert.deepEqual(lines.sort(), ['/garbage 503 UPE', '/garbage 503 UPE', '/hang 504 UT', '/hang 504 UT', '/reset 503 UC', '/reset 503 UC']);
      assert.equal(stat(gw, 'cluster.garbage.upstream_cx_protocol_error'), 2);
      assert.equal(stat(gw, 'cluster.hang.upstream_rq_timeout'), 2);
      assert.equal(stat(gw, 'cluster.reset.upstream_rq_rx_reset'), 2);
    } finally {
      await load.stop();
      await misbehaving.close();
    }
  });
});
