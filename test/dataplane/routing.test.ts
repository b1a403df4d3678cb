/**
 * End-to-end routing through real sockets: virtual host selection by `:authority` and route matching
 * (path specifiers, case sensitivity, header / query / gRPC / runtime-fraction conditions), as Envoy does it
 * (reference §6). Every route answers a direct response naming itself, so what the client gets back tells which
 * virtual host and route were chosen; one route forwards to a real upstream to show that matching leads to it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Json, type RunningPortico, httpListener, startPortico } from '../support/portico.js';
import { httpRequest, startRecordingUpstream, type HttpResponse, type RecordingUpstream } from '../support/upstreams.js';

// ---------------------------------------------------------------------------------------------------------------
// Bootstrap builders (JSON is YAML, so the bootstrap is written as objects)



function cluster(name: string, port: number): Json {
  return {
    name,
    connect_timeout: '1s',
    load_assignment: {
      cluster_name: name,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }],
    },
  };
}

/** A route answering 200 with its own name as the body. */
function named(name: string, match: Json): Json {
  return { name, match, direct_response: { status: 200, body: { inline_string: name } } };
}

function vhost(name: string, domains: string[], routes: Json[] = [named(name, { prefix: '/' })]): Json {
  return { name, domains, routes };
}

// ---------------------------------------------------------------------------------------------------------------

