/**
 * End-to-end route actions through real sockets, asserting what Envoy does (reference §6, §10): cluster
 * selection (cluster, weighted_clusters, cluster_header), path and host rewrites, timeouts and the x-envoy
 * headers, header mutations at every level with every append action, direct responses, redirects (exact
 * `location`), and the `server` header.
 */
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { startEchoServer, type EchoResponseBody, type EchoServer } from '../../src/echo/echo-server.js';
import { type Json, type RunningPortico, httpListener, startPortico } from '../support/portico.js';
import { httpRequest, type HttpResponse } from '../support/upstreams.js';



function cluster(name: string, port: number, extra: Json = {}, address = '127.0.0.1'): Json {
  return {
    name,
    connect_timeout: '1s',
    ...extra,
    load_assignment: {
      cluster_name: name,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address, port_value: port } } } }] }],
    },
  };
}

const hv = (key: string, value: string, extra: Json = {}): Json => ({ header: { key, value }, ...extra });
const OVERWRITE = { append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' };

/** Every value of a header as a list (undici gives repeated response headers as an array). */
function values(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>, name: string): string[] {
  const v = headers[name];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** The values of a request header as the upstream received them, one per header line, in order. */
function rawValues(echo: EchoResponseBody, name: string): string[] {
  return echo.rawHeaders.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
}

describe('route actions', () => {
  let echoA: EchoServer;
  let echoB: EchoServer;
  let main: RunningPortico;
  let mostSpecific: RunningPortico;
  let named: RunningPortico;

  before(async () => {
    [echoA, echoB] = await Promise.all([startEchoServer({ name: 'a' }), startEchoServer({ name: 'b' })]);
    const clusters = [
      cluster('a', echoA.port),
      cluster('b', echoB.port),
      // A DNS cluster whose endpoint is the name `localhost` (IPv4 only: the echo server listens on 127.0.0.1).
      cluster('dns', echoA.port, { type: 'STRICT_DNS', dns_lookup_family: 'V4_ONLY' }, 'localhost'),
    ];
    const routeLevelMutations = {
      request_headers_to_add: [
        hv('x-append', 'route'),
        hv('x-absent', 'route', { append_action: 'ADD_IF_ABSENT' }),
        hv('x-absent-new', 'route', { append_action: 'ADD_IF_ABSENT' }),
        hv('x-over', 'route', OVERWRITE),
        hv('x-over-new', 'route', OVERWRITE),
        hv('x-over-exists', 'route', { append_action: 'OVERWRITE_IF_EXISTS' }),
        hv('x-over-exists-absent', 'route', { append_action: 'OVERWRITE_IF_EXISTS' }),
        hv('x-deprecated', 'route', { append: false }),
        hv('x-deprecated-append', 'route', { append: true }),
        hv('x-empty-kept', '', { keep_empty_value: true }),
        hv('x-empty-dropped', ''),
        hv('x-empty-format', '%REQ(x-missing)%'),
        hv('x-remote', '%DOWNSTREAM_REMOTE_ADDRESS%'),
        hv('x-req', '%REQ(x-foo)%'),
        hv('x-proto', '%PROTOCOL%'),
        hv('x-cluster', '%UPSTREAM_CLUSTER%'),
        hv('x-literal', '100%% sure'),
        // Within one level Envoy applies every overwrite before every append.
        hv('x-dup', 'one'),
        hv('x-dup', 'two', OVERWRITE),
        // ...and checks ADD_IF_ABSENT against the headers as they were before this level.
        hv('x-twice', 'first', { append_action: 'ADD_IF_ABSENT' }),
        hv('x-twice', 'second', { append_action: 'ADD_IF_ABSENT' }),
        // ...and formats every value from those headers too: x-seen gets the client's x-foo.
        hv('x-foo', 'changed', OVERWRITE),
        hv('x-seen', '%REQ(x-foo)%'),
        hv('x-level', 'route', OVERWRITE),
        hv('x-level-append', 'route'),
      ],
      request_headers_to_remove: ['x-remove-me'],
      response_headers_to_add: [
        hv('x-resp-over', 'route', OVERWRITE),
        hv('x-resp-absent', 'route', { append_action: 'ADD_IF_ABSENT' }),
        hv('x-resp-level', 'route', OVERWRITE),
        hv('x-resp-level-append', 'route'),
        hv('x-resp-cluster', '%UPSTREAM_CLUSTER%'),
      ],
      response_headers_to_remove: ['x-upstream-remove'],
    };
    const routes: Json[] = [
      { match: { prefix: '/a/' }, route: { cluster: 'a' } },
      { match: { prefix: '/b/' }, route: { cluster: 'b' } },
      { match: { prefix: '/delay/' }, route: { cluster: 'a' } },
      {
        match: { prefix: '/weighted' },
        route: {
          weighted_clusters: {
            clusters: [
              { name: 'a', weight: 80 },
              { name: 'b', weight: 20 },
            ],
            header_name: 'x-pick',
          },
        },
      },
      { match: { prefix: '/ch404' }, route: { cluster_header: 'x-cluster', cluster_not_found_response_code: 'NOT_FOUND' } },
      { match: { prefix: '/ch' }, route: { cluster_header: 'x-cluster' } },
      { match: { prefix: '/pr/' }, route: { cluster: 'a', prefix_rewrite: '/rewritten/' } },
      { match: { prefix: '/pr-root/' }, route: { cluster: 'a', prefix_rewrite: '/' } },
      { match: { path: '/exact-pr' }, route: { cluster: 'a', prefix_rewrite: '/new' } },
      {
        match: { prefix: '/rx/' },
        route: { cluster: 'a', regex_rewrite: { pattern: { regex: '^/rx/([^/]+)/([^/]+)$' }, substitution: '/swapped/\\2/\\1' } },
      },
      { match: { prefix: '/glob/' }, route: { cluster: 'a', regex_rewrite: { pattern: { regex: 'o' }, substitution: '0' } } },
      { match: { prefix: '/hr/literal' }, route: { cluster: 'a', host_rewrite_literal: 'rewritten.example' } },
      {
        match: { prefix: '/hr/xfh' },
        route: { cluster: 'a', host_rewrite_literal: 'rewritten.example', append_x_forwarded_host: true },
      },
      { match: { prefix: '/hr/header' }, route: { cluster: 'a', host_rewrite_header: 'x-target-host' } },
      {
        match: { prefix: '/hr/regex/' },
        route: {
          cluster: 'a',
          host_rewrite_path_regex: { pattern: { regex: '^/hr/regex/([^/]+)/.*$' }, substitution: '\\1.regex.example' },
        },
      },
      { match: { prefix: '/hr/auto-static' }, route: { cluster: 'a', auto_host_rewrite: true } },
      { match: { prefix: '/hr/auto' }, route: { cluster: 'dns', auto_host_rewrite: true } },
      { match: { prefix: '/hr/dns' }, route: { cluster: 'dns' } },
      { match: { prefix: '/short/' }, route: { cluster: 'a', prefix_rewrite: '/delay/', timeout: '0.2s' } },
      { match: { prefix: '/notimeout/' }, route: { cluster: 'a', prefix_rewrite: '/delay/', timeout: '0s' } },
      { match: { prefix: '/mut/' }, route: { cluster: 'a' }, ...routeLevelMutations },
      { match: { path: '/direct' }, direct_response: { status: 200, body: { inline_string: 'hello direct' } } },
      { match: { path: '/direct-empty' }, direct_response: { status: 403 } },
    ];
    const redirect = (path: string, action: Json): Json => ({ match: { path }, redirect: action });
    const redirectRoutes: Json[] = [
      redirect('/r/https', { https_redirect: true }),
      redirect('/r/scheme', { scheme_redirect: 'ftp' }),
      redirect('/r/host', { host_redirect: 'other.example' }),
      redirect('/r/port', { port_redirect: 8443 }),
      redirect('/r/port-80', { port_redirect: 80 }),
      redirect('/r/https-443', { https_redirect: true, port_redirect: 443 }),
      redirect('/r/path', { path_redirect: '/new/path' }),
      redirect('/r/path-query', { path_redirect: '/new/path?b=2' }),
      redirect('/r/path-query-strip', { path_redirect: '/new/path?b=2', strip_query: true }),
      redirect('/r/path-strip', { path_redirect: '/new/path', strip_query: true }),
      { match: { prefix: '/r/prefix/' }, redirect: { prefix_rewrite: '/moved/' } },
      redirect('/r/exact-prefix', { prefix_rewrite: '/replaced' }),
      { match: { prefix: '/r/regex/' }, redirect: { regex_rewrite: { pattern: { regex: '^/r/regex/(\\w+)$' }, substitution: '/rr/\\1' } } },
      redirect('/r/strip', { strip_query: true }),
      redirect('/r/301', { host_redirect: 'codes.example', response_code: 'MOVED_PERMANENTLY' }),
      redirect('/r/302', { host_redirect: 'codes.example', response_code: 'FOUND' }),
      redirect('/r/303', { host_redirect: 'codes.example', response_code: 'SEE_OTHER' }),
      redirect('/r/307', { host_redirect: 'codes.example', response_code: 'TEMPORARY_REDIRECT' }),
      redirect('/r/308', { host_redirect: 'codes.example', response_code: 'PERMANENT_REDIRECT' }),
      redirect('/r/all', {
        https_redirect: true,
        host_redirect: 'new.example',
        port_redirect: 8443,
        path_redirect: '/all',
        response_code: 'PERMANENT_REDIRECT',
      }),
    ];
    const routeConfig = (extra: Json = {}): Json => ({
      name: 'actions',
      ...extra,
      request_headers_to_add: [hv('x-level', 'global', OVERWRITE), hv('x-level-append', 'global')],
      response_headers_to_add: [hv('x-resp-level', 'global', OVERWRITE), hv('x-resp-level-append', 'global')],
      virtual_hosts: [
        // `redir.test:*` is a prefix wildcard: the host with any port.
        { name: 'redirects', domains: ['redir.test', 'redir.test:*'], routes: redirectRoutes },
        {
          name: 'main',
          domains: ['*'],
          routes,
          request_headers_to_add: [hv('x-level', 'vhost', OVERWRITE), hv('x-level-append', 'vhost')],
          response_headers_to_add: [hv('x-resp-level', 'vhost', OVERWRITE), hv('x-resp-level-append', 'vhost')],
        },
      ],
    });
    const start = (rc: Json, hcmExtra: Json = {}) =>
      startPortico(JSON.stringify({ static_resources: { listeners: [httpListener(rc, hcmExtra)], clusters } }));
    [main, mostSpecific, named] = await Promise.all([
      start(routeConfig()),
      start(routeConfig({ most_specific_header_mutations_wins: true })),
      start(routeConfig(), { server_name: 'portico-test' }),
    ]);
  });

  after(async () => {
    await Promise.all([main?.close(), mostSpecific?.close(), named?.close()]);
    await Promise.all([echoA?.close(), echoB?.close()]);
  });

  const get = (path: string, headers: Record<string, string | string[]> = {}, p: RunningPortico = main): Promise<HttpResponse> =>
    httpRequest(p.url() + path, { headers });

  /** A proxied request answered 200 by an echo server; returns what that server saw. */
  async function echoed(path: string, headers: Record<string, string | string[]> = {}, p: RunningPortico = main) {
    const res = await get(path, headers, p);
    assert.equal(res.status, 200, `${path}: ${res.status} ${res.body}`);
    return { res, echo: JSON.parse(res.body) as EchoResponseBody };
  }

  describe('cluster selection', () => {
    it('cluster', async () => {
      assert.equal((await echoed('/a/x')).echo.name, 'a');
      assert.equal((await echoed('/b/x')).echo.name, 'b');
    });

    it('weighted_clusters with header_name picks by the header value modulo the total weight', async () => {
      const pick = async (value: string) => (await echoed('/weighted', { 'x-pick': value })).echo.name;
      assert.equal(await pick('0'), 'a');
      assert.equal(await pick('79'), 'a');
      assert.equal(await pick('80'), 'b');
      assert.equal(await pick('99'), 'b');
      assert.equal(await pick('100'), 'a');
      assert.equal(await pick('180'), 'b');
    });

    it('weighted_clusters 80/20 spreads 1000 requests roughly 80/20', async () => {
      const agent = new Agent({ connections: 16 });
      try {
        const counts: Record<string, number> = { a: 0, b: 0 };
        const url = main.url() + '/weighted';
        for (let batch = 0; batch < 1000 / 50; batch++) {
          const names = await Promise.all(
            Array.from({ length: 50 }, async () => {
              const res = await request(url, { dispatcher: agent });
              const body = (await res.body.json()) as EchoResponseBody;
              return body.name;
            }),
          );
          for (const name of names) counts[name] = (counts[name] ?? 0) + 1;
        }
        assert.equal(counts['a']! + counts['b']!, 1000);
        // Expected 800 (σ ≈ 12.6); ±100 is very generous.
        assert.ok(counts['a']! >= 700 && counts['a']! <= 900, JSON.stringify(counts));
      } finally {
        await agent.close();
      }
    });

    it('cluster_header takes the cluster from a request header', async () => {
      assert.equal((await echoed('/ch', { 'x-cluster': 'b' })).echo.name, 'b');
      assert.equal((await echoed('/ch', { 'x-cluster': 'a' })).echo.name, 'a');
    });

    it('an unknown cluster answers cluster_not_found_response_code (503 by default) with an empty body', async () => {
      const cases: Record<string, string>[] = [{ 'x-cluster': 'nope' }, {}];
      for (const headers of cases) {
        const res = await get('/ch', headers);
        assert.equal(res.status, 503);
        assert.equal(res.body, '');
        assert.equal(res.headers['content-length'], '0');
        assert.equal(res.headers['server'], 'envoy');
      }
      const notFound = await get('/ch404', { 'x-cluster': 'nope' });
      assert.equal(notFound.status, 404);
      assert.equal(notFound.body, '');
    });
  });

  describe('path rewrites', () => {
    it('prefix_rewrite replaces the matched prefix and keeps the query; x-envoy-original-path', async () => {
      const { echo } = await echoed('/pr/x/y?q=1&r');
      assert.equal(echo.url, '/rewritten/x/y?q=1&r');
      assert.equal(echo.headers['x-envoy-original-path'], '/pr/x/y?q=1&r');
      assert.equal((await echoed('/pr-root/deep/path?z=2')).echo.url, '/deep/path?z=2');
    });

    it('prefix_rewrite on an exact path match replaces the whole path and keeps the query', async () => {
      const { echo } = await echoed('/exact-pr?k=v');
      assert.equal(echo.url, '/new?k=v');
      assert.equal(echo.headers['x-envoy-original-path'], '/exact-pr?k=v');
    });

    it('regex_rewrite substitutes capture groups, replaces every match and keeps the query', async () => {
      const swapped = await echoed('/rx/first/second?k=v');
      assert.equal(swapped.echo.url, '/swapped/second/first?k=v');
      assert.equal(swapped.echo.headers['x-envoy-original-path'], '/rx/first/second?k=v');
      // The query is not rewritten: only the path goes through the regex.
      assert.equal((await echoed('/glob/foo/boo?o=o')).echo.url, '/gl0b/f00/b00?o=o');
    });

    it('sends no x-envoy-original-path without a rewrite', async () => {
      const { echo } = await echoed('/a/plain');
      assert.equal(echo.url, '/a/plain');
      assert.equal(echo.headers['x-envoy-original-path'], undefined);
    });
  });

  describe('host rewrites', () => {
    it('host_rewrite_literal', async () => {
      const { echo } = await echoed('/hr/literal', { host: 'original.example' });
      assert.equal(echo.headers.host, 'rewritten.example');
      assert.equal(echo.headers['x-forwarded-host'], undefined);
    });

    it('append_x_forwarded_host appends the original host', async () => {
      const first = await echoed('/hr/xfh', { host: 'original.example:8080' });
      assert.equal(first.echo.headers.host, 'rewritten.example');
      assert.equal(first.echo.headers['x-forwarded-host'], 'original.example:8080');
      const second = await echoed('/hr/xfh', { host: 'original.example', 'x-forwarded-host': 'edge.example' });
      assert.equal(second.echo.headers['x-forwarded-host'], 'edge.example,original.example');
    });

    it('host_rewrite_header', async () => {
      const { echo } = await echoed('/hr/header', { host: 'original.example', 'x-target-host': 'from-header.example' });
      assert.equal(echo.headers.host, 'from-header.example');
      // Without the header the host is left alone.
      const none = await echoed('/hr/header', { host: 'original.example' });
      assert.equal(none.echo.headers.host, 'original.example');
    });

    it('host_rewrite_path_regex', async () => {
      const { echo } = await echoed('/hr/regex/svc1/x?y=1', { host: 'original.example' });
      assert.equal(echo.headers.host, 'svc1.regex.example');
      assert.equal(echo.url, '/hr/regex/svc1/x?y=1');
    });

    it('auto_host_rewrite uses the DNS name of a STRICT_DNS endpoint', async () => {
      const { echo } = await echoed('/hr/auto', { host: 'original.example' });
      assert.equal(echo.headers.host, 'localhost');
      const plain = await echoed('/hr/dns', { host: 'original.example' });
      assert.equal(plain.echo.headers.host, 'original.example');
    });

    it(
      'auto_host_rewrite leaves the host alone for a STATIC endpoint without a hostname',
      async () => {
        const { echo } = await echoed('/hr/auto-static', { host: 'original.example' });
        assert.equal(echo.headers.host, 'original.example');
      },
    );
  });

  describe('timeouts and x-envoy headers', () => {
    it('a route timeout answers 504 upstream request timeout', async () => {
      const started = performance.now();
      const res = await get('/short/1000');
      const elapsed = performance.now() - started;
      assert.equal(res.status, 504);
      assert.equal(res.body, 'upstream request timeout');
      assert.equal(res.headers['content-type'], 'text/plain');
      assert.equal(res.headers['content-length'], '24');
      assert.equal(res.headers['server'], 'envoy');
      assert.ok(elapsed >= 180 && elapsed < 900, `took ${elapsed} ms`);
      // The gateway keeps serving.
      assert.equal((await echoed('/a/after-timeout')).echo.name, 'a');
    });

    it('timeout: 0s disables the route timeout and x-envoy-expected-rq-timeout-ms', async () => {
      const { echo } = await echoed('/notimeout/300');
      assert.equal(echo.path, '/delay/300');
      assert.equal(echo.headers['x-envoy-expected-rq-timeout-ms'], undefined);
    });

    it('x-envoy-expected-rq-timeout-ms is the route timeout (15000 by default)', async () => {
      assert.equal((await echoed('/a/x')).echo.headers['x-envoy-expected-rq-timeout-ms'], '15000');
      assert.equal((await echoed('/short/0')).echo.headers['x-envoy-expected-rq-timeout-ms'], '200');
    });

    it('x-envoy-upstream-service-time is on proxied responses only', async () => {
      const { res } = await echoed('/delay/120');
      const t = res.headers['x-envoy-upstream-service-time'];
      assert.equal(typeof t, 'string');
      assert.match(t as string, /^\d+$/);
      assert.ok(Number(t) >= 100, `x-envoy-upstream-service-time ${t}`);
      const direct = await get('/direct');
      assert.equal(direct.headers['x-envoy-upstream-service-time'], undefined);
    });
  });

  describe('header mutations', () => {
    const clientHeaders = {
      'x-append': 'client',
      'x-absent': 'client',
      'x-over': 'client',
      'x-over-exists': 'client',
      'x-deprecated': 'client',
      'x-deprecated-append': 'client',
      'x-remove-me': 'bye',
      'x-foo': 'bar',
      'x-level-append': 'client',
    };

    it('applies each append_action, append, keep_empty_value and removals to the request', async () => {
      const { echo } = await echoed('/mut/x', clientHeaders);
      assert.deepEqual(rawValues(echo, 'x-append'), ['client', 'route']);
      assert.deepEqual(rawValues(echo, 'x-absent'), ['client']);
      assert.deepEqual(rawValues(echo, 'x-absent-new'), ['route']);
      assert.deepEqual(rawValues(echo, 'x-over'), ['route']);
      assert.deepEqual(rawValues(echo, 'x-over-new'), ['route']);
      assert.deepEqual(rawValues(echo, 'x-over-exists'), ['route']);
      assert.deepEqual(rawValues(echo, 'x-over-exists-absent'), []);
      assert.deepEqual(rawValues(echo, 'x-deprecated'), ['route']);
      assert.deepEqual(rawValues(echo, 'x-deprecated-append'), ['client', 'route']);
      assert.deepEqual(rawValues(echo, 'x-empty-kept'), ['']);
      assert.deepEqual(rawValues(echo, 'x-empty-dropped'), []);
      assert.deepEqual(rawValues(echo, 'x-empty-format'), []);
      assert.deepEqual(rawValues(echo, 'x-remove-me'), []);
    });

    it('substitutes %...% operators', async () => {
      const { echo } = await echoed('/mut/x', clientHeaders);
      assert.match(echo.headers['x-remote'] as string, /^127\.0\.0\.1:\d+$/);
      assert.equal(echo.headers['x-req'], 'bar');
      assert.equal(echo.headers['x-proto'], 'HTTP/1.1');
      assert.equal(echo.headers['x-cluster'], 'a');
      assert.equal(echo.headers['x-literal'], '100% sure');
      const noFoo = await echoed('/mut/x');
      // %REQ(x)% of a missing header is empty, and an empty value is not added.
      assert.deepEqual(rawValues(noFoo.echo, 'x-req'), []);
    });

    it('within one level: overwrites before appends, conditions and formatting on the headers before the level', async () => {
      const { echo } = await echoed('/mut/x', clientHeaders);
      assert.deepEqual(rawValues(echo, 'x-dup'), ['two', 'one']);
      assert.deepEqual(rawValues(echo, 'x-twice'), ['first', 'second']);
      assert.deepEqual(rawValues(echo, 'x-foo'), ['changed']);
      assert.deepEqual(rawValues(echo, 'x-seen'), ['bar']);
    });

    it('applies route, then virtual host, then route configuration: the outer level wins', async () => {
      const { echo, res } = await echoed(
        '/mut/x?response_header=x-upstream-remove:gone&response_header=x-resp-over:upstream' +
          '&response_header=x-resp-absent:upstream&response_header=x-resp-level-append:upstream',
        clientHeaders,
      );
      assert.deepEqual(rawValues(echo, 'x-level'), ['global']);
      assert.deepEqual(rawValues(echo, 'x-level-append'), ['client', 'route', 'vhost', 'global']);
      assert.deepEqual(values(res.headers, 'x-resp-level'), ['global']);
      assert.deepEqual(values(res.headers, 'x-resp-level-append'), ['upstream', 'route', 'vhost', 'global']);
      assert.deepEqual(values(res.headers, 'x-resp-over'), ['route']);
      assert.deepEqual(values(res.headers, 'x-resp-absent'), ['upstream']);
      assert.deepEqual(values(res.headers, 'x-upstream-remove'), []);
      assert.deepEqual(values(res.headers, 'x-resp-cluster'), ['a']);
    });

    it('most_specific_header_mutations_wins: true reverses the order', async () => {
      const { echo, res } = await echoed('/mut/x?response_header=x-resp-level-append:upstream', clientHeaders, mostSpecific);
      assert.deepEqual(rawValues(echo, 'x-level'), ['route']);
      assert.deepEqual(rawValues(echo, 'x-level-append'), ['client', 'global', 'vhost', 'route']);
      assert.deepEqual(values(res.headers, 'x-resp-level'), ['route']);
      assert.deepEqual(values(res.headers, 'x-resp-level-append'), ['upstream', 'global', 'vhost', 'route']);
    });

    it('virtual host and route configuration mutations apply to other routes too', async () => {
      const { echo, res } = await echoed('/a/x');
      assert.deepEqual(rawValues(echo, 'x-level'), ['global']);
      assert.deepEqual(rawValues(echo, 'x-level-append'), ['vhost', 'global']);
      assert.deepEqual(values(res.headers, 'x-resp-level-append'), ['vhost', 'global']);
    });
  });

  describe('direct responses', () => {
    it('status and an inline_string body as text/plain', async () => {
      const res = await get('/direct');
      assert.equal(res.status, 200);
      assert.equal(res.body, 'hello direct');
      assert.equal(res.headers['content-type'], 'text/plain');
      assert.equal(res.headers['content-length'], '12');
      assert.equal(res.headers['server'], 'envoy');
      // Response mutations of the virtual host and route configuration apply to direct responses.
      assert.deepEqual(values(res.headers, 'x-resp-level'), ['global']);
    });

    it('a status without a body', async () => {
      const res = await get('/direct-empty');
      assert.equal(res.status, 403);
      assert.equal(res.body, '');
      assert.equal(res.headers['content-length'], '0');
      assert.equal(res.headers['content-type'], undefined);
    });
  });

  describe('redirects', () => {
    async function location(path: string, host = 'redir.test', status = 301): Promise<string | undefined> {
      const res = await get(path, { host });
      assert.equal(res.status, status, `${path}: ${res.status} ${res.body}`);
      assert.equal(res.body, '');
      assert.equal(res.headers['server'], 'envoy');
      return res.headers['location'] as string | undefined;
    }

    it('https_redirect and scheme_redirect (dropping only the default port of the old scheme)', async () => {
      assert.equal(await location('/r/https?a=1'), 'https://redir.test/r/https?a=1');
      assert.equal(await location('/r/https', 'redir.test:80'), 'https://redir.test/r/https');
      assert.equal(await location('/r/https', 'redir.test:8080'), 'https://redir.test:8080/r/https');
      assert.equal(await location('/r/scheme?a=1'), 'ftp://redir.test/r/scheme?a=1');
      assert.equal(await location('/r/scheme', 'redir.test:80'), 'ftp://redir.test/r/scheme');
    });

    it('host_redirect and port_redirect', async () => {
      assert.equal(await location('/r/host?a=1', 'redir.test:8080'), 'http://other.example/r/host?a=1');
      assert.equal(await location('/r/port'), 'http://redir.test:8443/r/port');
      assert.equal(await location('/r/port', 'redir.test:1234'), 'http://redir.test:8443/r/port');
      assert.equal(
        await location('/r/all?q=1', 'redir.test:1234', 308),
        'https://new.example:8443/all?q=1',
      );
    });

    it(
      'port_redirect is always written, even the default port of the scheme',
      async () => {
        assert.equal(await location('/r/port-80'), 'http://redir.test:80/r/port-80');
        assert.equal(await location('/r/https-443', 'redir.test:8080'), 'https://redir.test:443/r/https-443');
      },
    );

    it(
      'a scheme change drops only the default port of the request scheme',
      async () => {
        assert.equal(await location('/r/https', 'redir.test:443'), 'https://redir.test:443/r/https');
      },
    );

    it('path_redirect keeps the request query unless it has its own', async () => {
      assert.equal(await location('/r/path?a=1'), 'http://redir.test/new/path?a=1');
      assert.equal(await location('/r/path'), 'http://redir.test/new/path');
      assert.equal(await location('/r/path-query?a=1'), 'http://redir.test/new/path?b=2');
      // A path_redirect with a query is never stripped.
      assert.equal(await location('/r/path-query-strip?a=1'), 'http://redir.test/new/path?b=2');
      assert.equal(await location('/r/path-strip?a=1'), 'http://redir.test/new/path');
    });

    it('prefix_rewrite and regex_rewrite', async () => {
      assert.equal(await location('/r/prefix/x/y?a=1'), 'http://redir.test/moved/x/y?a=1');
      assert.equal(await location('/r/exact-prefix?a=1'), 'http://redir.test/replaced?a=1');
      assert.equal(await location('/r/regex/abc?q=1'), 'http://redir.test/rr/abc?q=1');
    });

    it('strip_query', async () => {
      assert.equal(await location('/r/strip?a=1&b=2'), 'http://redir.test/r/strip');
      assert.equal(await location('/r/strip'), 'http://redir.test/r/strip');
    });

    it('response_code: 301 by default, 302, 303, 307, 308', async () => {
      for (const code of [301, 302, 303, 307, 308]) {
        assert.equal(await location(`/r/${code}?x=1`, 'redir.test', code), `http://codes.example/r/${code}?x=1`);
      }
    });
  });

  describe('server header', () => {
    it('is `server: envoy` on proxied responses (replacing the upstream one) and on local replies', async () => {
      const { res } = await echoed('/a/x?response_header=server:upstream-server');
      assert.deepEqual(values(res.headers, 'server'), ['envoy']);
      const local = await get('/no-route-here');
      assert.equal(local.status, 404);
      assert.deepEqual(values(local.headers, 'server'), ['envoy']);
    });

    it('server_name overrides it', async () => {
      const { res } = await echoed('/a/x?response_header=server:upstream-server', {}, named);
      assert.deepEqual(values(res.headers, 'server'), ['portico-test']);
      const local = await get('/no-route-here', {}, named);
      assert.deepEqual(values(local.headers, 'server'), ['portico-test']);
      const redirect = await get('/r/https', { host: 'redir.test' }, named);
      assert.deepEqual(values(redirect.headers, 'server'), ['portico-test']);
    });
  });
});
