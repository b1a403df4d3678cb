/**
 * `envoy.filters.http.ext_authz` end to end through real sockets: a real @grpc/grpc-js Authorization server and a
 * real node:http authorization server decide; the CheckRequest they see, allows with header mutations reaching
 * the upstream, denials passed through, request bodies (buffered, partial, over the limit), per-route settings,
 * servers that hang, are down or answer garbage (with and without failure_mode_allow), mTLS peers, stats and
 * configuration errors.
 */
import assert from 'node:assert/strict';
import { createServer, get as httpGet, type Server } from 'node:http';
import { connect } from 'node:http2';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import { Agent, request } from 'undici';
import { checkBootstrap, parseDocument } from '../../src/config/load.js';
import type { ConfigError } from '../../src/config/errors.js';
import { compileBootstrap } from '../../src/dataplane/data-plane.js';
import { createLogger } from '../../src/util/logger.js';
import { EXTENSIONS } from '../../src/extensions/registry.js';
import { decodeMessage, encodeMessage, envoyMethod, toStruct } from '../../src/grpc/envoy-protos.js';
import { hasOpenssl, makeTestPki, OPENSSL_MISSING } from '../support/certificates.js';
import { startGrpcServer } from '../support/grpc.js';
import { httpListener, type Json, type RunningPortico, startPortico, stat } from '../support/portico.js';
import { httpRequest, refusedPort, type RecordingUpstream, startRecordingUpstream } from '../support/upstreams.js';

const CHECK = envoyMethod('envoy/service/auth/v3/external_auth.proto', 'envoy.service.auth.v3.Authorization', 'Check');
const EXT_AUTHZ_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';
const PER_ROUTE_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute';

type CheckRequest = any;

function cluster(name: string, port: number, http2 = false): Json {
  return {
    name,
    connect_timeout: '1s',
    ...(http2
      ? {
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
        }
      : {}),
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }] },
  };
}

const perRoute = (config: Json): Json => ({ 'envoy.filters.http.ext_authz': { '@type': PER_ROUTE_TYPE, ...config } });