describe('routing: virtual hosts and route matching', () => {
  let upstream: RecordingUpstream;
  let porticos: RunningPortico[] = [];

  before(async () => {
    upstream = await startRecordingUpstream();
    const defaultRoutes: Json[] = [
      // First match wins: the second route is shadowed by the first for /order/specific.
      named('order-first', { prefix: '/order/' }),
      named('order-second', { prefix: '/order/specific' }),
      { name: 'forward', match: { prefix: '/forward/' }, route: { cluster: 'upstream' } },
      named('exact', { path: '/exact' }),
      named('query-in-prefix', { prefix: '/qp?mode=a' }),
      named('regex', { safe_regex: { regex: '/regex/[0-9]+' } }),
      named('separated', { path_separated_prefix: '/api' }),
      named('ci-prefix', { prefix: '/CaseInsensitive', case_sensitive: false }),
      named('ci-path', { path: '/ExactCI', case_sensitive: false }),
      named('cs-prefix', { prefix: '/Sensitive' }),
      // Header matchers.
      named('h-exact', { prefix: '/h/exact', headers: [{ name: 'x-h', string_match: { exact: 'abc' } }] }),
      named('h-prefix', { prefix: '/h/prefix', headers: [{ name: 'x-h', string_match: { prefix: 'ab' } }] }),
      named('h-suffix', { prefix: '/h/suffix', headers: [{ name: 'x-h', string_match: { suffix: 'yz' } }] }),
      named('h-contains', { prefix: '/h/contains', headers: [{ name: 'x-h', string_match: { contains: 'mid' } }] }),
      named('h-regex', { prefix: '/h/regex', headers: [{ name: 'x-h', string_match: { safe_regex: { regex: '[a-c]+[0-9]' } } }] }),
      named('h-ignore-case', { prefix: '/h/icase', headers: [{ name: 'x-h', string_match: { exact: 'MiXeD', ignore_case: true } }] }),
      named('h-present', { prefix: '/h/present', headers: [{ name: 'x-h', present_match: true }] }),
      named('h-absent', { prefix: '/h/absent', headers: [{ name: 'x-h', present_match: false }] }),
      named('h-range', { prefix: '/h/range', headers: [{ name: 'x-h', range_match: { start: 10, end: 20 } }] }),
      named('h-invert', { prefix: '/h/invert', headers: [{ name: 'x-h', string_match: { exact: 'no' }, invert_match: true }] }),
      named('h-deprecated', { prefix: '/h/deprecated', headers: [{ name: 'x-h', exact_match: 'old' }] }),
      named('h-method', { prefix: '/h/method', headers: [{ name: ':method', string_match: { exact: 'POST' } }] }),
      named('h-all', {
        prefix: '/h/all',
        headers: [
          { name: 'x-a', string_match: { exact: '1' } },
          { name: 'x-b', string_match: { exact: '2' } },
        ],
      }),
      // Query parameter matchers.
      named('q-exact', { prefix: '/q/exact', query_parameters: [{ name: 'debug', string_match: { exact: '1' } }] }),
      named('q-present', { prefix: '/q/present', query_parameters: [{ name: 'flag', present_match: true }] }),
      // gRPC.
      named('grpc', { prefix: '/grpc', grpc: {} }),
      // Runtime fractions.
      named('rt-never', { prefix: '/rt/never', runtime_fraction: { default_value: { numerator: 0, denominator: 'HUNDRED' } } }),
      named('rt-always', { prefix: '/rt/always', runtime_fraction: { default_value: { numerator: 100, denominator: 'HUNDRED' } } }),
      named('rt-on-by-runtime', {
        prefix: '/rt/on',
        runtime_fraction: { default_value: { numerator: 0, denominator: 'HUNDRED' }, runtime_key: 'routing.test.on' },
      }),
      named('rt-off-by-runtime', {
        prefix: '/rt/off',
        runtime_fraction: { default_value: { numerator: 100, denominator: 'HUNDRED' }, runtime_key: 'routing.test.off' },
      }),
      named('rt-unset-key', {
        prefix: '/rt/unset',
        runtime_fraction: { default_value: { numerator: 100, denominator: 'HUNDRED' }, runtime_key: 'routing.test.not_in_any_layer' },
      }),
      // What the virtual host tests request.
      named('vh-default', { path: '/' }),
    ];
    const main = {
      name: 'main',
      virtual_hosts: [
        vhost('vh-exact', ['www.example.com']),
        vhost('vh-suffix-short', ['*.example.com']),
        vhost('vh-suffix-long', ['*.api.example.com']),
        vhost('vh-suffix-dash', ['*-bar.example.net']),
        vhost('vh-prefix-short', ['foo.*']),
        vhost('vh-prefix-long', ['foo.bar.*']),
        vhost('vh-port', ['ported.example.org:8080']),
        vhost('vh-default', ['*'], defaultRoutes),
      ],
    };
    // A route table without a `*` virtual host and no domain with a port.
    const noDefault = {
      name: 'no-default',
      virtual_hosts: [vhost('only-exact', ['only.example.com']), vhost('only-prefix', ['pre.*'])],
    };
    const ignorePort = {
      name: 'ignore-port',
      ignore_port_in_host_matching: true,
      virtual_hosts: [vhost('ip-exact', ['only.example.com']), vhost('ip-default', ['*'])],
    };
    // One Portico per route table (listeners of one bootstrap may not share 127.0.0.1:0).
    const start = (routeConfig: Json, hcmExtra: Json = {}) =>
      startPortico(
        JSON.stringify({
          layered_runtime: {
            layers: [{ name: 'static', static_layer: { 'routing.test.on': 100, 'routing.test.off': 0 } }],
          },
          static_resources: { listeners: [httpListener(routeConfig, hcmExtra)], clusters: [cluster('upstream', upstream.port)] },
        }),
      );
    porticos = await Promise.all([start(main), start(noDefault), start(ignorePort), start(noDefault, { strip_any_host_port: true })]);
  });

  after(async () => {
    await Promise.all(porticos.map((p) => p.close()));
    await upstream?.close();
  });

  function get(path: string, headers: Record<string, string | string[]> = {}, index = 0, method = 'GET'): Promise<HttpResponse> {
    return httpRequest(porticos[index]!.url() + path, { headers, method });
  }

  /** The name of the route (= body) that answered, or `404` when none did (asserting Envoy's empty 404). */
  async function routed(path: string, headers: Record<string, string | string[]> = {}, listenerIndex = 0, method = 'GET'): Promise<string> {
    const res = await get(path, headers, listenerIndex, method);
    if (res.status === 404) {
      assert.equal(res.body, '', `404 for ${path} must have an empty body`);
      assert.equal(res.headers['content-length'], '0');
      return '404';
    }
    assert.equal(res.status, 200, `${path}: ${res.status} ${res.body}`);
    return res.body;
  }

  const host = (h: string, listenerIndex = 0) => routed('/', { host: h }, listenerIndex);

  describe('virtual host selection', () => {
    it('matches an exact domain, case-insensitively', async () => {
      assert.equal(await host('www.example.com'), 'vh-exact');
      assert.equal(await host('WWW.Example.COM'), 'vh-exact');
    });

    it('matches suffix wildcards, longest first, never on an empty wildcard part', async () => {
      assert.equal(await host('a.example.com'), 'vh-suffix-short');
      assert.equal(await host('x.api.example.com'), 'vh-suffix-long');
      assert.equal(await host('X.API.Example.com'), 'vh-suffix-long');
      // `*.api.example.com` needs something before `.api.example.com`; `*.example.com` still takes it.
      assert.equal(await host('api.example.com'), 'vh-suffix-short');
      assert.equal(await host('baz-bar.example.net'), 'vh-suffix-dash');
      // The wildcard never matches the empty string: `-bar.example.net` is not `*-bar.example.net`.
      assert.equal(await host('-bar.example.net'), 'vh-default');
      assert.equal(await host('example.com'), 'vh-default');
    });

    it('prefers suffix wildcards to prefix wildcards, and the longest prefix wildcard', async () => {
      assert.equal(await host('foo.example.com'), 'vh-suffix-short');
      assert.equal(await host('foo.net'), 'vh-prefix-short');
      assert.equal(await host('foo.bar.net'), 'vh-prefix-long');
      assert.equal(await host('FOO.BAR.net'), 'vh-prefix-long');
      assert.equal(await host('foo.'), 'vh-default');
    });

    it('falls back to the `*` virtual host', async () => {
      assert.equal(await host('unknown.test'), 'vh-default');
    });

    it('matches a domain written with a port only with that port', async () => {
      assert.equal(await host('ported.example.org:8080'), 'vh-port');
      assert.equal(await host('ported.example.org'), 'vh-default');
      assert.equal(await host('ported.example.org:9090'), 'vh-default');
    });

    it('uses the port in host matching by default (Envoy strips it only when configured to)', async () => {
      // Envoy's RouteMatcher::findVirtualHost looks the whole :authority up unless
      // ignore_port_in_host_matching is set, even when no domain has a port: `www.example.com:1234` is not
      // `www.example.com` (nor `*.example.com`); `foo.*` still matches `foo.net:1234`.
      assert.equal(await host('www.example.com:1234'), 'vh-default');
      assert.equal(await host('a.example.com:1234'), 'vh-default');
      assert.equal(await host('foo.net:1234'), 'vh-prefix-short');
      assert.equal(await host('only.example.com', 1), 'only-exact');
      assert.equal(await host('only.example.com:1234', 1), '404');
      assert.equal(await host('pre.test:1234', 1), 'only-prefix');
    });

    it('strips the port with ignore_port_in_host_matching or strip_any_host_port', async () => {
      assert.equal(await host('only.example.com:1234', 2), 'ip-exact');
      assert.equal(await host('ONLY.example.com:1234', 2), 'ip-exact');
      assert.equal(await host('other.example.com:1234', 2), 'ip-default');
      assert.equal(await host('only.example.com:1234', 3), 'only-exact');
    });

    it('answers 404 with an empty body when no virtual host matches', async () => {
      assert.equal(await host('nothing.example.com', 1), '404');
      const res = await get('/', { host: 'nothing.example.com' }, 1);
      assert.equal(res.status, 404);
      assert.equal(res.body, '');
      assert.equal(res.headers['server'], 'envoy');
      assert.equal(res.headers['content-type'], undefined);
    });
  });

  describe('routes', () => {
    it('answers 404 with an empty body when no route matches', async () => {
      assert.equal(await routed('/no/such/route'), '404');
    });

    it('takes the first matching route in order', async () => {
      assert.equal(await routed('/order/specific'), 'order-first');
      assert.equal(await routed('/order/x'), 'order-first');
    });

    it('forwards a matched route to its cluster', async () => {
      const before = upstream.requests.length;
      const res = await get('/forward/x?y=1');
      assert.equal(res.status, 200);
      assert.equal(res.body, 'ok');
      assert.equal(upstream.requests.length, before + 1);
      assert.equal(upstream.requests.at(-1)!.url, '/forward/x?y=1');
    });

    it('prefix is a plain string prefix', async () => {
      assert.equal(await routed('/order/'), 'order-first');
      assert.equal(await routed('/order'), '404');
      assert.equal(await routed('/forwardx'), '404');
      // The query is not part of what a prefix is matched against (Envoy's PathMatcher drops it).
      assert.equal(await routed('/qp?mode=a'), '404');
    });

    it('path is exact and ignores the query string', async () => {
      assert.equal(await routed('/exact'), 'exact');
      assert.equal(await routed('/exact?x=1&y'), 'exact');
      assert.equal(await routed('/exact/'), '404');
      assert.equal(await routed('/exactly'), '404');
      assert.equal(await routed('/EXACT'), '404');
    });

    it('safe_regex must match the whole path, query excluded', async () => {
      assert.equal(await routed('/regex/123'), 'regex');
      assert.equal(await routed('/regex/123?q=abc'), 'regex');
      assert.equal(await routed('/regex/123x'), '404');
      assert.equal(await routed('/x/regex/123'), '404');
      assert.equal(await routed('/regex/'), '404');
    });

    it('path_separated_prefix matches on `/` boundaries', async () => {
      assert.equal(await routed('/api'), 'separated');
      assert.equal(await routed('/api/x'), 'separated');
      assert.equal(await routed('/api/'), 'separated');
      assert.equal(await routed('/api?q=1'), 'separated');
      assert.equal(await routed('/apix'), '404');
      assert.equal(await routed('/API'), '404');
    });

    it('case_sensitive: false folds case for prefix and path; the default is case-sensitive', async () => {
      assert.equal(await routed('/caseinsensitive/x'), 'ci-prefix');
      assert.equal(await routed('/CASEINSENSITIVE'), 'ci-prefix');
      assert.equal(await routed('/exactci'), 'ci-path');
      assert.equal(await routed('/EXACTCI?z=1'), 'ci-path');
      assert.equal(await routed('/Sensitive/x'), 'cs-prefix');
      assert.equal(await routed('/sensitive/x'), '404');
    });
  });

  describe('header matchers', () => {
    it('string_match exact, prefix, suffix, contains', async () => {
      assert.equal(await routed('/h/exact', { 'x-h': 'abc' }), 'h-exact');
      assert.equal(await routed('/h/exact', { 'x-h': 'abcd' }), '404');
      assert.equal(await routed('/h/exact', { 'x-h': 'ABC' }), '404');
      assert.equal(await routed('/h/exact'), '404');
      assert.equal(await routed('/h/prefix', { 'x-h': 'abzz' }), 'h-prefix');
      assert.equal(await routed('/h/prefix', { 'x-h': 'zab' }), '404');
      assert.equal(await routed('/h/suffix', { 'x-h': 'xyz' }), 'h-suffix');
      assert.equal(await routed('/h/suffix', { 'x-h': 'yzx' }), '404');
      assert.equal(await routed('/h/contains', { 'x-h': 'a-mid-b' }), 'h-contains');
      assert.equal(await routed('/h/contains', { 'x-h': 'mi-d' }), '404');
    });

    it('string_match safe_regex matches the whole value; ignore_case folds ASCII case', async () => {
      assert.equal(await routed('/h/regex', { 'x-h': 'abc1' }), 'h-regex');
      assert.equal(await routed('/h/regex', { 'x-h': 'abc1x' }), '404');
      assert.equal(await routed('/h/regex', { 'x-h': 'zabc1' }), '404');
      assert.equal(await routed('/h/icase', { 'x-h': 'mixed' }), 'h-ignore-case');
      assert.equal(await routed('/h/icase', { 'x-h': 'MIXED' }), 'h-ignore-case');
      assert.equal(await routed('/h/icase', { 'x-h': 'mixed!' }), '404');
    });

    it('present_match', async () => {
      assert.equal(await routed('/h/present', { 'x-h': 'anything' }), 'h-present');
      assert.equal(await routed('/h/present', { 'x-h': '' }), 'h-present');
      assert.equal(await routed('/h/present'), '404');
      assert.equal(await routed('/h/absent'), 'h-absent');
      assert.equal(await routed('/h/absent', { 'x-h': 'x' }), '404');
    });

    it('range_match is a half-open int64 range', async () => {
      assert.equal(await routed('/h/range', { 'x-h': '10' }), 'h-range');
      assert.equal(await routed('/h/range', { 'x-h': '19' }), 'h-range');
      assert.equal(await routed('/h/range', { 'x-h': '20' }), '404');
      assert.equal(await routed('/h/range', { 'x-h': '9' }), '404');
      assert.equal(await routed('/h/range', { 'x-h': '15.5' }), '404');
      assert.equal(await routed('/h/range', { 'x-h': 'abc' }), '404');
      assert.equal(await routed('/h/range'), '404');
    });

    it('invert_match inverts a value match; a missing header still does not match', async () => {
      assert.equal(await routed('/h/invert', { 'x-h': 'yes' }), 'h-invert');
      assert.equal(await routed('/h/invert', { 'x-h': 'no' }), '404');
      assert.equal(await routed('/h/invert'), '404');
    });

    it('the deprecated exact_match still works', async () => {
      assert.equal(await routed('/h/deprecated', { 'x-h': 'old' }), 'h-deprecated');
      assert.equal(await routed('/h/deprecated', { 'x-h': 'older' }), '404');
    });

    it('matches pseudo-headers and joins repeated headers with a comma', async () => {
      assert.equal(await routed('/h/method', {}, 0, 'POST'), 'h-method');
      assert.equal(await routed('/h/method'), '404');
      assert.equal(await routed('/h/exact', { 'x-h': ['abc', 'abc'] }), '404');
      assert.equal(await routed('/h/suffix', { 'x-h': ['q', 'xyz'] }), 'h-suffix');
    });

    it('requires every header matcher of a route', async () => {
      assert.equal(await routed('/h/all', { 'x-a': '1', 'x-b': '2' }), 'h-all');
      assert.equal(await routed('/h/all', { 'x-a': '1' }), '404');
      assert.equal(await routed('/h/all', { 'x-a': '1', 'x-b': '3' }), '404');
    });
  });

  describe('query parameter matchers', () => {
    it('string_match on the value', async () => {
      assert.equal(await routed('/q/exact?debug=1'), 'q-exact');
      assert.equal(await routed('/q/exact?a=b&debug=1'), 'q-exact');
      assert.equal(await routed('/q/exact?debug=2'), '404');
      assert.equal(await routed('/q/exact?debug'), '404');
      assert.equal(await routed('/q/exact'), '404');
    });

    it('present_match', async () => {
      assert.equal(await routed('/q/present?flag'), 'q-present');
      assert.equal(await routed('/q/present?flag=x'), 'q-present');
      assert.equal(await routed('/q/present?x=1&flag='), 'q-present');
      assert.equal(await routed('/q/present?flags=1'), '404');
      assert.equal(await routed('/q/present'), '404');
    });
  });

  describe('grpc and runtime_fraction', () => {
    it('grpc: {} matches only content-type application/grpc*', async () => {
      // The route's direct response reaches a gRPC client as a gRPC reply, its body in grpc-message (as Envoy).
      for (const type of ['application/grpc', 'application/grpc+proto']) {
        const res = await get('/grpc', { 'content-type': type });
        assert.equal(res.headers['grpc-message'], 'grpc', type);
      }
      assert.equal(await routed('/grpc', { 'content-type': 'application/json' }), '404');
      // Envoy's Grpc::Common::hasGrpcContentType: gRPC-Web and friends are not gRPC.
      assert.equal(await routed('/grpc', { 'content-type': 'application/grpc-web' }), '404');
      assert.equal(await routed('/grpc', { 'content-type': 'application/grpc-web+proto' }), '404');
      assert.equal(await routed('/grpc'), '404');
    });

    it('0% never matches and 100% always matches', async () => {
      for (let i = 0; i < 10; i++) {
        assert.equal(await routed('/rt/never'), '404');
        assert.equal(await routed('/rt/always'), 'rt-always');
      }
    });

    it('a runtime key from a static layer overrides the default fraction', async () => {
      for (let i = 0; i < 10; i++) {
        assert.equal(await routed('/rt/on'), 'rt-on-by-runtime');
        assert.equal(await routed('/rt/off'), '404');
        assert.equal(await routed('/rt/unset'), 'rt-unset-key');
      }
    });
  });
});
