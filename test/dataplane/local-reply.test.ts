/**
 * Envoy's local replies end to end (reference §9): exact status, body, content type and response flags (seen
 * through a `%RESPONSE_FLAGS%` response header and `response_flag_filter` mappers) for missing routes and
 * upstream failures, the gateway still serving afterwards, and `local_reply_config` mappers and body formats.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEchoServer, type EchoServer } from '../../src/echo/echo-server.js';
import { type Json, type RunningPortico, httpListener, startPortico } from '../support/portico.js';
import {
  httpRequest,
  rawRequest,
  refusedPort,
  startMisbehavingUpstream,
  type HttpResponse,
  type MisbehavingUpstream,
  type MisbehaviorMode,
} from '../support/upstreams.js';


const UPSTREAM_FAILURE = 'upstream connect error or disconnect/reset before headers. reset reason: ';


interface EndpointSpec {
  port: number;
  health?: string;
}

function cluster(name: string, endpoints: EndpointSpec[]): Json {
  return {
    name,
    connect_timeout: '1s',
    load_assignment: {
      cluster_name: name,
      endpoints: [
        {
          lb_endpoints: endpoints.map((e) => ({
            endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: e.port } } },
            ...(e.health ? { health_status: e.health } : {}),
          })),
        },
      ],
    },
  };
}

describe('local replies', () => {
  let echo: EchoServer;
  const misbehaving: Partial<Record<MisbehaviorMode, MisbehavingUpstream>> = {};
  let plain: RunningPortico;
  let mapped: RunningPortico;
  let statusMapped: RunningPortico | undefined;
  let start: (hcmExtra?: Json) => Promise<RunningPortico>;

  before(async () => {
    echo = await startEchoServer({ name: 'ok' });
    for (const mode of ['reset', 'close', 'garbage', 'hang', 'headers-then-reset'] as const) {
      misbehaving[mode] = await startMisbehavingUpstream(mode);
    }
    const refused = await refusedPort();
    const clusters = [
      cluster('ok', [{ port: echo.port }]),
      cluster('empty', []),
      cluster('unhealthy', [{ port: echo.port, health: 'UNHEALTHY' }]),
      cluster('mixed', [{ port: echo.port }, { port: refused, health: 'UNHEALTHY' }]),
      cluster('refused', [{ port: refused }]),
      cluster('reset', [{ port: misbehaving.reset!.port }]),
      cluster('close', [{ port: misbehaving.close!.port }]),
      cluster('garbage', [{ port: misbehaving.garbage!.port }]),
      cluster('hang', [{ port: misbehaving.hang!.port }]),
      cluster('hdrreset', [{ port: misbehaving['headers-then-reset']!.port }]),
    ];
    const forward = (name: string, extra: Json = {}): Json => ({ match: { prefix: `/${name}` }, route: { cluster: name, ...extra } });
    const routeConfig = {
      name: 'local',
      // Makes the response flags of every routed reply visible (overwrite: one value however often applied).
      response_headers_to_add: [{ header: { key: 'x-flags', value: '%RESPONSE_FLAGS%' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }],
      virtual_hosts: [
        {
          name: 'all',
          domains: ['*'],
          routes: [
            forward('ok'),
            forward('empty'),
            forward('unhealthy'),
            forward('mixed'),
            forward('refused'),
            forward('reset'),
            forward('close'),
            forward('garbage'),
            forward('hang', { timeout: '0.3s' }),
            forward('hdrreset'),
            { match: { path: '/direct-text' }, direct_response: { status: 200, body: { inline_string: 'hi' } } },
            { match: { path: '/direct-empty' }, direct_response: { status: 403 } },
          ],
        },
      ],
    };
    const localReplyConfig = {
      mappers: [
        {
          filter: { response_flag_filter: { flags: ['UH'] } },
          status_code: 502,
          body: { inline_string: 'uh mapped' },
          headers_to_add: [{ header: { key: 'x-mapped', value: 'uh' } }],
        },
        {
          filter: { response_flag_filter: { flags: ['NR'] } },
          body_format_override: {
            json_format: {
              code: '%RESPONSE_CODE%',
              message: '%LOCAL_REPLY_BODY%',
              missing: '%REQ(x-missing)%',
              path: '%REQ(:path)%',
              text: 'flags %RESPONSE_FLAGS% %REQ(x-missing)%',
            },
          },
        },
      ],
      body_format: { text_format: '%LOCAL_REPLY_BODY% %RESPONSE_CODE%' },
    };
    start = (hcmExtra: Json = {}) =>
      startPortico(JSON.stringify({ static_resources: { listeners: [httpListener(routeConfig, hcmExtra)], clusters } }));
    [plain, mapped] = await Promise.all([start(), start({ local_reply_config: localReplyConfig })]);
  });

  after(async () => {
    await Promise.all([plain?.close(), mapped?.close(), statusMapped?.close()]);
    await Promise.all([echo?.close(), ...Object.values(misbehaving).map((u) => u.close())]);
  });

  const get = (p: RunningPortico, path: string): Promise<HttpResponse> => httpRequest(p.url() + path);

  /** A normal request still works. */
  async function stillServing(p: RunningPortico): Promise<void> {
    const res = await get(p, '/ok/after');
    assert.equal(res.status, 200, res.body);
    assert.equal((JSON.parse(res.body) as { name: string }).name, 'ok');
  }

  async function assertLocalReply(path: string, status: number, body: string, flags: string | undefined): Promise<void> {
    const res = await get(plain, path);
    assert.equal(res.status, status, `${path}: ${res.status} ${res.body}`);
    assert.equal(res.body, body);
    assert.equal(res.headers['content-length'], String(Buffer.byteLength(body)));
    assert.equal(res.headers['content-type'], body === '' ? undefined : 'text/plain');
    assert.equal(res.headers['server'], 'envoy');
    assert.equal(res.headers['x-flags'], flags);
    assert.equal(res.headers['x-envoy-upstream-service-time'], undefined);
    await stillServing(plain);
  }

  describe('without local_reply_config', () => {
    it('404 with an empty body when no route matches (NR)', async () => {
      await assertLocalReply('/no/route', 404, '', undefined);
    });

    it('503 no healthy upstream for a cluster without endpoints (UH)', async () => {
      await assertLocalReply('/empty', 503, 'no healthy upstream', 'UH');
    });

    it('UNHEALTHY endpoints get no traffic while healthy ones remain', async () => {
      for (let i = 0; i < 6; i++) {
        const res = await get(plain, '/mixed');
        assert.equal(res.status, 200, res.body);
      }
    });

    it(
      'every endpoint UNHEALTHY: Envoy is in panic mode and balances across all hosts',
      async () => {
        const res = await get(plain, '/unhealthy');
        assert.equal(res.status, 200, res.body);
      },
    );

    it('503 connection failure when the upstream refuses the connection (UF)', async () => {
      await assertLocalReply('/refused', 503, UPSTREAM_FAILURE + 'connection failure', 'UF');
    });

    it('503 connection termination when the upstream resets or closes before answering (UC)', async () => {
      await assertLocalReply('/reset', 503, UPSTREAM_FAILURE + 'connection termination', 'UC');
      await assertLocalReply('/close', 503, UPSTREAM_FAILURE + 'connection termination', 'UC');
    });

    it('503 protocol error when the upstream answers garbage (UPE)', async () => {
      await assertLocalReply('/garbage', 503, UPSTREAM_FAILURE + 'protocol error', 'UPE');
    });

    it('504 upstream request timeout when the upstream hangs past the route timeout (UT)', async () => {
      await assertLocalReply('/hang', 504, 'upstream request timeout', 'UT');
    });

    it('an upstream reset after the response headers closes the downstream connection', async () => {
      const result = await rawRequest(plain.port(), 'GET /hdrreset HTTP/1.1\r\nHost: test\r\n\r\n', { timeoutMs: 3000 });
      assert.equal(result.status, 200);
      assert.equal(result.headers['content-length'], '1000');
      assert.equal(result.responses[0]?.complete, false);
      assert.equal(result.body, '0123456789');
      assert.equal(result.closed, true);
      await stillServing(plain);
    });
  });

  describe('local_reply_config', () => {
    it('a response_flag_filter mapper on UH rewrites status and body and adds headers', async () => {
      const res = await get(mapped, '/empty');
      assert.equal(res.status, 502);
      assert.equal(res.body, 'uh mapped 502');
      assert.equal(res.headers['content-type'], 'text/plain');
      assert.equal(res.headers['content-length'], '13');
      assert.equal(res.headers['x-mapped'], 'uh');
      assert.equal(res.headers['x-flags'], 'UH');
    });

    it(
      'a status_code_filter mapper rewrites 503 into 500 with a custom body',
      async () => {
        statusMapped = await start({
          local_reply_config: {
            mappers: [
              {
                filter: {
                  status_code_filter: { comparison: { op: 'EQ', value: { default_value: 503, runtime_key: 'local_reply.status' } } },
                },
                status_code: 500,
                body: { inline_string: 'custom 503 body' },
                headers_to_add: [{ header: { key: 'x-mapped', value: '503' } }],
              },
            ],
            body_format: { text_format: '%LOCAL_REPLY_BODY% %RESPONSE_CODE%' },
          },
        });
        for (const path of ['/refused', '/reset', '/empty']) {
          const res = await get(statusMapped, path);
          assert.equal(res.status, 500, path);
          assert.equal(res.body, 'custom 503 body 500');
          assert.equal(res.headers['content-type'], 'text/plain');
          assert.equal(res.headers['x-mapped'], '503');
        }
        await stillServing(statusMapped);
      },
    );

    it('a local reply no mapper matches gets the default body_format', async () => {
      const res = await get(mapped, '/refused');
      assert.equal(res.status, 503);
      assert.equal(res.body, UPSTREAM_FAILURE + 'connection failure 503');
      assert.equal(res.headers['content-type'], 'text/plain');
      assert.equal(res.headers['x-mapped'], undefined);
      await stillServing(mapped);
    });

    it('body_format text_format applies to every local reply without a mapper, direct responses included', async () => {
      const direct = await get(mapped, '/direct-text');
      assert.equal(direct.status, 200);
      assert.equal(direct.body, 'hi 200');
      assert.equal(direct.headers['content-type'], 'text/plain');
      assert.equal(direct.headers['x-mapped'], undefined);
      // An empty body is the empty string, not the missing-value `-`.
      const empty = await get(mapped, '/direct-empty');
      assert.equal(empty.status, 403);
      assert.equal(empty.body, ' 403');
      assert.equal(empty.headers['content-type'], 'text/plain');
    });

    it('a json_format body_format_override on NR, with typed values, null for missing, `-` inside strings', async () => {
      const res = await get(mapped, '/nothing?x=1');
      assert.equal(res.status, 404);
      assert.equal(res.headers['content-type'], 'application/json');
      assert.equal(res.body, '{"code":404,"message":"","missing":null,"path":"/nothing?x=1","text":"flags NR -"}\n');
      assert.equal(res.headers['content-length'], String(Buffer.byteLength(res.body)));
    });

    it('proxied responses are not local replies', async () => {
      const res = await get(mapped, '/ok/x');
      assert.equal(res.status, 200);
      assert.equal((JSON.parse(res.body) as { name: string }).name, 'ok');
      assert.equal(res.headers['x-mapped'], undefined);
    });
  });
});
