/**
 * `envoy.filters.http.ext_authz` end to end against real authorization servers: an HTTP one on node:http and a
 * gRPC `envoy.service.auth.v3.Authorization` one on @grpc/grpc-js. Allow, deny (status, headers and body passed
 * through), header mutations reaching the upstream, the CheckRequest the server sees, request bodies, per-route
 * settings, and a service that hangs, is down or answers garbage: an error, never an allow.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { decodeMessage, encodeMessage, envoyMethod } from '../../src/grpc/envoy-protos.js';
import { type RunningPortico, simpleBootstrap, startPortico, stat, staticCluster } from '../support/portico.js';
import { startGrpcServer } from '../support/grpc.js';
import { httpRequest, type RecordingUpstream, refusedPort, startRecordingUpstream } from '../support/upstreams.js';

const CHECK = envoyMethod('envoy/service/auth/v3/external_auth.proto', 'envoy.service.auth.v3.Authorization', 'Check');
const H2 = `
  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      explicit_http_config: { http2_protocol_options: {} }`;

const extAuthz = (body: string) => `- name: envoy.filters.http.ext_authz
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
    transport_api_version: V3
${body
  .split('\n')
  .map((l) => `    ${l}`)
  .join('\n')}`;

describe('ext_authz over HTTP', () => {
  let app: RecordingUpstream;
  let authz: http.Server;
  const seen: { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }[] = [];
  let gw: RunningPortico;

  before(async () => {
    authz = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c));
      req.on('end', () => {
        seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
        const path = req.url!.replace('/authz', '');
        if (path.startsWith('/hang')) return;
        if (path.startsWith('/deny')) {
          res.writeHead(403, { 'x-reason': 'no ticket', 'content-type': 'text/plain' });
          res.end('go away');
        } else if (path.startsWith('/broken')) {
          res.writeHead(500);
          res.end('boom');
        } else {
          res.writeHead(200, { 'x-user': 'alice', 'x-trace-tag': 'authz', 'x-session': 'fresh', 'x-not-forwarded': 'secret' });
          res.end();
        }
      });
    });
    await new Promise<void>((resolve) => authz.listen(0, '127.0.0.1', resolve));
    app = await startRecordingUpstream();
    gw = await startPortico(
      simpleBootstrap({
        httpFilters: extAuthz(`http_service:
  server_uri: { uri: "http://authz.internal", cluster: authz, timeout: 0.3s }
  path_prefix: /authz
  authorization_request:
    headers_to_add: [{ key: x-checked-by, value: portico }]
  authorization_response:
    allowed_upstream_headers: { patterns: [{ exact: x-user }] }
    allowed_upstream_headers_to_append: { patterns: [{ exact: x-trace-tag }] }
    allowed_client_headers: { patterns: [{ exact: x-reason }, { exact: content-type }] }
    allowed_client_headers_on_success: { patterns: [{ exact: x-session }] }
allowed_headers: { patterns: [{ prefix: x-ticket }] }
with_request_body: { max_request_bytes: 1024 }`),
        routes: `- match: { prefix: "/public" }
  route: { cluster: app }
  typed_per_filter_config:
    envoy.filters.http.ext_authz:
      "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
      disabled: true
- match: { prefix: "/" }
  route: { cluster: app }`,
        clusters: `${staticCluster('app', app.port)}${staticCluster('authz', (authz.address() as AddressInfo).port)}`,
      }),
    );
  });

  after(async () => {
    await gw.close();
    await app.close();
    authz.closeAllConnections();
    await new Promise((resolve) => authz.close(resolve));
  });

  it('asks with the method, path under path_prefix and the allowed headers; an OK adds its headers', async () => {
    const res = await httpRequest(`${gw.url()}/orders?id=7`, { method: 'POST', headers: { authorization: 'Bearer t', 'x-ticket-id': '42', 'x-other': 'no', 'x-trace-tag': 'client' }, body: 'order body' });
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-session'], 'fresh');
    const asked = seen.at(-1)!;
    assert.equal(asked.method, 'POST');
    assert.equal(asked.url, '/authz/orders?id=7');
    assert.equal(asked.headers.authorization, 'Bearer t');
    assert.equal(asked.headers['x-ticket-id'], '42');
    assert.equal(asked.headers['x-other'], undefined);
    assert.equal(asked.headers['x-checked-by'], 'portico');
    assert.equal(asked.body, 'order body', 'with_request_body sends the body');
    const upstream = app.requests.at(-1)!;
    assert.equal(upstream.headers['x-user'], 'alice');
    assert.equal(upstream.headers['x-trace-tag'], 'client,authz');
    assert.equal(upstream.headers['x-not-forwarded'], undefined);
    assert.equal(upstream.body.toString(), 'order body');
    assert.equal(stat(gw, 'http.ingress_http.ext_authz.ok'), 1);
  });

  it('passes a denial to the client with its status, allowed headers and body; the upstream never sees it', async () => {
    const before = app.requests.length;
    const res = await httpRequest(`${gw.url()}/deny/this`);
    assert.equal(res.status, 403);
    assert.equal(res.body, 'go away');
    assert.equal(res.headers['x-reason'], 'no ticket');
    assert.equal(app.requests.length, before);
    assert.equal(stat(gw, 'http.ingress_http.ext_authz.denied'), 1);
  });

  it('a 500 from the service is a denial, a hang is an error (403 status_on_error): never an allow', async () => {
    assert.equal((await httpRequest(`${gw.url()}/broken`)).status, 500);
    assert.equal((await httpRequest(`${gw.url()}/hang`)).status, 403);
    assert.equal(stat(gw, 'http.ingress_http.ext_authz.error'), 1);
  });

  it('is off on a route whose ExtAuthzPerRoute disables it', async () => {
    const asked = seen.length;
    assert.equal((await httpRequest(`${gw.url()}/public/x`)).status, 200);
    assert.equal(seen.length, asked);
  });
});

describe('ext_authz over gRPC', () => {
  let app: RecordingUpstream;
  let server: grpc.Server;
  let port: number;
  const seen: any[] = [];
  let gw: RunningPortico;

  before(async () => {
    ({ server, port } = await startGrpcServer({
      Check: {
        path: CHECK.path,
        handler: (call, callback) => {
          const request = decodeMessage<any>(CHECK.requestType, call.request);
          seen.push(request);
          const path: string = request.attributes.request.http.path;
          if (path.startsWith('/hang')) return;
          if (path.startsWith('/garbage')) return callback(null, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff]));
          if (path.startsWith('/deny')) {
            return callback(
              null,
              encodeMessage(CHECK.responseType, {
                status: { code: 7 },
                denied_response: { status: { code: 'Unauthorized' }, headers: [{ header: { key: 'x-denied', value: 'yes' } }], body: 'denied by grpc' },
              }),
            );
          }
          callback(
            null,
            encodeMessage(CHECK.responseType, {
              status: { code: 0 },
              ok_response: {
                headers: [{ header: { key: 'x-authz', value: 'ok' } }, { header: { key: 'x-multi', value: 'two' }, append: { value: true } }],
                headers_to_remove: ['x-remove-me'],
                response_headers_to_add: [{ header: { key: 'x-from-authz', value: '1' } }],
              },
            }),
          );
        },
      },
    }));
    app = await startRecordingUpstream();
    gw = await startPortico(
      simpleBootstrap({
        httpFilters: extAuthz(`grpc_service: { envoy_grpc: { cluster_name: authz }, timeout: 0.3s }
with_request_body: { max_request_bytes: 8, allow_partial_message: true }`),
        routes: `- match: { prefix: "/tenant" }
  route: { cluster: app }
  typed_per_filter_config:
    envoy.filters.http.ext_authz:
      "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
      check_settings: { context_extensions: { tenant: acme } }
- match: { prefix: "/" }
  route: { cluster: app }`,
        clusters: `${staticCluster('app', app.port)}${staticCluster('authz', port)}${H2}`,
      }),
    );
  });

  after(async () => {
    await gw.close();
    await app.close();
    server.forceShutdown();
  });

  it('sends a full CheckRequest and applies the OK response: set, append, remove, response headers', async () => {
    const res = await httpRequest(`${gw.url()}/tenant/items`, { headers: { 'x-remove-me': 'x', 'x-multi': 'one', 'x-request-id': 'req-1' } });
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-from-authz'], '1');
    const upstream = app.requests.at(-1)!.headers;
    assert.equal(upstream['x-authz'], 'ok');
    assert.equal(upstream['x-multi'], 'one,two');
    assert.equal(upstream['x-remove-me'], undefined);
    const attributes = seen.at(-1).attributes;
    assert.equal(attributes.source.address.socket_address.address, '127.0.0.1');
    assert.equal(attributes.destination.address.socket_address.port_value, gw.port());
    assert.equal(attributes.request.http.method, 'GET');
    assert.equal(attributes.request.http.path, '/tenant/items');
    assert.equal(attributes.request.http.host, `127.0.0.1:${gw.port()}`);
    assert.equal(attributes.request.http.headers['x-multi'], 'one');
    assert.equal(attributes.request.http.protocol, 'HTTP/1.1');
    assert.deepEqual(attributes.context_extensions, { tenant: 'acme' });
    assert.ok(attributes.request.time.seconds > 0);
  });

  it('sends at most max_request_bytes of the body with allow_partial_message, and the whole body goes upstream', async () => {
    const res = await httpRequest(`${gw.url()}/upload`, { method: 'PUT', body: 'abcdefghijklmnop' });
    assert.equal(res.status, 200);
    assert.equal(seen.at(-1).attributes.request.http.body, 'abcdefgh');
    assert.equal(app.requests.at(-1)!.body.toString(), 'abcdefghijklmnop');
  });

  it('a denial carries its HTTP status, headers and body', async () => {
    const res = await httpRequest(`${gw.url()}/deny`);
    assert.equal(res.status, 401);
    assert.equal(res.headers['x-denied'], 'yes');
    assert.equal(res.body, 'denied by grpc');
  });

  it('an answer that is not a CheckResponse, and a server that hangs, are errors: 403, counted', async () => {
    const before = stat(gw, 'http.ingress_http.ext_authz.error') ?? 0;
    assert.equal((await httpRequest(`${gw.url()}/garbage`)).status, 403);
    assert.equal((await httpRequest(`${gw.url()}/hang`)).status, 403);
    assert.equal(stat(gw, 'http.ingress_http.ext_authz.error'), before + 2);
  });
});

describe('ext_authz with its service down', () => {
  let app: RecordingUpstream;

  before(async () => {
    app = await startRecordingUpstream();
  });
  after(() => app.close());

  for (const allow of [true, false]) {
    it(`failure_mode_allow ${allow}: ${allow ? 'the request goes on, marked' : 'status_on_error'}`, async () => {
      const gw = await startPortico(
        simpleBootstrap({
          httpFilters: extAuthz(`grpc_service: { envoy_grpc: { cluster_name: authz } }
failure_mode_allow: ${allow}
failure_mode_allow_header_add: true
status_on_error: { code: ServiceUnavailable }`),
          routes: '- match: { prefix: "/" }\n  route: { cluster: app }',
          clusters: `${staticCluster('app', app.port)}${staticCluster('authz', await refusedPort())}${H2}`,
        }),
      );
      try {
        const res = await httpRequest(`${gw.url()}/x`);
        assert.equal(res.status, allow ? 200 : 503);
        if (allow) assert.equal(app.requests.at(-1)!.headers['x-envoy-auth-failure-mode-allowed'], 'true');
        assert.equal(stat(gw, 'http.ingress_http.ext_authz.failure_mode_allowed') ?? 0, allow ? 1 : 0);
      } finally {
        await gw.close();
      }
    });
  }
});
