/**
 * `portico ratelimit` through a real @grpc/grpc-js client speaking Envoy's RLS protocol: envoyproxy/ratelimit's
 * configuration format, fixed windows counted in memory and in a real Redis (shared by two services), shadow
 * mode, hot reload, Redis going away and coming back, the admin port, and the command itself. Windows here are
 * hours and days, so that no test straddles the end of one.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { decodeMessage, encodeMessage, envoyMethod } from '../../src/grpc/envoy-protos.js';
import { loadRateLimitConfig } from '../../src/ratelimit/config.js';
import { RateLimitService } from '../../src/ratelimit/service.js';
import { createLogger } from '../../src/util/logger.js';
import { httpRequest } from '../support/upstreams.js';
import { freePort } from '../support/ports.js';
import { BIN } from '../support/start-process.js';
import { hasRedis, REDIS_MISSING, startRedis, type TestRedis } from '../support/redis.js';
import { eventually } from '../support/wait.js';

const RLS = envoyMethod('envoy/service/ratelimit/v3/rls.proto', 'envoy.service.ratelimit.v3.RateLimitService', 'ShouldRateLimit');

const CONFIG = `domain: edge
descriptors:
  - key: generic_key
    value: login
    rate_limit: { unit: hour, requests_per_unit: 3, name: login-per-hour }
  - key: user
    rate_limit: { unit: hour, requests_per_unit: 2 }
  - key: tier
    value: free
    descriptors:
      - key: path
        rate_limit: { unit: day, requests_per_unit: 1 }
  - key: tier
    value: gold
    rate_limit: { unlimited: true }
  - key: shadow
    shadow_mode: true
    rate_limit: { unit: hour, requests_per_unit: 1 }
`;

interface Answer {
  overall_code?: string;
  statuses?: { code?: string; current_limit?: { requests_per_unit?: number; unit?: string; name?: string }; limit_remaining?: number; duration_until_reset?: { seconds?: number } }[];
}

function writeConfig(text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'portico-rl-')), 'config.yaml');
  writeFileSync(file, text);
  return file;
}

function client(port: number): { ask(entries: Record<string, string>[], hits?: number): Promise<Answer>; close(): void } {
  const c = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return {
    ask: (descriptors, hits) =>
      new Promise((resolve, reject) =>
        c.makeUnaryRequest(
          RLS.path,
          (m: object) => encodeMessage(RLS.requestType, m),
          (b: Buffer) => decodeMessage<Answer>(RLS.responseType, b),
          { domain: 'edge', descriptors: descriptors.map((d) => ({ entries: Object.entries(d).map(([key, value]) => ({ key, value })) })), hits_addend: hits },
          (err, res) => (err ? reject(err) : resolve(res!)),
        ),
      ),
    close: () => c.close(),
  };
}

const quiet = createLogger('off');

describe('rate limit service configuration', () => {
  it('reports every problem with its place', () => {
    const file = writeConfig(`domain: d
descriptors:
  - key: a
    rate_limit: { unit: fortnight, requests_per_unit: -1 }
  - value: x
  - key: a
    surprise: 1
`);
    const { config, problems } = loadRateLimitConfig(file);
    assert.equal(config, undefined);
    assert.deepEqual(
      problems.map((p) => p.path.replace(/.*#0/, '')),
      ['.descriptors[0].rate_limit.unit', '.descriptors[0].rate_limit.requests_per_unit', '.descriptors[1].key', '.descriptors[2].surprise', '.descriptors[2]'],
    );
  });
});

describe('rate limit service, in memory', () => {
  let service: RateLimitService;
  let rls: ReturnType<typeof client>;

  before(async () => {
    service = await RateLimitService.start({ configPath: writeConfig(CONFIG), grpcPort: 0, adminPort: 0, log: quiet });
    rls = client(service.grpcPort);
  });
  after(async () => {
    rls.close();
    await service.close();
  });

  it('admits requests_per_unit in a window, then answers OVER_LIMIT with the limit and the time to reset', async () => {
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await rls.ask([{ generic_key: 'login' }]));
    assert.deepEqual(answers.map((a) => a.overall_code), ['OK', 'OK', 'OK', 'OVER_LIMIT']);
    const last = answers[3]!.statuses![0]!;
    assert.deepEqual(last.current_limit, { requests_per_unit: 3, unit: 'HOUR', name: 'login-per-hour' });
    assert.equal(last.limit_remaining ?? 0, 0);
    assert.ok(last.duration_until_reset!.seconds! >= 1 && last.duration_until_reset!.seconds! <= 3600);
    assert.equal(answers[0]!.statuses![0]!.limit_remaining, 2);
  });

  it('counts each value of a key without a value on its own, follows nested descriptors, and lets unmatched and unlimited ones through', async () => {
    assert.equal((await rls.ask([{ user: 'ann' }], 2)).overall_code, 'OK');
    assert.equal((await rls.ask([{ user: 'ann' }])).overall_code, 'OVER_LIMIT');
    assert.equal((await rls.ask([{ user: 'bob' }])).overall_code, 'OK');
    assert.equal((await rls.ask([{ tier: 'free', path: '/a' }])).overall_code, 'OK');
    assert.equal((await rls.ask([{ tier: 'free', path: '/a' }])).overall_code, 'OVER_LIMIT');
    for (let i = 0; i < 5; i++) assert.equal((await rls.ask([{ tier: 'gold' }])).overall_code, 'OK');
    assert.deepEqual((await rls.ask([{ unknown: 'x' }])).statuses, [{ code: 'OK' }]);
    // One descriptor over its limit makes the whole answer OVER_LIMIT.
    const mixed = await rls.ask([{ user: 'cy' }, { user: 'ann' }]);
    assert.equal(mixed.overall_code, 'OVER_LIMIT');
    assert.deepEqual(mixed.statuses!.map((s) => s.code ?? 'OK'), ['OK', 'OVER_LIMIT']);
  });

  it('shadow_mode answers OK but counts what it would have refused, on the admin port', async () => {
    assert.equal((await rls.ask([{ shadow: 'x' }])).overall_code, 'OK');
    assert.equal((await rls.ask([{ shadow: 'x' }])).overall_code, 'OK');
    const stats = (await httpRequest(`http://127.0.0.1:${service.adminPort}/stats`)).body;
    assert.match(stats, /^ratelimit\.service\.rate_limit\.edge\.shadow\.shadow_mode: 1$/m);
    assert.match(stats, /^ratelimit\.service\.rate_limit\.edge\.shadow\.over_limit: 1$/m);
    assert.match(stats, /^ratelimit\.service\.rate_limit\.edge\.generic_key_login\.total_hits: 4$/m);
    assert.match(stats, /^ratelimit\.service\.rate_limit\.edge\.generic_key_login\.over_limit: 1$/m);
    assert.equal((await httpRequest(`http://127.0.0.1:${service.adminPort}/healthcheck`)).status, 200);
    assert.match((await httpRequest(`http://127.0.0.1:${service.adminPort}/stats/prometheus`)).body, /# TYPE \S+ counter/);
  });
});

describe('rate limit service on Redis', { skip: hasRedis() ? false : REDIS_MISSING }, () => {
  let redis: TestRedis;
  let file: string;
  let first: RateLimitService;
  let second: RateLimitService;
  let a: ReturnType<typeof client>;
  let b: ReturnType<typeof client>;

  before(async () => {
    redis = await startRedis();
    file = writeConfig(CONFIG);
    first = await RateLimitService.start({ configPath: file, redisUrl: redis.url, grpcPort: 0, adminPort: 0, log: quiet });
    second = await RateLimitService.start({ configPath: file, redisUrl: redis.url, grpcPort: 0, adminPort: 0, log: quiet });
    a = client(first.grpcPort);
    b = client(second.grpcPort);
  });
  after(async () => {
    a.close();
    b.close();
    await first.close();
    await second.close();
    await redis.stop();
  });

  it('two services on one Redis count as one', async () => {
    const codes = [];
    for (let i = 0; i < 4; i++) codes.push((await (i % 2 === 0 ? a : b).ask([{ generic_key: 'login' }])).overall_code);
    assert.deepEqual(codes, ['OK', 'OK', 'OK', 'OVER_LIMIT']);
  });

  it('a configuration change loses no counts; a bad one is refused and the old one serves', async () => {
    assert.equal((await a.ask([{ user: 'dee' }])).overall_code, 'OK');
    writeFileSync(file, CONFIG.replace('rate_limit: { unit: hour, requests_per_unit: 2 }', 'rate_limit: { unit: hour, requests_per_unit: 3 }'));
    await eventually(() => assert.ok(first.reloads >= 1 && second.reloads >= 1));
    // The count of 1 made under the old limit carries over: 2 more fit under 3.
    assert.deepEqual([(await a.ask([{ user: 'dee' }])).overall_code, (await b.ask([{ user: 'dee' }])).overall_code, (await a.ask([{ user: 'dee' }])).overall_code], ['OK', 'OK', 'OVER_LIMIT']);
    writeFileSync(file, 'domain: edge\ndescriptors: 7\n');
    await eventually(() => assert.ok(first.reloadFailures >= 1));
    assert.equal((await a.ask([{ user: 'dee' }])).overall_code, 'OVER_LIMIT');
  });

  it('with Redis gone, checks fail with UNAVAILABLE and health is 503; once it is back they succeed again', async () => {
    await redis.stop();
    await eventually(async () => {
      await assert.rejects(a.ask([{ user: 'eve' }]), (err: grpc.ServiceError) => err.code === grpc.status.UNAVAILABLE);
    });
    assert.equal((await httpRequest(`http://127.0.0.1:${first.adminPort}/healthcheck`)).status, 503);
    await redis.start();
    await eventually(async () => assert.equal((await a.ask([{ user: 'eve' }])).overall_code, 'OK'), 15_000);
    assert.equal((await httpRequest(`http://127.0.0.1:${first.adminPort}/healthcheck`)).status, 200);
  });
});

describe('portico ratelimit', () => {
  it('--help describes the command', async () => {
    const out = await run(['ratelimit', '--help']);
    assert.equal(out.code, 0);
    assert.match(out.stdout, /--redis-url URL/);
  });

  it('serves the configuration it is given, and refuses a bad one naming the problem', async () => {
    const [grpcPort, adminPort] = [await freePort(), await freePort()];
    const child = spawn(process.execPath, [BIN, 'ratelimit', '-c', writeConfig(CONFIG), '--grpc-port', String(grpcPort), '--admin-port', String(adminPort)], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      await eventually(async () => assert.equal((await httpRequest(`http://127.0.0.1:${adminPort}/healthcheck`)).status, 200), 15_000);
      const rls = client(grpcPort);
      assert.equal((await rls.ask([{ generic_key: 'login' }])).overall_code, 'OK');
      rls.close();
    } finally {
      child.kill('SIGTERM');
    }
    const bad = await run(['ratelimit', '-c', writeConfig('domain: ""\n')]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /domain must be a non-empty string/);
  });
});

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
