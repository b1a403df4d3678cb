/**
 * Access logs end to end through real sockets: Envoy's default format, the command operators, json_format,
 * access log filters, listener (per connection) logs, local replies and resets, file flushing (64 KiB batches, the
 * flush interval, configuration updates), stdout/stderr through a real `portico run`, nothing lost on shutdown, log
 * reopening, and configuration errors with their paths.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { ConfigValidationError } from '../../src/config/errors.js';
import { PACKAGE_ROOT } from '../../src/util/package-root.js';
import { checkYaml, httpListener, type Json, parseBootstrap, type RunningPortico, startPortico } from '../support/portico.js';
import { waitFor } from '../support/wait.js';
import { freePort } from '../support/ports.js';
import {
  httpRequest,
  rawRequest,
  refusedPort,
  startMisbehavingUpstream,
  startRecordingUpstream,
  type MisbehavingUpstream,
  type RecordingUpstream,
} from '../support/upstreams.js';

const FILE_LOG = 'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog';
const STDOUT_LOG = 'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog';
const STDERR_LOG = 'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog';
const HCM_PATH = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config';

const dir = mkdtempSync(join(tmpdir(), 'portico-access-log-'));
let files = 0;
const logPath = (name: string): string => join(dir, `${++files}-${name}.log`);

/** A file access log; `format` is a text format (with its newline) unless omitted (Envoy's default). */
function fileLog(path: string, format?: string, filter?: Json): Json {
  return {
    name: 'envoy.access_loggers.file',
    ...(filter ? { filter } : {}),
    typed_config: { '@type': FILE_LOG, path, ...(format === undefined ? {} : { log_format: { text_format_source: { inline_string: format } } }) },
  };
}

function cluster(name: string, ...ports: number[]): Json {
  return {
    name,
    connect_timeout: '1s',
    load_assignment: {
      cluster_name: name,
      endpoints: [{ lb_endpoints: ports.map((port) => ({ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } })) }],
    },
  };
}

function routeConfig(routes: Json[]): Json {
  return { name: 'local', virtual_hosts: [{ name: 'all', domains: ['*'], routes }] };
}

/** One HTTP listener with `hcmExtra` (access_log...) on its connection manager, as a YAML (JSON) document. */
function bootstrap(options: { routes: Json[]; clusters: Json[]; hcmExtra?: Json; listeners?: Json[]; runtime?: Json }): string {
  const listener = httpListener(routeConfig(options.routes), options.hcmExtra ?? {});
  return JSON.stringify({
    ...(options.runtime ? { layered_runtime: { layers: [{ name: 'static', static_layer: options.runtime }] } } : {}),
    static_resources: { listeners: [listener, ...(options.listeners ?? [])], clusters: options.clusters },
  });
}

function readLines(path: string): string[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, 'utf8');
  return text === '' ? [] : text.replace(/\n$/, '').split('\n');
}