const ROUTES: Json = {
  name: 'local',
  response_headers_to_add: [
    { header: { key: 'x-details', value: '%RESPONSE_CODE_DETAILS%' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
    { header: { key: 'x-flags', value: '%RESPONSE_FLAGS%' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
  ],
  virtual_hosts: [
    {
      name: 'all',
      domains: ['*'],
      typed_per_filter_config: perRoute({ check_settings: { context_extensions: { region: 'eu', tenant: 'default' } } }),
      routes: [
        { match: { prefix: '/public' }, route: { cluster: 'backend' }, typed_per_filter_config: perRoute({ disabled: true }) },
        { match: { prefix: '/ctx' }, route: { cluster: 'backend' }, typed_per_filter_config: perRoute({ check_settings: { context_extensions: { tenant: 'acme' } } }) },
        { match: { prefix: '/nobody' }, route: { cluster: 'backend' }, typed_per_filter_config: perRoute({ check_settings: { disable_request_body_buffering: true } }) },
        // Only reached by routing again after the OK answer set x-over (clear_route_cache).
        { match: { prefix: '/', headers: [{ name: 'x-over', string_match: { exact: 'new' } }] }, direct_response: { status: 200, body: { inline_string: 'rerouted' } } },
        { match: { prefix: '/' }, route: { cluster: 'backend' } },
      ],
    },
  ],
};

const extAuthz = (config: Json): Json => ({ name: 'envoy.filters.http.ext_authz', typed_config: { '@type': EXT_AUTHZ_TYPE, ...config } });
const grpcService = (clusterName: string, extra: Json = {}): Json => ({ grpc_service: { envoy_grpc: { cluster_name: clusterName }, ...extra } });

/** What the gRPC server answers, by the checked request's path. */
function answer(request: CheckRequest): Buffer | 'hang' {
  const path: string = request.attributes.request.http.path;
  if (path.startsWith('/hang')) return 'hang';
  // Not a CheckResponse: field 1 announced as a 100-byte message that is not there.
  if (path.startsWith('/garbage')) return Buffer.from([0x0a, 0x64, 0x01]);
  if (path.startsWith('/deny')) {
    return encodeMessage(CHECK.responseType, {
      status: { code: 7 },
      denied_response: { status: { code: 'Unauthorized' }, headers: [{ header: { key: 'x-denied', value: 'why' } }], body: 'nope' },
    });
  }
  return encodeMessage(CHECK.responseType, {
    status: { code: 0 },
    ok_response: {
      headers: [
        { header: { key: 'x-over', value: 'new' } },
        { header: { key: 'x-app', value: 'two' }, append: { value: true } },
      ],
      headers_to_remove: ['x-remove'],
      response_headers_to_add: [{ header: { key: 'x-resp', value: 'yes' } }],
      query_parameters_to_set: [{ key: 'added', value: 'a b' }, { key: 'q', value: '2' }],
      query_parameters_to_remove: ['drop'],
    },
    dynamic_metadata: toStruct({ user: 'alice' }),
  });
}

describe('ext_authz filter', () => {
  let upstream: RecordingUpstream;
  let grpcServer: grpc.Server;
  let httpAuthz: Server;
  const checks: CheckRequest[] = [];
  const httpChecks: { method: string; url: string; headers: Record<string, unknown>; body: string }[] = [];
  let gw: RunningPortico;
  let tlsGw: RunningPortico | undefined;
  let pki: ReturnType<typeof makeTestPki> | undefined;

  before(async () => {
    upstream = await startRecordingUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('from upstream');
    });
    const started = await startGrpcServer({
      Check: {
        path: CHECK.path,
        handler: (call, callback) => {
          const request: CheckRequest = decodeMessage(CHECK.requestType, call.request);
          checks.push(request);
          const reply = answer(request);
          if (reply === 'hang') return;
          if (request.attributes.request.http.path.includes('/slow')) setTimeout(() => callback(null, reply), 100);
          else callback(null, reply);
        },
      },
    });
    grpcServer = started.server;
    httpAuthz = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        httpChecks.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString() });
        if (req.url!.startsWith('/auth/deny')) {
          res.writeHead(401, { 'www-authenticate': 'Bearer', 'x-deny-info': 'expired', 'x-hidden': 'secret', 'content-type': 'application/json' });
          res.end('{"error":"expired"}');
        } else if (req.url!.startsWith('/auth/hang')) {
          // never answers
        } else if (req.url!.startsWith('/auth/error')) {
          res.writeHead(500);
          res.end('broken');
        } else {
          res.writeHead(200, { 'x-auth-user': 'alice', 'x-auth-append': 'more', 'x-success': 'ok', 'x-ignored': 'no' });
          res.end();
        }
      });
    });
    await new Promise<void>((resolve) => httpAuthz.listen(0, '127.0.0.1', resolve));
    const httpPort = (httpAuthz.address() as { port: number }).port;
    const dead = await refusedPort();
    const clusters = [
      cluster('backend', upstream.port),
      cluster('authz_grpc', started.port, true),
      cluster('authz_http', httpPort),
      cluster('authz_dead', dead, true),
    ];
    const listeners = [
      // 0: gRPC, closed on failure, whole bodies up to 64 bytes.
      httpListener(ROUTES, {}, [extAuthz({ ...grpcService('authz_grpc'), with_request_body: { max_request_bytes: 64 }, metadata_context_namespaces: ['none'] })]),
      // 1: gRPC, open on failure, partial bodies of 8 bytes as bytes, 100 ms timeout, its own stat prefix.
      httpListener(ROUTES, {}, [
        extAuthz({
          ...grpcService('authz_grpc', { timeout: '0.1s' }),
          failure_mode_allow: true,
          failure_mode_allow_header_add: true,
          with_request_body: { max_request_bytes: 8, allow_partial_message: true, pack_as_bytes: true },
          stat_prefix: 'open',
        }),
      ]),
      // 2: HTTP service.
      httpListener(ROUTES, {}, [
        extAuthz({
          http_service: {
            server_uri: { uri: 'http://authz', cluster: 'authz_http', timeout: '0.3s' },
            path_prefix: '/auth',
            authorization_request: { allowed_headers: { patterns: [{ exact: 'x-allowed' }] }, headers_to_add: [{ key: 'x-added', value: 'static' }] },
            authorization_response: {
              allowed_upstream_headers: { patterns: [{ exact: 'x-auth-user' }] },
              allowed_upstream_headers_to_append: { patterns: [{ exact: 'x-auth-append' }] },
              allowed_client_headers: { patterns: [{ exact: 'x-deny-info' }] },
              allowed_client_headers_on_success: { patterns: [{ exact: 'x-success' }] },
              dynamic_metadata_from_headers: { patterns: [{ prefix: 'x-auth-' }] },
            },
          },
          status_on_error: { code: 'ServiceUnavailable' },
        }),
        // Shows the dynamic metadata the HTTP service's answer left.
        extAuthz({ ...grpcService('authz_grpc'), metadata_context_namespaces: ['envoy.filters.http.ext_authz'], stat_prefix: 'after_http' }),
      ]),
      // 3 and 4: a service that is down, closed and open on failure.
      httpListener(ROUTES, {}, [extAuthz(grpcService('authz_dead'))]),
      httpListener(ROUTES, {}, [extAuthz({ ...grpcService('authz_dead'), failure_mode_allow: true })]),
      // 5: two checks: the first routes again after its answer and leaves dynamic metadata for the second.
      httpListener(ROUTES, {}, [
        extAuthz({ ...grpcService('authz_grpc'), clear_route_cache: true, stat_prefix: 'first' }),
        extAuthz({ ...grpcService('authz_grpc'), metadata_context_namespaces: ['envoy.filters.http.ext_authz'], stat_prefix: 'second' }),
      ]),
    ];
    gw = await startPortico(JSON.stringify({ static_resources: { listeners, clusters } }));
    if (hasOpenssl) {
      pki = makeTestPki([
        { name: 'server', commonName: 'localhost', subjectAltNames: ['DNS:localhost'] },
        { name: 'client', commonName: 'client', subjectAltNames: ['URI:spiffe://test/client'] },
      ]);
      const listener = httpListener(ROUTES, {}, [extAuthz({ ...grpcService('authz_grpc'), include_peer_certificate: true })]);
      (listener.filter_chains as Json[])[0]!.transport_socket = {
        name: 'envoy.transport_sockets.tls',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
          require_client_certificate: true,
          common_tls_context: {
            tls_certificates: [{ certificate_chain: { filename: pki.file('server.crt') }, private_key: { filename: pki.file('server.key') } }],
            validation_context: { trusted_ca: { filename: pki.file('ca.crt') } },
          },
        },
      };
      tlsGw = await startPortico(JSON.stringify({ static_resources: { listeners: [listener], clusters } }));
    }
  });

  after(async () => {
    await gw.close();
    await tlsGw?.close();
    grpcServer.forceShutdown();
    httpAuthz.close();
    upstream.server.close();
  });

  const counter = (name: string, prefix = 'ext_authz.'): number => stat(gw, `http.ingress_http.${prefix}${name}`) ?? 0;
  const lastUpstream = () => upstream.requests[upstream.requests.length - 1]!;

  it('allows on an OK answer: header edits reach the upstream, response headers the client', async () => {
    const ok = counter('ok');
    const before = upstream.requests.length;
    const res = await httpRequest(`${gw.url(0)}/allow?q=1&drop=x&keep=%20k&drop`, { headers: { 'x-over': 'old', 'x-app': 'one', 'x-remove': 'gone', 'x-keep': 'k' } });
    assert.equal(res.status, 200);
    assert.equal(res.body, 'from upstream');
    assert.equal(res.headers['x-resp'], 'yes');
    assert.equal(upstream.requests.length, before + 1);
    const seen = lastUpstream().headers;
    assert.equal(seen['x-over'], 'new', 'overwritten');
    assert.equal(seen['x-app'], 'one,two', 'appended');
    assert.equal(seen['x-remove'], undefined, 'removed');
    assert.equal(seen['x-keep'], 'k');
    assert.equal(lastUpstream().url, '/allow?keep=%20k&added=a%20b&q=2', 'query parameters set and removed');
    assert.equal(counter('ok'), ok + 1);
  });

  it('sends a CheckRequest with the addresses, method, path, headers and protocol', async () => {
    await httpRequest(`${gw.url(0)}/attrs?x=y`, { method: 'DELETE', headers: { 'x-custom': 'Value', authorization: 'Bearer t' } });
    const attributes = checks[checks.length - 1]!.attributes;
    assert.equal(attributes.source.address.socket_address.address, '127.0.0.1');
    assert.ok(attributes.source.address.socket_address.port_value > 0);
    assert.equal(attributes.destination.address.socket_address.port_value, gw.port(0));
    const http = attributes.request.http;
    assert.equal(http.method, 'DELETE');
    assert.equal(http.path, '/attrs?x=y');
    assert.equal(http.host, `127.0.0.1:${gw.port(0)}`);
    assert.equal(http.scheme, 'http');
    assert.equal(http.protocol, 'HTTP/1.1');
    assert.ok(http.id.length > 0);
    assert.equal(http.id, http.headers['x-request-id']);
    assert.equal(http.headers['x-custom'], 'Value');
    assert.equal(http.headers.authorization, 'Bearer t');
    assert.equal(http.headers[':method'], 'DELETE');
    assert.ok(Math.abs(attributes.request.time.seconds - Date.now() / 1000) < 60);
    assert.deepEqual(attributes.context_extensions, { region: 'eu', tenant: 'default' }, 'the virtual host\'s');
    assert.equal(attributes.metadata_context, undefined, 'no dynamic metadata in the namespaces asked for');
  });

  it('says HTTP/2 for an HTTP/2 request', async () => {
    const session = connect(gw.url(0));
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const stream = session.request({ ':path': '/h2', 'x-h2': 'yes' });
        stream.on('response', (headers) => resolve(Number(headers[':status'])));
        stream.on('error', reject);
        stream.resume();
      });
      assert.equal(status, 200);
    } finally {
      session.close();
    }
    const http = checks[checks.length - 1]!.attributes.request.http;
    assert.equal(http.protocol, 'HTTP/2');
    assert.equal(http.path, '/h2');
    assert.equal(http.headers['x-h2'], 'yes');
  });

  it('passes a denial through with its status, headers and body, and never reaches the upstream', async () => {
    const denied = counter('denied');
    const before = upstream.requests.length;
    const res = await httpRequest(`${gw.url(0)}/deny`);
    assert.equal(res.status, 401);
    assert.equal(res.body, 'nope');
    assert.equal(res.headers['x-denied'], 'why');
    assert.equal(res.headers['x-details'], 'ext_authz_denied');
    assert.equal(res.headers['x-flags'], 'UAEX');
    assert.equal(upstream.requests.length, before);
    assert.equal(counter('denied'), denied + 1);
  });

  it('sends the context extensions of the route\'s levels, and skips routes where it is disabled', async () => {
    await httpRequest(`${gw.url(0)}/ctx`);
    assert.deepEqual(checks[checks.length - 1]!.attributes.context_extensions, { region: 'eu', tenant: 'acme' }, 'merged, the route\'s winning');
    const count = checks.length;
    const res = await httpRequest(`${gw.url(0)}/public/deny`);
    assert.equal(res.status, 200, 'not checked at all');
    assert.equal(checks.length, count);
  });

  it('buffers the body for the check, and answers 413 over max_request_bytes', async () => {
    const res = await httpRequest(`${gw.url(0)}/allow`, { method: 'POST', body: 'hello body' });
    assert.equal(res.status, 200);
    assert.equal(checks[checks.length - 1]!.attributes.request.http.body, 'hello body');
    assert.equal(lastUpstream().body.toString(), 'hello body');
    const count = checks.length;
    const big = await httpRequest(`${gw.url(0)}/allow`, { method: 'POST', body: 'x'.repeat(100) });
    assert.equal(big.status, 413);
    assert.equal(checks.length, count, 'no check for a refused body');
    const unbuffered = await httpRequest(`${gw.url(0)}/nobody`, { method: 'POST', body: 'x'.repeat(100) });
    assert.equal(unbuffered.status, 200, 'disable_request_body_buffering');
    assert.equal(checks[checks.length - 1]!.attributes.request.http.body, undefined);
    assert.equal(lastUpstream().body.length, 100);
  });

  it('holds a body longer than the buffer limit while the answer is awaited, rather than refusing it', async () => {
    const body = Buffer.alloc(3 * 1024 * 1024, 'b');
    const res = await httpRequest(`${gw.url(0)}/nobody/slow`, { method: 'POST', body });
    assert.equal(res.status, 200);
    assert.equal(lastUpstream().bodySize, body.length);
  });

  it('sends the first max_request_bytes of a longer body with allow_partial_message, as raw bytes', async () => {
    const res = await httpRequest(`${gw.url(1)}/allow`, { method: 'POST', body: 'abcdefghijkl' });
    assert.equal(res.status, 200);
    const http = checks[checks.length - 1]!.attributes.request.http;
    assert.equal(Buffer.from(http.raw_body).toString(), 'abcdefgh');
    assert.equal(http.body, undefined);
    assert.equal(lastUpstream().body.toString(), 'abcdefghijkl', 'the upstream gets all of it');
  });

  it('answers status_on_error when the server hangs past the timeout, or goes on with failure_mode_allow', async () => {
    const error = counter('error');
    const closed = await httpRequest(`${gw.url(0)}/hang`);
    assert.equal(closed.status, 403);
    assert.equal(closed.headers['x-details'], 'ext_authz_error');
    assert.equal(closed.headers['x-flags'], 'UAEX');
    assert.equal(counter('error'), error + 1);
    const allowed = counter('failure_mode_allowed', 'ext_authz.open.');
    const open = await httpRequest(`${gw.url(1)}/hang`);
    assert.equal(open.status, 200);
    assert.equal(lastUpstream().headers['x-envoy-auth-failure-mode-allowed'], 'true');
    assert.equal(counter('failure_mode_allowed', 'ext_authz.open.'), allowed + 1);
  });

  it('treats an answer that is not a CheckResponse as an error, never an allow', async () => {
    const before = upstream.requests.length;
    const res = await httpRequest(`${gw.url(0)}/garbage`);
    assert.equal(res.status, 403);
    assert.equal(res.headers['x-details'], 'ext_authz_error');
    assert.equal(upstream.requests.length, before);
  });

  it('routes again after the answer changed the request with clear_route_cache; leaves dynamic metadata for later filters', async () => {
    const first = counter('ok', 'ext_authz.first.');
    const second = counter('ok', 'ext_authz.second.');
    const before = checks.length;
    const res = await httpRequest(`${gw.url(5)}/allow`);
    assert.equal(res.status, 200);
    assert.equal(res.body, 'rerouted');
    assert.equal(checks.length, before + 2);
    assert.equal(checks[before].attributes.metadata_context, undefined);
    const metadata = checks[before + 1].attributes.metadata_context.filter_metadata['envoy.filters.http.ext_authz'];
    assert.deepEqual(metadata, toStruct({ user: 'alice' }));
    assert.equal(counter('ok', 'ext_authz.first.'), first + 1);
    assert.equal(counter('ok', 'ext_authz.second.'), second + 1);
    const plain = await httpRequest(`${gw.url(0)}/allow`);
    assert.equal(plain.body, 'from upstream', 'without clear_route_cache the first route stays');
  });

  it('follows failure_mode_allow when the service is down', async () => {
    const before = upstream.requests.length;
    assert.equal((await httpRequest(`${gw.url(3)}/allow`)).status, 403);
    assert.equal(upstream.requests.length, before);
    const open = await httpRequest(`${gw.url(4)}/allow`);
    assert.equal(open.status, 200);
    assert.equal(lastUpstream().headers['x-envoy-auth-failure-mode-allowed'], undefined, 'failure_mode_allow_header_add is off');
  });

  it('asks an HTTP service with the method, prefixed path and allowed headers; its 200 allows', async () => {
    const res = await httpRequest(`${gw.url(2)}/allow/x?y=1`, {
      method: 'PUT',
      body: 'not sent',
      headers: { authorization: 'Bearer t', 'x-allowed': 'a', 'x-secret': 's', 'x-auth-append': 'first' },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-success'], 'ok');
    const check = httpChecks[httpChecks.length - 1]!;
    assert.equal(check.method, 'PUT');
    assert.equal(check.url, '/auth/allow/x?y=1');
    assert.equal(check.headers.authorization, 'Bearer t');
    assert.equal(check.headers['x-allowed'], 'a');
    assert.equal(check.headers['x-added'], 'static');
    assert.equal(check.headers['x-secret'], undefined);
    assert.equal(check.headers.host, `127.0.0.1:${gw.port(2)}`);
    assert.equal(check.headers['content-length'], '0');
    assert.equal(check.body, '');
    const seen = lastUpstream();
    assert.equal(seen.headers['x-auth-user'], 'alice');
    assert.equal(seen.headers['x-auth-append'], 'first,more');
    assert.equal(seen.headers['x-ignored'], undefined);
    assert.equal(seen.body.toString(), 'not sent');
    const metadata = checks[checks.length - 1]!.attributes.metadata_context.filter_metadata['envoy.filters.http.ext_authz'];
    assert.deepEqual(metadata, toStruct({ 'x-auth-user': 'alice', 'x-auth-append': 'more' }), 'dynamic_metadata_from_headers');
  });

  it('passes an HTTP service\'s denial through with the allowed client headers; a 5xx is an error', async () => {
    const res = await httpRequest(`${gw.url(2)}/deny`);
    assert.equal(res.status, 401);
    assert.equal(res.body, '{"error":"expired"}');
    assert.equal(res.headers['www-authenticate'], 'Bearer');
    assert.equal(res.headers['x-deny-info'], 'expired');
    assert.equal(res.headers['x-hidden'], undefined);
    const error = await httpRequest(`${gw.url(2)}/error`);
    assert.equal(error.status, 503, 'status_on_error');
    assert.equal(error.headers['x-details'], 'ext_authz_error');
    assert.notEqual(error.body, 'broken');
    const hung = await httpRequest(`${gw.url(2)}/hang`);
    assert.equal(hung.status, 503, 'server_uri.timeout');
    assert.equal(hung.headers['x-details'], 'ext_authz_error');
  });

  it('cancels the check of a request whose client went away', async () => {
    const error = counter('error');
    const count = checks.length;
    await new Promise<void>((resolve) => {
      const req = httpGet(`${gw.url(0)}/hang`);
      req.on('error', () => resolve());
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 100);
    });
    assert.equal(checks.length, count + 1, 'the check was under way');
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal(counter('error'), error, 'no answer, not even the timeout, after the stream ended');
    assert.equal((await httpRequest(`${gw.url(0)}/allow`)).status, 200);
  });

  it('describes an mTLS peer: its URI SAN as principal, its certificate url-encoded', { skip: hasOpenssl ? false : OPENSSL_MISSING }, async () => {
    const dispatcher = new Agent({ connect: { ca: readFileSync(pki!.file('ca.crt')), cert: readFileSync(pki!.file('client.crt')), key: readFileSync(pki!.file('client.key')) } });
    try {
      const res = await request(`https://localhost:${tlsGw!.port(0)}/allow`, { dispatcher });
      assert.equal(res.statusCode, 200);
      await res.body.text();
    } finally {
      await dispatcher.close();
    }
    const attributes = checks[checks.length - 1]!.attributes;
    assert.equal(attributes.source.principal, 'spiffe://test/client');
    assert.equal(attributes.destination.principal, 'localhost');
    const pem = decodeURIComponent(attributes.source.certificate);
    assert.equal(pem.replace(/\s/g, ''), readFileSync(pki!.file('client.crt'), 'utf8').replace(/\s/g, ''));
    assert.equal(attributes.request.http.scheme, 'https');
  });
});

