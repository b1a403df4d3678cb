/**
 * End-to-end tests of the HTTP connection manager through real sockets: forwarding headers, request ids,
 * `server`, header limits, timeouts, path normalisation and HTTP/1 protocol options, each observed from the
 * client and from the echo upstream.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startEchoServer, type EchoResponseBody, type EchoServer } from '../../src/echo/echo-server.js';
import { simpleBootstrap, startPortico, staticCluster, type RunningPortico } from '../support/portico.js';
import { httpRequest, rawRequest, type HttpRequestInit, type RawRequestResult } from '../support/upstreams.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const ROUTE_ALL = '- match: { prefix: "/" }\n  route: { cluster: echo }';
const CLIENT_ADDRESS_HEADER = `request_headers_to_add:
- header: { key: x-client, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" }`;

let echo: EchoServer;

before(async () => {
  echo = await startEchoServer({ name: 'cm-echo' });
});
after(async () => {
  await echo.close();
});

interface GatewayOptions {
  hcmExtra?: string;
  routes?: string;
  routeConfigExtra?: string;
  domains?: string;
}

/** Runs `fn` against a gateway in front of the echo server, always closing it. */
async function withGateway(options: GatewayOptions, fn: (gw: RunningPortico) => Promise<void>): Promise<void> {
  const bootstrapOptions: Parameters<typeof simpleBootstrap>[0] = {
    routes: options.routes ?? ROUTE_ALL,
    clusters: staticCluster('echo', echo.port),
  };
  if (options.hcmExtra !== undefined) bootstrapOptions.hcmExtra = options.hcmExtra;
  if (options.routeConfigExtra !== undefined) bootstrapOptions.routeConfigExtra = options.routeConfigExtra;
  if (options.domains !== undefined) bootstrapOptions.domains = options.domains;
  const gw = await startPortico(simpleBootstrap(bootstrapOptions));
  try {
    await fn(gw);
  } finally {
    await gw.close();
  }
}

/** A request through the gateway whose 200 echo is parsed. */
async function echoed(url: string, init: HttpRequestInit = {}): Promise<{ echo: EchoResponseBody; headers: Record<string, unknown> }> {
  const res = await httpRequest(url, init);
  assert.equal(res.status, 200, `expected 200, got ${res.status}: ${res.body}`);
  return { echo: JSON.parse(res.body) as EchoResponseBody, headers: res.headers };
}

/** The echo document of a raw exchange that must have been answered 200 by the upstream. */
function rawEcho(result: RawRequestResult): EchoResponseBody {
  assert.equal(result.status, 200, `expected 200, got ${result.status}: ${result.raw.slice(0, 300)}`);
  return JSON.parse(result.body) as EchoResponseBody;
}

async function waitFor(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' }, () => resolve(socket));
    socket.once('error', reject);
  });
}

describe('x-forwarded-for and the client address', () => {
  it('leaves x-forwarded-for untouched when use_remote_address is false', async () => {
    await withGateway({ routeConfigExtra: CLIENT_ADDRESS_HEADER }, async (gw) => {
      const none = await echoed(gw.url());
      assert.equal(none.echo.headers['x-forwarded-for'], undefined);
      assert.equal(none.echo.headers['x-client'], '127.0.0.1');
      const given = await echoed(gw.url(), { headers: { 'x-forwarded-for': '198.51.100.1, 203.0.113.9' } });
      assert.equal(given.echo.headers['x-forwarded-for'], '198.51.100.1, 203.0.113.9');
      // xff_num_trusted_hops 0: the last address is the client.
      assert.equal(given.echo.headers['x-client'], '203.0.113.9');
    });
  });

  it('appends the peer with use_remote_address and uses it as the client address', async () => {
    await withGateway({ hcmExtra: 'use_remote_address: true', routeConfigExtra: CLIENT_ADDRESS_HEADER }, async (gw) => {
      const none = await echoed(gw.url());
      assert.equal(none.echo.headers['x-forwarded-for'], '127.0.0.1');
      assert.equal(none.echo.headers['x-client'], '127.0.0.1');
      const given = await echoed(gw.url(), { headers: { 'x-forwarded-for': '203.0.113.9' } });
      assert.equal(given.echo.headers['x-forwarded-for'], '203.0.113.9,127.0.0.1');
      assert.equal(given.echo.headers['x-client'], '127.0.0.1');
    });
  });

  it('picks the client address with xff_num_trusted_hops (use_remote_address true)', async () => {
    await withGateway(
      { hcmExtra: 'use_remote_address: true\nxff_num_trusted_hops: 1', routeConfigExtra: CLIENT_ADDRESS_HEADER },
      async (gw) => {
        const { echo: e } = await echoed(gw.url(), { headers: { 'x-forwarded-for': '198.51.100.1, 203.0.113.9' } });
        assert.equal(e.headers['x-client'], '203.0.113.9');
        assert.equal(e.headers['x-forwarded-for'], '198.51.100.1, 203.0.113.9,127.0.0.1');
        assert.equal(e.headers['x-envoy-external-address'], '203.0.113.9');
        // Too few entries: the peer is the client.
        const { echo: short } = await echoed(gw.url());
        assert.equal(short.headers['x-client'], '127.0.0.1');
      },
    );
  });

  it('picks the client address with xff_num_trusted_hops (use_remote_address false)', async () => {
    await withGateway({ hcmExtra: 'xff_num_trusted_hops: 1', routeConfigExtra: CLIENT_ADDRESS_HEADER }, async (gw) => {
      const { echo: e } = await echoed(gw.url(), { headers: { 'x-forwarded-for': '198.51.100.1, 203.0.113.9' } });
      assert.equal(e.headers['x-client'], '198.51.100.1');
      assert.equal(e.headers['x-forwarded-for'], '198.51.100.1, 203.0.113.9');
    });
  });
});

