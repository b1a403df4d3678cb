import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PACKAGE_ROOT } from '../../src/util/package-root.js';
import { startEchoServer, type EchoServer } from '../../src/echo/echo-server.js';
import { httpRequest, startRecordingUpstream } from '../support/upstreams.js';
import { freePort } from '../support/ports.js';
import { simpleBootstrap, staticCluster } from '../support/portico.js';

const BIN = join(PACKAGE_ROOT, 'bin', 'portico.js');
const dir = mkdtempSync(join(tmpdir(), 'portico-cli-'));

function bootstrap(listenerPort: number, upstreamPort: number, adminPort?: number): string {
  return simpleBootstrap({
    routes: '- match: { prefix: "/" }\n  route: { cluster: echo }',
    clusters: staticCluster('echo', upstreamPort),
    listenerPort,
    adminPort,
  });
}

function write(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('portico CLI', () => {
  let echo: EchoServer;
  before(async () => {
    echo = await startEchoServer({ name: 'cli-echo' });
  });
  after(() => echo.close());

  it('validate exits 0 on a valid file and 1 with every problem on an invalid one', () => {
    const good = write('good.yaml', bootstrap(1, 2));
    const ok = spawnSync(process.execPath, [BIN, 'validate', '-c', good], { encoding: 'utf8' });
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /OK/);

    const bad = write('bad.yaml', bootstrap(1, 2).replace('cluster: echo', 'cluster: nope').replace('stat_prefix: ingress_http', 'stat_prefix: ingress_http\n          bogus: 1'));
    const result = spawnSync(process.execPath, [BIN, 'validate', '-c', bad], { encoding: 'utf8' });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /typed_config\.bogus: unknown field "bogus"/);
  });

  it('validate and run report a bad regex in the same pass as an unknown cluster', () => {
    const bad = write('regex.yaml', bootstrap(1, 2).replace('cluster: echo', 'cluster: nope').replace('prefix: "/"', 'safe_regex: { regex: "/(?=x)" }'));
    for (const command of ['validate', 'run']) {
      const result = spawnSync(process.execPath, [BIN, command, '-c', bad], { encoding: 'utf8', timeout: 10_000 });
      assert.equal(result.status, 1, command);
      assert.match(result.stderr, /configuration rejected, 2 problems:/, command);
      assert.match(result.stderr, /route\.cluster: route names unknown cluster "nope"/, command);
      assert.match(result.stderr, /match\.safe_regex\.regex: invalid regex '\/\(\?=x\)'.*lookaround is not supported by RE2/, command);
    }
  });

  it('every command answers --help (or -h) with its options, exits 0 and starts nothing', () => {
    const options: Record<string, RegExp> = {
      run: /--concurrency N/,
      validate: /--config-yaml YAML/,
      start: /--data-dir DIR/,
      apply: /--dry-run/,
      get: /--output FORMAT/,
      delete: /--server URL/,
      ratelimit: /--redis-url URL/,
      echo: /--port N/,
    };
    for (const [command, option] of Object.entries(options)) {
      for (const flag of ['--help', '-h']) {
        const result = spawnSync(process.execPath, [BIN, command, flag], { encoding: 'utf8', timeout: 10_000 });
        assert.equal(result.status, 0, `${command} ${flag}: ${result.stderr}`);
        assert.ok(result.stdout.startsWith(`Usage: portico ${command}`), result.stdout);
        assert.match(result.stdout, option, command);
        assert.equal(result.stderr, '');
      }
    }
  });

  it('validate reports a missing file and bad flags clearly', () => {
    const missing = spawnSync(process.execPath, [BIN, 'validate', '-c', join(dir, 'nope.yaml')], { encoding: 'utf8' });
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /ENOENT|no such file/);
    const flag = spawnSync(process.execPath, [BIN, 'run', '--no-such-flag'], { encoding: 'utf8' });
    assert.equal(flag.status, 1);
    assert.match(flag.stderr, /no-such-flag/);
    const good = write('flush.yaml', bootstrap(1, 2));
    for (const value of ['0', '-5', '1.5', 'soon', '', '2147483648']) {
      const interval = spawnSync(process.execPath, [BIN, 'validate', '-c', good, `--file-flush-interval-msec=${value}`], { encoding: 'utf8' });
      assert.equal(interval.status, 1, value);
      assert.equal(interval.stderr, `portico: invalid --file-flush-interval-msec "${value}" (a whole number, 1 to 2147483647)\n`);
    }
  });

  it('run refuses to start on an invalid configuration', () => {
    const bad = write('refused.yaml', bootstrap(1, 2).replace('cluster: echo', 'cluster: nope'));
    const result = spawnSync(process.execPath, [BIN, 'run', '-c', bad], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /unknown cluster "nope"/);
  });

  it('run serves traffic, answers the admin endpoint and stops on SIGTERM', async () => {
    const [listenerPort, adminPort] = [await freePort(), await freePort()];
    const file = write('serve.yaml', bootstrap(listenerPort, echo.port, adminPort));
    const child = spawn(process.execPath, [BIN, 'run', '-c', file, '-l', 'warning'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk));
    try {
      await waitFor(async () => (await httpRequest(`http://127.0.0.1:${adminPort}/ready`)).status === 200).catch((err: Error) => {
        throw new Error(`${err.message} (exit code ${child.exitCode}); portico said:\n${output}`);
      });
      const response = await httpRequest(`http://127.0.0.1:${listenerPort}/hello`);
      assert.equal(response.status, 200);
      assert.equal(JSON.parse(response.body).name, 'cli-echo');
      const info = JSON.parse((await httpRequest(`http://127.0.0.1:${adminPort}/server_info`)).body);
      assert.equal(info.state, 'LIVE');
      assert.equal(info.command_line_options.file_flush_interval, '10s');
      const dump = JSON.parse((await httpRequest(`http://127.0.0.1:${adminPort}/config_dump`)).body);
      assert.deepEqual(
        dump.configs.map((c: { '@type': string }) => c['@type']),
        ['BootstrapConfigDump', 'ClustersConfigDump', 'ListenersConfigDump', 'RoutesConfigDump'].map((t) => `type.googleapis.com/envoy.admin.v3.${t}`),
      );
      const cluster = dump.configs[1].static_clusters[0].cluster;
      assert.equal(cluster['@type'], 'type.googleapis.com/envoy.config.cluster.v3.Cluster');
      assert.equal(cluster.name, 'echo');
      assert.equal(cluster.connect_timeout, '1s');
      assert.equal(dump.configs[3].static_route_configs[0].route_config.virtual_hosts[0].routes[0].route.cluster, 'echo');
      const clustersOnly = JSON.parse((await httpRequest(`http://127.0.0.1:${adminPort}/config_dump?resource=static_clusters`)).body);
      assert.equal(clustersOnly.configs.length, 1);
      assert.equal(clustersOnly.configs[0]['@type'], 'type.googleapis.com/envoy.admin.v3.ClustersConfigDump.StaticCluster');
      assert.equal((await httpRequest(`http://127.0.0.1:${adminPort}/config_dump?resource=nope`)).status, 404);
      const notAllowed = await httpRequest(`http://127.0.0.1:${adminPort}/quitquitquit`);
      assert.equal(notAllowed.status, 405);
      const unknown = await httpRequest(`http://127.0.0.1:${adminPort}/nope`);
      assert.equal(unknown.status, 404);
      assert.match(unknown.body, /admin commands are:/);
    } finally {
      child.kill('SIGTERM');
    }
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.equal(code, 0);
  });

  it('lets an in-flight request finish on SIGTERM, then exits', async () => {
    // The upstream holds /slow until the signal has been sent, so the request is surely in flight then.
    let arrived!: () => void;
    const inFlight = new Promise<void>((resolve) => (arrived = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const upstream = await startRecordingUpstream(async (req, res) => {
      if (req.url === '/slow') {
        arrived();
        await released;
      }
      res.end(req.url);
    });
    try {
      const listenerPort = await freePort();
      const file = write('drain.yaml', bootstrap(listenerPort, upstream.port));
      const child = spawn(process.execPath, [BIN, 'run', '-c', file, '-l', 'warning', '--drain-time-s', '5'], { stdio: 'ignore' });
      const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
      await waitFor(async () => (await httpRequest(`http://127.0.0.1:${listenerPort}/up`)).status === 200);
      const slow = httpRequest(`http://127.0.0.1:${listenerPort}/slow`);
      await inFlight;
      child.kill('SIGTERM');
      // Give the processes time to start draining before the answer comes.
      setTimeout(release, 300);
      const response = await slow;
      assert.equal(response.status, 200);
      assert.equal(response.body, '/slow');
      assert.equal(await exited, 0);
    } finally {
      release();
      await upstream.close();
    }
  });

  it('run --file-flush-interval-msec reaches the workers: their access log files are written that often', async () => {
    const listenerPort = await freePort();
    const log = join(dir, 'flush.log');
    const accessLog = `access_log:
- name: envoy.access_loggers.file
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: ${log}
    log_format: { text_format_source: { inline_string: "%REQ(:PATH)%\\n" } }`;
    const file = write(
      'flush.yaml',
      simpleBootstrap({ routes: '- match: { prefix: "/" }\n  route: { cluster: echo }', clusters: staticCluster('echo', echo.port), listenerPort, hcmExtra: accessLog }),
    );
    const child = spawn(process.execPath, [BIN, 'run', '-c', file, '-l', 'warning', '--concurrency', '1', '--file-flush-interval-msec', '50'], { stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    try {
      await waitFor(async () => (await httpRequest(`http://127.0.0.1:${listenerPort}/flushed`)).status === 200);
      // A deadline shorter than the default interval (10 s): only the flag makes the line come in time.
      await waitFor(async () => existsSync(log) && readFileSync(log, 'utf8').includes('/flushed\n'), 8_000);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0);
  });

  it('merges --config-yaml over the file', () => {
    const good = write('merge.yaml', bootstrap(1, 2));
    const result = spawnSync(process.execPath, [BIN, 'validate', '-c', good, '--config-yaml', 'static_resources: { clusters: [{ name: echo }] }'], {
      encoding: 'utf8',
    });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /duplicate cluster name "echo"/);
  });
});

async function waitFor(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error('timed out waiting for the gateway');
    await new Promise((r) => setTimeout(r, 50));
  }
}