/** Every error of a configuration: schema and support checks, then compilation. */
function configErrors(filter: Json): ConfigError[] {
  const errors: ConfigError[] = [];
  const bootstrap = { static_resources: { listeners: [httpListener(ROUTES, {}, [extAuthz(filter)])], clusters: [cluster('backend', 1), cluster('h1', 1)] } };
  const checked = checkBootstrap(parseDocument(JSON.stringify(bootstrap), 't.json', errors));
  errors.push(...checked.errors);
  if (errors.length === 0) compileBootstrap(checked.bootstrap, createLogger('off'), errors, EXTENSIONS);
  return errors;
}

describe('ext_authz configuration', () => {
  const AT = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config';
  const paths = (filter: Json) => configErrors(filter).map((e) => `${e.code} ${e.path.replace(AT, '')}`);

  it('needs exactly one service', () => {
    assert.deepEqual(paths({}), ['missing_required ']);
    assert.deepEqual(paths({ ...grpcService('backend'), http_service: { server_uri: { uri: 'http://a', cluster: 'backend', timeout: '1s' } } }), ['oneof_conflict .http_service']);
  });

  it('refuses bad values with their paths', () => {
    assert.deepEqual(paths({ ...grpcService('nowhere'), transport_api_version: 'V2' }), [
      'invalid_value .transport_api_version',
      'unknown_cluster .grpc_service.envoy_grpc.cluster_name',
    ]);
    assert.deepEqual(paths({ ...grpcService('backend'), with_request_body: { max_request_bytes: 0 } }), ['invalid_value .with_request_body.max_request_bytes']);
    assert.deepEqual(paths({ ...grpcService('h1') }), ['invalid_value .grpc_service.envoy_grpc.cluster_name'], 'an HTTP/1.1 cluster');
    assert.deepEqual(paths({ http_service: { path_prefix: '/a' } }), ['missing_required .http_service.server_uri']);
    assert.deepEqual(paths({ http_service: { server_uri: { uri: 'http://a', cluster: 'nowhere', timeout: '1s' }, path_prefix: 'auth' } }), [
      'unknown_cluster .http_service.server_uri.cluster',
      'invalid_value .http_service.path_prefix',
    ]);
  });

  it('refuses what it does not implement by name', () => {
    assert.deepEqual(paths({ ...grpcService('backend'), validate_mutations: true, filter_enabled: { default_value: { numerator: 1 } } }), [
      'unsupported_field .validate_mutations',
      'unsupported_field .filter_enabled',
    ]);
  });
});