describe('x-forwarded-proto', () => {
  it('is set when absent and kept when present without use_remote_address', async () => {
    await withGateway({}, async (gw) => {
      assert.equal((await echoed(gw.url())).echo.headers['x-forwarded-proto'], 'http');
      const kept = await echoed(gw.url(), { headers: { 'x-forwarded-proto': 'https' } });
      assert.equal(kept.echo.headers['x-forwarded-proto'], 'https');
    });
  });

  it('is overwritten with use_remote_address', async () => {
    await withGateway({ hcmExtra: 'use_remote_address: true' }, async (gw) => {
      const res = await echoed(gw.url(), { headers: { 'x-forwarded-proto': 'https' } });
      assert.equal(res.echo.headers['x-forwarded-proto'], 'http');
    });
  });

  it('is trusted from a trusted hop (use_remote_address with xff_num_trusted_hops)', async () => {
    await withGateway({ hcmExtra: 'use_remote_address: true\nxff_num_trusted_hops: 1' }, async (gw) => {
      const kept = await echoed(gw.url(), { headers: { 'x-forwarded-proto': 'https', 'x-forwarded-for': '203.0.113.9' } });
      assert.equal(kept.echo.headers['x-forwarded-proto'], 'https');
      assert.equal((await echoed(gw.url())).echo.headers['x-forwarded-proto'], 'http');
    });
  });
});

describe('x-envoy-internal', () => {
  it('is set for a loopback client with use_remote_address, and sanitised from external ones', async () => {
    await withGateway({ hcmExtra: 'use_remote_address: true' }, async (gw) => {
      const internal = await echoed(gw.url());
      assert.equal(internal.echo.headers['x-envoy-internal'], 'true');
      assert.equal(internal.echo.headers['x-envoy-external-address'], undefined);
      // Once XFF holds more than the peer, Envoy no longer trusts the request as internal.
      const proxied = await echoed(gw.url(), { headers: { 'x-forwarded-for': '203.0.113.9', 'x-envoy-internal': 'true' } });
      assert.equal(proxied.echo.headers['x-envoy-internal'], undefined);
      assert.equal(proxied.echo.headers['x-envoy-external-address'], '127.0.0.1');
    });
  });

  it('follows a single internal XFF address without use_remote_address', async () => {
    await withGateway({}, async (gw) => {
      const single = await echoed(gw.url(), { headers: { 'x-forwarded-for': '10.1.2.3' } });
      assert.equal(single.echo.headers['x-envoy-internal'], 'true');
      const external = await echoed(gw.url(), { headers: { 'x-forwarded-for': '203.0.113.9', 'x-envoy-internal': 'true' } });
      assert.equal(external.echo.headers['x-envoy-internal'], undefined);
      const two = await echoed(gw.url(), { headers: { 'x-forwarded-for': '10.1.2.3, 10.1.2.4' } });
      assert.equal(two.echo.headers['x-envoy-internal'], undefined);
      // Envoy: without use_remote_address and without XFF the request is external, even from loopback.
      const none = await echoed(gw.url(), { headers: { 'x-envoy-internal': 'true' } });
      assert.equal(none.echo.headers['x-envoy-internal'], undefined);
    });
  });
});