/** Lines are written asynchronously, after the response: waits until `count` lines are there. */
async function waitForLines(path: string, count: number): Promise<string[]> {
  for (let i = 0; i < 500; i++) {
    const lines = readLines(path);
    if (lines.length >= count) return lines;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.fail(`${path}: expected ${count} lines, found:\n${readLines(path).join('\n')}`);
}

async function waitUntil(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.ok(condition(), 'condition not reached');
}

function configErrors(err: unknown): string[] {
  assert.ok(err instanceof ConfigValidationError, String(err));
  return err.errors.map((e) => `${e.path}: ${e.message} [${e.code}]`);
}

describe('access logs', () => {
  let upstream: RecordingUpstream;
  let hanging: MisbehavingUpstream;
  let refused: number;

  before(async () => {
    upstream = await startRecordingUpstream((_req, res, record) => {
      if (record.url.startsWith('/ops')) {
        res.writeHead(201, { 'content-type': 'text/plain', 'x-up': 'upstream-value' });
        res.end('pong!');
      } else {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 });
        res.end('ok');
      }
    });
    hanging = await startMisbehavingUpstream('hang');
    refused = await refusedPort();
  });
  after(async () => {
    await upstream.close();
    await hanging.close();
  });

  const baseRoutes = (): Json[] => [
    { name: 'ops-route', match: { prefix: '/ops' }, route: { cluster: 'up' } },
    { match: { prefix: '/rewrite/' }, route: { cluster: 'up', prefix_rewrite: '/ok/' } },
    { match: { prefix: '/ok' }, route: { cluster: 'up' } },
    { match: { prefix: '/hang' }, route: { cluster: 'hang' } },
    { match: { prefix: '/refused' }, route: { cluster: 'refused' } },
    { match: { prefix: '/empty' }, route: { cluster: 'empty' } },
  ];
  const baseClusters = (): Json[] => [cluster('up', upstream.port), cluster('hang', hanging.port), cluster('refused', refused), cluster('empty')];

  describe('formats', () => {
    let portico: RunningPortico;
    const defaultLog = logPath('default');
    const opsLog = logPath('ops');
    const typedLog = logPath('typed');
    const untypedLog = logPath('untyped');
    const omitLog = logPath('omit');
    const OPS = [
      '%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)%',
      '%START_TIME(%s)%',
      '%START_TIME%',
      '%REQ(:METHOD)%',
      '%REQ(X-MISSING?:PATH)%',
      '%REQ(USER-AGENT):4%',
      '%RESP(CONTENT-TYPE)%',
      '%PROTOCOL%',
      '%RESPONSE_CODE%',
      '%RESPONSE_FLAGS%',
      '%BYTES_RECEIVED%',
      '%BYTES_SENT%',
      '%DURATION%',
      '%UPSTREAM_HOST%',
      '%UPSTREAM_CLUSTER%',
      '%DOWNSTREAM_REMOTE_ADDRESS%',
      '%ROUTE_NAME%',
      '%REQUEST_DURATION%',
      '%RESPONSE_DURATION%',
      '%RESPONSE_TX_DURATION%',
      '%REQ(X-MISSING)%',
      '%RESPONSE_CODE_DETAILS%',
      '%UPSTREAM_REQUEST_ATTEMPT_COUNT%',
      '%REQUEST_HEADER(x-test)%',
      '%RESPONSE_HEADER(x-up)%',
      '%%',
    ];
    const json = {
      method: '%REQ(:METHOD)%',
      code: '%RESPONSE_CODE%',
      bytes: '%BYTES_SENT%',
      cluster: '%UPSTREAM_CLUSTER%',
      flags: '%RESPONSE_FLAGS%',
      missing: '%REQ(x-missing)%',
      nested: { text: 'x %REQ(x-missing)%', path: '%REQ(:PATH)%' },
      numberconst: 7,
      list: ['%REQ(:METHOD)%', 7],
    };

    before(async () => {
      portico = await startPortico(
        bootstrap({
          routes: baseRoutes(),
          clusters: baseClusters(),
          hcmExtra: {
            access_log: [
              fileLog(defaultLog),
              fileLog(opsLog, `${OPS.join('|')}\n`, { header_filter: { header: { name: ':path', string_match: { prefix: '/ops' } } } }),
              { name: 'typed', filter: { header_filter: { header: { name: ':path', string_match: { exact: '/ok/j' } } } }, typed_config: { '@type': FILE_LOG, path: typedLog, log_format: { json_format: json } } },
              { name: 'untyped', filter: { header_filter: { header: { name: ':path', string_match: { exact: '/ok/j' } } } }, typed_config: { '@type': FILE_LOG, path: untypedLog, json_format: json } },
              {
                name: 'omit',
                filter: { header_filter: { header: { name: ':path', string_match: { exact: '/ok/j' } } } },
                typed_config: { '@type': FILE_LOG, path: omitLog, log_format: { json_format: json, omit_empty_values: true } },
              },
            ],
          },
        }),
      );
    });
    after(() => portico.close());

    it("Envoy's default format, each field from the request made", async () => {
      const before = Date.now();
      const res = await httpRequest(`${portico.url()}/ok/path?q=1`, {
        method: 'POST',
        headers: { 'user-agent': 'test-agent', 'x-forwarded-for': '10.1.2.3', 'x-request-id': 'req-123' },
        body: 'hello',
      });
      const afterResponse = Date.now();
      assert.equal(res.status, 200);
      const rewritten = await httpRequest(`${portico.url()}/rewrite/x`, { headers: { 'x-request-id': 'req-456' } });
      assert.equal(rewritten.status, 200);
      const lines = await waitForLines(defaultLog, 2);
      const m = /^\[(\S+)\] "POST \/ok\/path\?q=1 HTTP\/1\.1" 200 - 5 2 (\d+) (\d+) "10\.1\.2\.3" "test-agent" "req-123" "127\.0\.0\.1:(\d+)" "127\.0\.0\.1:(\d+)"$/.exec(lines[0]!);
      assert.ok(m, lines[0]);
      const start = Date.parse(m[1]!);
      assert.match(m[1]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.ok(start >= before - 1 && start <= afterResponse, `${m[1]} outside the request`);
      assert.equal(m[3], res.headers['x-envoy-upstream-service-time']);
      assert.ok(Number(m[2]) >= Number(m[3]), 'DURATION covers the upstream time');
      assert.equal(Number(m[4]), portico.port());
      assert.equal(Number(m[5]), upstream.port);
      // After a prefix_rewrite, the path logged is the original (x-envoy-original-path).
      assert.match(lines[1]!, /^\[\S+\] "GET \/rewrite\/x HTTP\/1\.1" 200 - 0 2 \d+ \d+ "-" "-" "req-456" "127\.0\.0\.1:\d+" "127\.0\.0\.1:\d+"$/);
    });

    it('a text format with every operator, a chunked request body counted', async () => {
      const before = Date.now();
      const chunks = [Buffer.alloc(1000, 'a'), Buffer.alloc(2000, 'b'), Buffer.alloc(500, 'c')];
      const res = await httpRequest(`${portico.url()}/ops/path?x=1`, {
        method: 'POST',
        headers: { 'user-agent': 'agent-007', 'x-test': 'hello' },
        body: Readable.from(chunks),
      });
      const afterResponse = Date.now();
      assert.equal(res.status, 201);
      assert.equal(upstream.requests.at(-1)!.bodySize, 3500);
      const [line] = await waitForLines(opsLog, 1);
      const f = line!.split('|');
      assert.equal(f.length, OPS.length, line);
      assert.equal(f[0], f[2], 'START_TIME with an explicit format equals the default one');
      assert.ok(Date.parse(f[2]!) >= before - 1 && Date.parse(f[2]!) <= afterResponse);
      assert.equal(f[1], String(Math.floor(Date.parse(f[2]!) / 1000)));
      assert.deepEqual(f.slice(3, 12), ['POST', '/ops/path?x=1', 'agen', 'text/plain', 'HTTP/1.1', '201', '-', '3500', '5']);
      assert.match(f[12]!, /^\d+$/);
      assert.deepEqual(f.slice(13, 15), [`127.0.0.1:${upstream.port}`, 'up']);
      assert.match(f[15]!, /^127\.0\.0\.1:\d+$/);
      assert.equal(f[16], 'ops-route');
      for (const i of [17, 18, 19]) assert.match(f[i]!, /^\d+$/, OPS[i]);
      assert.ok(Number(f[17]) <= Number(f[12]) && Number(f[18]) <= Number(f[12]), 'request and response durations within DURATION');
      assert.deepEqual(f.slice(20), ['-', 'via_upstream', '1', 'hello', 'upstream-value', '%']);
    });

    it('json_format: typed values, null for missing, `-` inside text, sorted keys, one object per line', async () => {
      assert.equal((await httpRequest(`${portico.url()}/ok/j`)).status, 200);
      assert.deepEqual(await waitForLines(typedLog, 1), [
        '{"bytes":2,"cluster":"up","code":200,"flags":"-","list":["GET",7],"method":"GET","missing":null,"nested":{"path":"/ok/j","text":"x -"},"numberconst":7}',
      ]);
      // The deprecated FileAccessLog.json_format renders every value as text.
      assert.deepEqual(await waitForLines(untypedLog, 1), [
        '{"bytes":"2","cluster":"up","code":"200","flags":"-","list":["GET","7"],"method":"GET","missing":"-","nested":{"path":"/ok/j","text":"x -"},"numberconst":"7"}',
      ]);
      assert.deepEqual(await waitForLines(omitLog, 1), [
        '{"bytes":2,"cluster":"up","code":200,"flags":"-","list":["GET",7],"method":"GET","nested":{"path":"/ok/j","text":"x "},"numberconst":7}',
      ]);
    });
  });

  describe('local replies and resets', () => {
    let portico: RunningPortico;
    const log = logPath('replies');

    before(async () => {
      portico = await startPortico(
        bootstrap({
          routes: baseRoutes(),
          clusters: baseClusters(),
          hcmExtra: {
            access_log: [fileLog(log, '%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_SENT% %RESPONSE_DURATION% %UPSTREAM_HOST%\n')],
          },
        }),
      );
    });
    after(() => portico.close());

    it('404 NR, 503 UF, 503 UH and a HEAD reply are logged with their code, flag and bytes', async () => {
      assert.equal((await httpRequest(`${portico.url()}/nowhere`)).status, 404);
      const uf = await httpRequest(`${portico.url()}/refused`);
      assert.equal(uf.status, 503);
      const uh = await httpRequest(`${portico.url()}/empty`);
      assert.equal(uh.body, 'no healthy upstream');
      assert.equal((await httpRequest(`${portico.url()}/empty`, { method: 'HEAD' })).status, 503);
      const lines = await waitForLines(log, 4);
      assert.deepEqual(lines, [
        'GET /nowhere 404 NR 0 - -',
        `GET /refused 503 UF ${Buffer.byteLength(uf.body)} - 127.0.0.1:${refused}`,
        'GET /empty 503 UH 19 - -',
        'HEAD /empty 503 UH 0 - -',
      ]);
    });

    it('a client that goes away before the response: code 0, DC', async () => {
      const before = readLines(log).length;
      const connectionsBefore = hanging.connections;
      const socket: Socket = connect(portico.port(), '127.0.0.1');
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.write('GET /hang HTTP/1.1\r\nhost: example\r\n\r\n');
      await waitUntil(() => hanging.requests.length > 0 && hanging.connections > connectionsBefore);
      socket.destroy();
      const lines = await waitForLines(log, before + 1);
      assert.equal(lines.at(-1), `GET /hang 0 DC 0 - 127.0.0.1:${hanging.port}`);
    });

    it('a request the HTTP parser refuses is logged as a protocol error (DPE)', async () => {
      const before = readLines(log).length;
      const result = await rawRequest(portico.port(), 'GARBAGE\r\n\r\n');
      assert.equal(result.status, 400);
      const lines = await waitForLines(log, before + 1);
      assert.equal(lines.at(-1), `- - 400 DPE ${Buffer.byteLength('Bad Request')} - -`);
    });
  });

  it('filters: status code, duration (runtime), not_health_check, traceable, runtime, header, response flag, and/or', async () => {
    const names = [
      'status',
      'duration',
      'durationRuntime',
      'notHealthCheck',
      'traceable',
      'runtimeAll',
      'runtimeNone',
      'runtimeOverride',
      'header',
      'flagNR',
      'anyFlag',
      'and',
      'or',
    ] as const;
    const paths = Object.fromEntries(names.map((name) => [name, logPath(name)])) as Record<(typeof names)[number], string>;
    const format = '%REQ(:PATH)% %RESPONSE_CODE%\n';
    const filters: Record<(typeof names)[number], Json> = {
      status: { status_code_filter: { comparison: { op: 'GE', value: { default_value: 400, runtime_key: 'unset.key' } } } },
      // A duration nothing reaches, then the same threshold lowered to 0 by the runtime.
      duration: { duration_filter: { comparison: { op: 'GE', value: { default_value: 3_600_000, runtime_key: 'unset.key' } } } },
      durationRuntime: { duration_filter: { comparison: { op: 'GE', value: { default_value: 3_600_000, runtime_key: 'log.min_ms' } } } },
      notHealthCheck: { not_health_check_filter: {} },
      traceable: { traceable_filter: {} },
      runtimeAll: { runtime_filter: { runtime_key: 'unset.sampling', percent_sampled: { numerator: 100 } } },
      runtimeNone: { runtime_filter: { runtime_key: 'unset.sampling', percent_sampled: { numerator: 0 }, use_independent_randomness: true } },
      runtimeOverride: { runtime_filter: { runtime_key: 'log.sampling', percent_sampled: { numerator: 0 } } },
      header: { header_filter: { header: { name: 'x-log', present_match: true } } },
      flagNR: { response_flag_filter: { flags: ['UH', 'NR'] } },
      anyFlag: { response_flag_filter: {} },
      and: {
        and_filter: {
          filters: [
            { status_code_filter: { comparison: { op: 'EQ', value: { default_value: 200, runtime_key: 'unset.key' } } } },
            { header_filter: { header: { name: 'x-log' } } },
          ],
        },
      },
      or: { or_filter: { filters: [{ response_flag_filter: { flags: ['NR'] } }, { header_filter: { header: { name: 'x-log' } } }] } },
    };
    const portico = await startPortico(
      bootstrap({
        routes: baseRoutes(),
        clusters: baseClusters(),
        runtime: { log: { min_ms: 0, sampling: 100 } },
        hcmExtra: { access_log: names.map((name) => fileLog(paths[name], format, filters[name])) },
      }),
    );
    assert.equal((await httpRequest(`${portico.url()}/ok/a`)).status, 200);
    assert.equal((await httpRequest(`${portico.url()}/nope`)).status, 404);
    assert.equal((await httpRequest(`${portico.url()}/ok/b`, { headers: { 'x-log': 'yes' } })).status, 200);
    await portico.close();
    const all = ['/ok/a 200', '/nope 404', '/ok/b 200'];
    const expected: Record<(typeof names)[number], string[]> = {
      status: ['/nope 404'],
      duration: [],
      durationRuntime: all,
      notHealthCheck: all,
      traceable: [],
      runtimeAll: all,
      runtimeNone: [],
      runtimeOverride: all,
      header: ['/ok/b 200'],
      flagNR: ['/nope 404'],
      anyFlag: ['/nope 404'],
      and: ['/ok/b 200'],
      or: ['/nope 404', '/ok/b 200'],
    };
    for (const name of names) assert.deepEqual(readLines(paths[name]), expected[name], name);
  });

  it('listener access logs: one line per connection at close, and connections no filter chain matches (NR)', async () => {
    const listenerLog = logPath('listener');
    const streamLog = logPath('streams');
    const format = '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %PROTOCOL% %RESPONSE_CODE% %REQ(:PATH)%\n';
    const unmatched = httpListener(routeConfig(baseRoutes()));
    const chains = unmatched.filter_chains as Json[];
    chains[0]!.filter_chain_match = { destination_port: 1 };
    unmatched.access_log = [fileLog(listenerLog, format)];
    const yaml = JSON.parse(
      bootstrap({ routes: baseRoutes(), clusters: baseClusters(), hcmExtra: { access_log: [fileLog(streamLog, '%REQ(:PATH)%\n')] }, listeners: [unmatched] }),
    ) as { static_resources: { listeners: Json[] } };
    yaml.static_resources.listeners[0]!.access_log = [fileLog(listenerLog, format)];
    const portico = await startPortico(JSON.stringify(yaml));
    try {
      const data = 'GET /ok/1 HTTP/1.1\r\nhost: a\r\n\r\nGET /ok/2 HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n';
      const result = await rawRequest(portico.port(0), data, { responses: 2 });
      assert.equal(result.responses.length, 2);
      assert.deepEqual(await waitForLines(streamLog, 2), ['/ok/1', '/ok/2']);
      const [line] = await waitForLines(listenerLog, 1);
      assert.equal(line, `127.0.0.1 - ${Buffer.byteLength(data)} ${result.rawBuffer.length} - 0 -`);

      const socket = connect(portico.port(1), '127.0.0.1');
      await new Promise((resolve) => socket.once('close', resolve));
      const lines = await waitForLines(listenerLog, 2);
      assert.equal(lines[1], '127.0.0.1 NR 0 0 - 0 -');
    } finally {
      await portico.close();
    }
  });

  it('loggers naming the same file share it; nothing queued is lost when the data plane closes', async () => {
    const shared = logPath('shared');
    const padding = 'x'.repeat(1000);
    const portico = await startPortico(
      bootstrap({
        routes: baseRoutes(),
        clusters: baseClusters(),
        hcmExtra: { access_log: [fileLog(shared, `A %REQ(:PATH)% ${padding}\n`), fileLog(shared, `B %REQ(:PATH)% ${padding}\n`)] },
      }),
    );
    const n = 300;
    const agent = new Agent({ connections: 20 });
    try {
      const statuses = await Promise.all(
        Array.from({ length: n }, async (_, i) => {
          const res = await request(`${portico.url()}/ok/${i}`, { dispatcher: agent });
          await res.body.text();
          return res.statusCode;
        }),
      );
      assert.ok(statuses.every((s) => s === 200));
    } finally {
      await agent.close();
      await portico.close();
    }
    const lines = readLines(shared);
    assert.equal(lines.length, 2 * n);
    const seen = new Set(lines.map((line) => line.slice(0, line.indexOf(' x'))));
    for (let i = 0; i < n; i++) assert.ok(seen.has(`A /ok/${i}`) && seen.has(`B /ok/${i}`), `request ${i}`);
    assert.ok(lines.every((line) => line.endsWith(padding)), 'every line whole');
  });

  it('reopenAccessLogs() moves writing to a new file after rotation', async () => {
    const path = logPath('rotated');
    const portico = await startPortico(bootstrap({ routes: baseRoutes(), clusters: baseClusters(), hcmExtra: { access_log: [fileLog(path, '%REQ(:PATH)%\n')] } }));
    try {
      await httpRequest(`${portico.url()}/ok/before`);
      await waitForLines(path, 1);
      renameSync(path, `${path}.1`);
      await portico.plane.reopenAccessLogs();
      await httpRequest(`${portico.url()}/ok/after`);
      assert.deepEqual(await waitForLines(path, 1), ['/ok/after']);
      assert.deepEqual(readLines(`${path}.1`), ['/ok/before']);
    } finally {
      await portico.close();
    }
  });

  it('configuration errors name their paths: bad operator, unknown flag, unwritable file, unsupported logger and filter', async () => {
    const withLogs = (accessLog: Json[]): string => bootstrap({ routes: baseRoutes(), clusters: baseClusters(), hcmExtra: { access_log: accessLog } });
    const bad = await startPortico(
      withLogs([
        fileLog(logPath('never'), '%NOPE% %REQ(a?b?c)%\n'),
        fileLog(logPath('never'), undefined, { response_flag_filter: { flags: ['NR', 'BOGUS'] } }),
        fileLog(logPath('never'), undefined, { and_filter: { filters: [{ not_health_check_filter: {} }, { response_flag_filter: { flags: ['XX'] } }] } }),
      ]),
    ).then(
      () => assert.fail('started'),
      (err: unknown) => configErrors(err),
    );
    assert.deepEqual(bad, [
      `${HCM_PATH}.access_log[0].typed_config.log_format: format '%NOPE% %REQ(a?b?c)%\n': unknown command operator %NOPE% [invalid_value]`,
      `${HCM_PATH}.access_log[0].typed_config.log_format: REQ(a?b?c): more than 1 alternative header specified [invalid_value]`,
      `${HCM_PATH}.access_log[1].filter.response_flag_filter.flags[1]: unknown response flag "BOGUS" [invalid_value]`,
      `${HCM_PATH}.access_log[2].filter.and_filter.filters[1].response_flag_filter.flags[0]: unknown response flag "XX" [invalid_value]`,
    ]);

    const unwritable = join(dir, 'no-such-dir', 'x.log');
    const io = await startPortico(withLogs([fileLog(logPath('fine')), fileLog(unwritable)])).then(
      () => assert.fail('started'),
      (err: unknown) => configErrors(err),
    );
    assert.equal(io.length, 1);
    assert.match(io[0]!, new RegExp(`^${HCM_PATH.replace(/[.[\]]/g, '\\$&')}\\.access_log\\[1\\]\\.typed_config\\.path: cannot open access log file .*no-such-dir/x\\.log: ENOENT.* \\[io_error\\]$`));

    const refusedConfig = checkYaml(
      withLogs([
        {
          name: 'envoy.access_loggers.http_grpc',
          typed_config: { '@type': 'type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig' },
        },
        fileLog(logPath('never'), undefined, { grpc_status_filter: { statuses: ['OK'] } }),
      ]),
    )
      .filter((e) => e.code.startsWith('unsupported'))
      .map((e) => `${e.path} [${e.code}]`);
    assert.deepEqual(refusedConfig, [
      `${HCM_PATH}.access_log[0] [unsupported_extension]`,
      `${HCM_PATH}.access_log[1].filter.grpc_status_filter [unsupported_field]`,
    ]);

    const listenerBad = JSON.parse(withLogs([])) as { static_resources: { listeners: Json[] } };
    listenerBad.static_resources.listeners[0]!.access_log = [fileLog(logPath('never'), '%BYTES_SENT(x)%\n')];
    const listenerErrors = await startPortico(JSON.stringify(listenerBad)).then(
      () => assert.fail('started'),
      (err: unknown) => configErrors(err),
    );
    assert.deepEqual(listenerErrors, [
      `static_resources.listeners[0].access_log[0].typed_config.log_format: format '%BYTES_SENT(x)%\n': BYTES_SENT does not take any parameters or length [invalid_value]`,
    ]);
  });

  describe('file flushing (Envoy: at 64 KiB, or --file-flush-interval-msec after the first queued line)', () => {
    const LONG_INTERVAL = { fileFlushIntervalMs: 60_000 };
    /** Polls for `count` lines, longer than waitForLines: the point is only that they come without waiting the interval. */
    const waitLong = async (path: string, count: number): Promise<string[]> => {
      await waitFor(() => readLines(path).length >= count, () => `${count} lines in ${path}, found ${readLines(path).length}`);
      return readLines(path);
    };

    it('with a long interval, lines wait in memory until 64 KiB are queued; stopping writes the rest', async () => {
      const path = logPath('batched');
      const padding = 'x'.repeat(1000);
      const portico = await startPortico(
        bootstrap({ routes: baseRoutes(), clusters: baseClusters(), hcmExtra: { access_log: [fileLog(path, `%REQ(:PATH)% ${padding}\n`)] } }),
        LONG_INTERVAL,
      );
      const path3 = (i: number): string => `/ok/${String(i).padStart(3, '0')}`;
      // The batch is written when the queued text reaches 64 KiB: after this many lines of equal length.
      const perBatch = Math.ceil((64 * 1024) / `${path3(0)} ${padding}\n`.length);
      const total = perBatch + 5;
      try {
        for (let i = 0; i < 3; i++) assert.equal((await httpRequest(`${portico.url()}${path3(i)}`)).status, 200);
        // Writing once per event-loop turn would have written these by now; a slow machine cannot make this fail.
        await new Promise((resolve) => setTimeout(resolve, 300));
        assert.deepEqual(readLines(path), []);
        // Concurrent requests, so that lines also come while the batch is being written: they stay queued too.
        const agent = new Agent({ connections: 10 });
        try {
          const statuses = await Promise.all(
            Array.from({ length: total - 3 }, async (_, i) => {
              const res = await request(`${portico.url()}${path3(i + 3)}`, { dispatcher: agent });
              await res.body.text();
              return res.statusCode;
            }),
          );
          assert.ok(statuses.every((status) => status === 200));
        } finally {
          await agent.close();
        }
        await waitLong(path, perBatch);
        await new Promise((resolve) => setTimeout(resolve, 300));
        assert.equal(readLines(path).length, perBatch, 'one batch of 64 KiB, the rest still queued');
      } finally {
        await portico.close();
      }
      const all = Array.from({ length: total }, (_, i) => `${path3(i)} ${padding}`);
      assert.deepEqual(readLines(path).sort(), all, 'close() wrote the lines still queued, every line whole');
    });

    it('with a short interval, queued lines are written without further traffic, batch after batch', async () => {
      const path = logPath('interval');
      const portico = await startPortico(bootstrap({ routes: baseRoutes(), clusters: baseClusters(), hcmExtra: { access_log: [fileLog(path, '%REQ(:PATH)%\n')] } }), {
        fileFlushIntervalMs: 20,
      });
      try {
        await httpRequest(`${portico.url()}/ok/first`);
        assert.deepEqual(await waitLong(path, 1), ['/ok/first']);
        // The timer that fired is armed again by the next line.
        await httpRequest(`${portico.url()}/ok/second`);
        assert.deepEqual(await waitLong(path, 2), ['/ok/first', '/ok/second']);
      } finally {
        await portico.close();
      }
    });

    it('a configuration update writes the lines of the loggers it drops once their connections drain, and close() those still draining', async () => {
      const routeLogs = [logPath('update-1'), logPath('update-2'), logPath('update-3')];
      const connectionLogs = [logPath('update-listener-1'), logPath('update-listener-2'), logPath('update-listener-3')];
      const config = (i: number): string => {
        const yaml = JSON.parse(
          bootstrap({ routes: baseRoutes(), clusters: baseClusters(), hcmExtra: { access_log: [fileLog(routeLogs[i]!, '%REQ(:PATH)%\n')] } }),
        ) as { static_resources: { listeners: Json[] } };
        yaml.static_resources.listeners[0]!.name = 'main';
        yaml.static_resources.listeners[0]!.access_log = [fileLog(connectionLogs[i]!, '%DOWNSTREAM_REMOTE_ADDRESS%\n')];
        return JSON.stringify(yaml);
      };
      const portico = await startPortico(config(0), LONG_INTERVAL);
      let kept: Socket | undefined;
      let keptPort: number | undefined;
      try {
        assert.equal((await httpRequest(`${portico.url()}/ok/one`)).status, 200);
        await portico.plane.update(parseBootstrap(config(1)), 60_000);
        // The dropped logger's line is written when the old connections are gone, not a minute later.
        assert.deepEqual(await waitLong(routeLogs[0]!, 1), ['/ok/one']);

        // A keep-alive connection stays open on the second configuration while a third one comes.
        const socket = connect(portico.port(), '127.0.0.1');
        kept = socket;
        await new Promise((resolve) => socket.once('connect', resolve));
        keptPort = socket.localPort;
        let answer = '';
        socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
        socket.write('GET /ok/kept HTTP/1.1\r\nhost: a\r\n\r\n');
        await waitFor(() => answer.endsWith('ok'), 'the response on the kept connection');
        await portico.plane.update(parseBootstrap(config(2)), 60_000);
        assert.equal((await httpRequest(`${portico.url()}/ok/after`)).status, 200);
      } finally {
        await portico.close();
        kept?.destroy();
      }
      // close() wrote the second configuration's line although its connection was still draining.
      assert.deepEqual(readLines(routeLogs[1]!), ['/ok/kept']);
      assert.deepEqual(readLines(routeLogs[2]!), ['/ok/after']);
      // One line per connection; the kept connection closed after the last update, so through its loggers.
      const connections = connectionLogs.flatMap(readLines);
      assert.equal(connections.length, 3, connections.join('\n'));
      assert.ok(readLines(connectionLogs[2]!).includes(`127.0.0.1:${keptPort}`), readLines(connectionLogs[2]!).join('\n'));
    });
  });

  it('stdout, stderr and /dev/stdout through `portico run`; SIGTERM during requests loses no line, a file buffered for a minute included', async () => {
    const slow = await startRecordingUpstream((_req, res) => {
      setTimeout(() => {
        res.writeHead(200, { 'content-length': 2 });
        res.end('ok');
      }, 200);
    });
    const file = logPath('subprocess');
    const port = await freePort();
    const listener = httpListener(routeConfig([{ match: { prefix: '/' }, route: { cluster: 'slow' } }]), {
      access_log: [
        { name: 'envoy.access_loggers.stdout', typed_config: { '@type': STDOUT_LOG, log_format: { text_format_source: { inline_string: 'OUT %REQ(:PATH)% %RESPONSE_CODE%\n' } } } },
        { name: 'envoy.access_loggers.stderr', typed_config: { '@type': STDERR_LOG, log_format: { text_format_source: { inline_string: 'ERR %REQ(:PATH)% %RESPONSE_CODE%\n' } } } },
        { name: 'dev-stdout', typed_config: { '@type': FILE_LOG, path: '/dev/stdout', log_format: { text_format_source: { inline_string: 'DEV %REQ(:PATH)%\n' } } } },
        fileLog(file, 'FILE %REQ(:PATH)%\n'),
      ],
    });
    (listener.address as { socket_address: Json }).socket_address.port_value = port;
    const config = join(dir, 'subprocess.yaml');
    writeFileSync(config, JSON.stringify({ static_resources: { listeners: [listener], clusters: [cluster('slow', slow.port)] } }));
    const child = spawn(process.execPath, [join(PACKAGE_ROOT, 'bin', 'portico.js'), 'run', '-c', config, '-l', 'warning', '--file-flush-interval-msec', '60000'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const agent = new Agent({ connections: 50 });
    try {
      for (let i = 0; i < 500; i++) {
        const up = await request(`http://127.0.0.1:${port}/warmup`, { dispatcher: agent }).then(
          async (res) => (await res.body.text(), true),
          () => false,
        );
        if (up) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const n = 40;
      const responses = Array.from({ length: n }, async (_, i) => {
        const res = await request(`http://127.0.0.1:${port}/n/${i}`, { dispatcher: agent });
        await res.body.text();
        return res.statusCode;
      });
      // Every request has reached the (slow) upstream, so all are in flight when SIGTERM arrives.
      await waitUntil(() => slow.requests.filter((r) => r.url.startsWith('/n/')).length === n);
      child.kill('SIGTERM');
      assert.deepEqual(await Promise.all(responses), Array(n).fill(200), stderr);
      assert.equal(await exited, 0, stderr);
      const pick = (text: string, prefix: string): string[] => text.split('\n').filter((l) => l.startsWith(`${prefix} /n/`)).sort();
      const expected = (prefix: string, suffix: string): string[] => Array.from({ length: n }, (_, i) => `${prefix} /n/${i}${suffix}`).sort();
      assert.deepEqual(pick(stdout, 'OUT'), expected('OUT', ' 200'));
      assert.deepEqual(pick(stderr, 'ERR'), expected('ERR', ' 200'));
      assert.deepEqual(pick(stdout, 'DEV'), expected('DEV', ''));
      assert.deepEqual(pick(readFileSync(file, 'utf8'), 'FILE'), expected('FILE', ''));
    } finally {
      child.kill('SIGKILL');
      await agent.close();
      await slow.close();
    }
  });
});