describe('x-request-id', () => {
  it('is generated as a UUID v4 when absent and kept when present', async () => {
    await withGateway({}, async (gw) => {
      const generated = await echoed(gw.url());
      assert.match(String(generated.echo.headers['x-request-id']), UUID_V4);
      assert.equal(generated.headers['x-request-id'], undefined, 'not echoed in the response by default');
      const other = await echoed(gw.url());
      assert.notEqual(other.echo.headers['x-request-id'], generated.echo.headers['x-request-id']);
      const kept = await echoed(gw.url(), { headers: { 'x-request-id': 'client-chosen-id' } });
      assert.equal(kept.echo.headers['x-request-id'], 'client-chosen-id');
    });
  });

  it('is kept from an internal client with use_remote_address, and replaced from an external one', async () => {
    await withGateway({ hcmExtra: 'use_remote_address: true' }, async (gw) => {
      const kept = await echoed(gw.url(), { headers: { 'x-request-id': 'client-chosen-id' } });
      assert.equal(kept.echo.headers['x-request-id'], 'client-chosen-id');
      const edge = await echoed(gw.url(), { headers: { 'x-request-id': 'client-chosen-id', 'x-forwarded-for': '203.0.113.9' } });
      assert.match(String(edge.echo.headers['x-request-id']), UUID_V4);
    });
  });

  it('is returned with always_set_request_id_in_response', async () => {
    await withGateway({ hcmExtra: 'always_set_request_id_in_response: true' }, async (gw) => {
      const res = await echoed(gw.url());
      assert.match(String(res.headers['x-request-id']), UUID_V4);
      assert.equal(res.headers['x-request-id'], res.echo.headers['x-request-id']);
    });
    await withGateway(
      { hcmExtra: 'always_set_request_id_in_response: true', routes: '- match: { prefix: "/only" }\n  route: { cluster: echo }' },
      async (gw) => {
        const local = await httpRequest(`${gw.url()}/elsewhere`, { headers: { 'x-request-id': 'client-chosen-id' } });
        assert.equal(local.status, 404);
        assert.equal(local.headers['x-request-id'], 'client-chosen-id');
      },
    );
  });

  it('is not generated with generate_request_id false', async () => {
    await withGateway({ hcmExtra: 'generate_request_id: false' }, async (gw) => {
      assert.equal((await echoed(gw.url())).echo.headers['x-request-id'], undefined);
      const kept = await echoed(gw.url(), { headers: { 'x-request-id': 'client-chosen-id' } });
      assert.equal(kept.echo.headers['x-request-id'], 'client-chosen-id');
    });
  });
});

describe('server header', () => {
  const withUpstreamServer = '/?response_header=server:upstream-srv';

  it('is envoy by default, overwriting the upstream one, also on local replies', async () => {
    await withGateway({ domains: '["*"]' }, async (gw) => {
      assert.equal((await httpRequest(gw.url())).headers.server, 'envoy');
      assert.equal((await httpRequest(gw.url() + withUpstreamServer)).headers.server, 'envoy');
    });
    await withGateway({ routes: '- match: { prefix: "/only" }\n  route: { cluster: echo }' }, async (gw) => {
      const notFound = await httpRequest(`${gw.url()}/elsewhere`);
      assert.equal(notFound.status, 404);
      assert.equal(notFound.headers.server, 'envoy');
    });
  });

  it('adds no Keep-Alive header (Envoy does not) and a lower-case date on local replies', async () => {
    await withGateway({ routes: '- match: { prefix: "/only" }\n  route: { cluster: echo }' }, async (gw) => {
      const proxied = await httpRequest(`${gw.url()}/only`);
      assert.equal(proxied.headers['keep-alive'], undefined);
      const raw = await rawRequest(gw.port(), 'GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(raw.status, 404);
      assert.match(raw.raw, /\r\ndate: /);
      assert.doesNotMatch(raw.raw, /keep-alive: timeout/i);
    });
  });

  it('uses server_name', async () => {
    await withGateway({ hcmExtra: 'server_name: portico-test' }, async (gw) => {
      assert.equal((await httpRequest(gw.url() + withUpstreamServer)).headers.server, 'portico-test');
    });
  });

  it('PASS_THROUGH keeps the upstream value and adds none', async () => {
    await withGateway({ hcmExtra: 'server_name: portico-test\nserver_header_transformation: PASS_THROUGH' }, async (gw) => {
      assert.equal((await httpRequest(gw.url() + withUpstreamServer)).headers.server, 'upstream-srv');
      assert.equal((await httpRequest(gw.url())).headers.server, undefined);
    });
  });

  it('APPEND_IF_ABSENT keeps the upstream value and adds server_name otherwise', async () => {
    await withGateway({ hcmExtra: 'server_name: portico-test\nserver_header_transformation: APPEND_IF_ABSENT' }, async (gw) => {
      assert.equal((await httpRequest(gw.url() + withUpstreamServer)).headers.server, 'upstream-srv');
      assert.equal((await httpRequest(gw.url())).headers.server, 'portico-test');
    });
  });
});

describe('header limits', () => {
  it('max_request_headers_kb: over the limit is 431, under it passes', async () => {
    await withGateway({ hcmExtra: 'max_request_headers_kb: 4' }, async (gw) => {
      const under = await rawRequest(gw.port(), `GET / HTTP/1.1\r\nHost: x\r\nx-big: ${'a'.repeat(2000)}\r\n\r\n`);
      assert.equal(rawEcho(under).headers['x-big'], 'a'.repeat(2000));
      const over = await rawRequest(gw.port(), `GET / HTTP/1.1\r\nHost: x\r\nx-big: ${'a'.repeat(6000)}\r\n\r\n`);
      assert.equal(over.status, 431);
    });
  });

  it('max_request_headers_kb defaults to 60 KiB', async () => {
    // A direct response: the echo upstream (a plain Node server) has its own 16 KiB header limit.
    const routes = '- match: { prefix: "/" }\n  direct_response: { status: 200, body: { inline_string: "direct" } }';
    await withGateway({ routes }, async (gw) => {
      const under = await rawRequest(gw.port(), `GET / HTTP/1.1\r\nHost: x\r\nx-big: ${'a'.repeat(50_000)}\r\n\r\n`);
      assert.equal(under.status, 200);
      const over = await rawRequest(gw.port(), `GET / HTTP/1.1\r\nHost: x\r\nx-big: ${'a'.repeat(70_000)}\r\n\r\n`);
      assert.equal(over.status, 431);
    });
  });

  it('max_headers_count: 101 headers with the default 100 is 431, 100 pass', async () => {
    const request = (count: number): string => {
      let head = 'GET / HTTP/1.1\r\nHost: x\r\n';
      for (let i = 1; i < count; i++) head += `x-h-${i}: v\r\n`;
      return `${head}\r\n`;
    };
    await withGateway({}, async (gw) => {
      assert.equal((await rawRequest(gw.port(), request(100))).status, 200);
      assert.equal((await rawRequest(gw.port(), request(101))).status, 431);
      assert.equal((await rawRequest(gw.port(), request(300))).status, 431);
    });
    await withGateway({ hcmExtra: 'common_http_protocol_options: { max_headers_count: 10 }' }, async (gw) => {
      assert.equal((await rawRequest(gw.port(), request(10))).status, 200);
      assert.equal((await rawRequest(gw.port(), request(11))).status, 431);
    });
  });
});

describe('timeouts', () => {
  it('request_headers_timeout: a stalled request line gets 408 or a close; other clients are unaffected', async () => {
    await withGateway({ hcmExtra: 'request_headers_timeout: 0.5s' }, async (gw) => {
      const started = Date.now();
      const stalled = rawRequest(gw.port(), 'GET /sl', { timeoutMs: 10_000, responses: 0 });
      await new Promise((resolve) => setTimeout(resolve, 100));
      const normal = await rawRequest(gw.port(), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(normal.status, 200);
      const result = await stalled;
      assert.ok(result.closed, 'the proxy closes the stalled connection');
      assert.ok(Date.now() - started < 9_000, 'well before the client gave up');
      assert.ok(result.status === undefined || result.status === 408, `unexpected ${result.raw}`);
    });
  });

  it('stream_idle_timeout: a slow upstream gets 504 stream timeout', async () => {
    await withGateway({ hcmExtra: 'stream_idle_timeout: 0.3s' }, async (gw) => {
      const res = await httpRequest(`${gw.url()}/delay/2000`);
      assert.equal(res.status, 504);
      assert.equal(res.body, 'stream timeout');
    });
  });

  it('stream_idle_timeout: a stalled request body gets 408', async () => {
    await withGateway({ hcmExtra: 'stream_idle_timeout: 0.3s' }, async (gw) => {
      const res = await rawRequest(gw.port(), 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc', { timeoutMs: 10_000 });
      assert.equal(res.status, 408);
      assert.equal(res.body, 'stream timeout');
    });
  });

  it('request_timeout: 408 when the request is not received in time; a complete request may wait longer', async () => {
    await withGateway({ hcmExtra: 'request_timeout: 0.5s' }, async (gw) => {
      const stalled = await rawRequest(gw.port(), 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc', { timeoutMs: 10_000 });
      assert.equal(stalled.status, 408);
      assert.equal(stalled.body, 'request timeout');
      const slowUpstream = await httpRequest(`${gw.url()}/delay/1200`);
      assert.equal(slowUpstream.status, 200);
    });
  });

  it('common_http_protocol_options.idle_timeout closes an idle keep-alive connection', async () => {
    await withGateway({ hcmExtra: 'common_http_protocol_options: { idle_timeout: 0.3s }' }, async (gw) => {
      const socket = await openSocket(gw.port());
      let closed = false;
      let received = '';
      socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
      socket.on('close', () => (closed = true));
      socket.on('error', () => {});
      const opened = Date.now();
      socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      await waitFor(() => received.includes('"cm-echo"') || closed, 5_000, 'the response');
      assert.match(received, /^HTTP\/1\.1 200 /);
      await waitFor(() => closed, 10_000, 'the proxy to close the idle connection');
      assert.ok(Date.now() - opened >= 250, 'not before the idle timeout');
    });
  });

  it('common_http_protocol_options.idle_timeout closes a connection that never sends a request', async () => {
    await withGateway({ hcmExtra: 'common_http_protocol_options: { idle_timeout: 0.3s }' }, async (gw) => {
      const socket = await openSocket(gw.port());
      let closed = false;
      socket.on('close', () => (closed = true));
      socket.on('error', () => {});
      await waitFor(() => closed, 10_000, 'the proxy to close the idle connection');
    });
  });
});

describe('path normalisation', () => {
  const routes = '- match: { prefix: "/b" }\n  route: { cluster: echo }';

  it('normalize_path routes /a/../b as /b', async () => {
    await withGateway({ hcmExtra: 'normalize_path: true', routes }, async (gw) => {
      const res = await rawRequest(gw.port(), 'GET /a/../b?x=1 HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(rawEcho(res).url, '/b?x=1');
    });
    await withGateway({ routes }, async (gw) => {
      const res = await rawRequest(gw.port(), 'GET /a/../b HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(res.status, 404);
    });
  });

  it('merge_slashes collapses runs of slashes', async () => {
    await withGateway({ hcmExtra: 'merge_slashes: true', routes }, async (gw) => {
      const res = await rawRequest(gw.port(), 'GET //b///c HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(rawEcho(res).url, '/b/c');
    });
  });

  it('path_with_escaped_slashes_action REJECT_REQUEST answers 400', async () => {
    await withGateway({ hcmExtra: 'path_with_escaped_slashes_action: REJECT_REQUEST' }, async (gw) => {
      const res = await rawRequest(gw.port(), 'GET /b%2Fc HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(res.status, 400);
      const plain = await rawRequest(gw.port(), 'GET /b/c HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(rawEcho(plain).url, '/b/c');
    });
  });

  it('path_with_escaped_slashes_action UNESCAPE_AND_REDIRECT redirects to the unescaped path', async () => {
    await withGateway({ hcmExtra: 'path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT' }, async (gw) => {
      const res = await rawRequest(gw.port(), 'GET /b%2Fc?q=1 HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(res.status, 307);
      assert.equal(res.headers['location'], '/b/c?q=1');
    });
  });

  it('path_with_escaped_slashes_action UNESCAPE_AND_FORWARD forwards the unescaped path', async () => {
    await withGateway({ hcmExtra: 'path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD' }, async (gw) => {
      const res = await rawRequest(gw.port(), 'GET /b%2Fc%2fd HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(rawEcho(res).url, '/b/c/d');
    });
  });
});

describe('HTTP/1 protocol options', () => {
  it('answers an HTTP/1.0 request with 426 by default', async () => {
    await withGateway({}, async (gw) => {
      const res = await rawRequest(gw.port(), 'GET / HTTP/1.0\r\nHost: x\r\n\r\n');
      assert.equal(res.status, 426);
      assert.ok(res.closed);
    });
  });

  it('accepts HTTP/1.0 with accept_http_10, using default_host_for_http_10 without a Host', async () => {
    await withGateway(
      { hcmExtra: 'http_protocol_options: { accept_http_10: true, default_host_for_http_10: ten.example }', domains: '["ten.example"]' },
      async (gw) => {
        const res = await rawRequest(gw.port(), 'GET /old HTTP/1.0\r\n\r\n');
        const e = rawEcho(res);
        assert.equal(e.path, '/old');
        assert.equal(e.headers.host, 'ten.example');
        const withHost = await rawRequest(gw.port(), 'GET / HTTP/1.0\r\nHost: ten.example\r\n\r\n');
        assert.equal(withHost.status, 200);
        const otherHost = await rawRequest(gw.port(), 'GET / HTTP/1.0\r\nHost: other.example\r\n\r\n');
        assert.equal(otherHost.status, 404);
      },
    );
  });

  it('headers_with_underscores_action REJECT_REQUEST answers 400', async () => {
    await withGateway({ hcmExtra: 'common_http_protocol_options: { headers_with_underscores_action: REJECT_REQUEST }' }, async (gw) => {
      const res = await rawRequest(gw.port(), 'GET / HTTP/1.1\r\nHost: x\r\nx_under: 1\r\n\r\n');
      assert.equal(res.status, 400);
      const ok = await rawRequest(gw.port(), 'GET / HTTP/1.1\r\nHost: x\r\nx-dash: 1\r\n\r\n');
      assert.equal(ok.status, 200);
    });
  });

  it('headers_with_underscores_action DROP_HEADER drops those headers only', async () => {
    await withGateway({ hcmExtra: 'common_http_protocol_options: { headers_with_underscores_action: DROP_HEADER }' }, async (gw) => {
      const res = await rawRequest(gw.port(), 'GET / HTTP/1.1\r\nHost: x\r\nx_under: 1\r\nx-dash: 2\r\n\r\n');
      const e = rawEcho(res);
      assert.equal(e.headers['x_under'], undefined);
      assert.equal(e.headers['x-dash'], '2');
    });
  });

  it('headers with underscores pass by default', async () => {
    await withGateway({}, async (gw) => {
      const res = await rawRequest(gw.port(), 'GET / HTTP/1.1\r\nHost: x\r\nx_under: 1\r\n\r\n');
      assert.equal(rawEcho(res).headers['x_under'], '1');
    });
  });

  it('strip_any_host_port matches the host without its port', async () => {
    await withGateway({ hcmExtra: 'strip_any_host_port: true', domains: '["strip.example"]' }, async (gw) => {
      const res = await rawRequest(gw.port(), 'GET / HTTP/1.1\r\nHost: strip.example:8443\r\n\r\n');
      assert.equal(rawEcho(res).headers.host, 'strip.example');
    });
    await withGateway({ domains: '["strip.example"]' }, async (gw) => {
      const res = await rawRequest(gw.port(), 'GET / HTTP/1.1\r\nHost: strip.example:8443\r\n\r\n');
      assert.equal(res.status, 404);
    });
  });

  it('refuses a WebSocket upgrade with 403 (no upgrade_configs)', async () => {
    await withGateway({}, async (gw) => {
      const res = await rawRequest(
        gw.port(),
        'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      );
      assert.equal(res.status, 403);
    });
  });

  it('routes an absolute-form request target by its host', async () => {
    await withGateway({ domains: '["abs.example"]' }, async (gw) => {
      const res = await rawRequest(gw.port(), 'GET http://abs.example/path?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n');
      const e = rawEcho(res);
      assert.equal(e.url, '/path?q=1');
      assert.equal(e.headers.host, 'abs.example');
      const byHost = await rawRequest(gw.port(), 'GET /path HTTP/1.1\r\nHost: other.example\r\n\r\n');
      assert.equal(byHost.status, 404);
    });
  });
});
