/**
 * `envoy.filters.http.grpc_web` end to end: a gRPC-Web client written against the protocol (binary and base64
 * text, over HTTP/1.1) → Portico → a real `@grpc/grpc-js` server over HTTP/2. Messages and trailers come back in
 * the body as gRPC-Web frames; a CORS preflight is answered by the CORS filter before it. `envoy.filters.http.grpc_stats`
 * after it counts the calls per method as gRPC.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { type RunningPortico, simpleBootstrap, startPortico, stat, staticCluster } from '../support/portico.js';
import { startGrpcServer } from '../support/grpc.js';
import { httpRequest } from '../support/upstreams.js';

/** A gRPC-Web message frame. */
function frame(message: Buffer, flags = 0): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flags;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

/** The frames of a gRPC-Web response body: messages, and the trailers frame parsed into a map. */
function parseFrames(body: Buffer): { messages: string[]; trailers: Record<string, string> } {
  const messages: string[] = [];
  const trailers: Record<string, string> = {};
  for (let at = 0; at < body.length; ) {
    const flags = body[at]!;
    const length = body.readUInt32BE(at + 1);
    const payload = body.subarray(at + 5, at + 5 + length);
    at += 5 + length;
    if ((flags & 0x80) === 0) {
      messages.push(payload.toString());
      continue;
    }
    for (const line of payload.toString('latin1').split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) trailers[line.slice(0, colon)] = line.slice(colon + 1).trim();
    }
  }
  return { messages, trailers };
}

describe('gRPC-Web filter', () => {
  let server: grpc.Server;
  let gw: RunningPortico;

  before(async () => {
    let port: number;
    ({ server, port } = await startGrpcServer({
      Echo: {
        path: '/test.Echo/Echo',
        handler: (call, callback) => {
          const trailers = new grpc.Metadata();
          trailers.set('x-served-by', 'grpc-js');
          callback(null, Buffer.concat([Buffer.from('echo:'), call.request]), trailers);
        },
      },
      Fail: { path: '/test.Echo/Fail', handler: (_call, callback) => callback({ code: grpc.status.NOT_FOUND, details: 'no such thing' }) },
    }));
    gw = await startPortico(
      simpleBootstrap({
        httpFilters: `- name: envoy.filters.http.cors
  typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors }
- name: envoy.filters.http.grpc_web
  typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb }
- name: envoy.filters.http.grpc_stats
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig
    individual_method_stats_allowlist: { services: [{ name: test.Echo, method_names: [Echo] }] }`,
        routes: `- match: { prefix: "/test.Echo/" }
  route: { cluster: grpc }
  typed_per_filter_config:
    envoy.filters.http.cors:
      "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy
      allow_origin_string_match: [{ exact: "https://app.example" }]
      allow_methods: POST
      allow_headers: content-type,x-grpc-web,x-user-agent
      expose_headers: grpc-status,grpc-message`,
        clusters: `${staticCluster('grpc', port)}
  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      explicit_http_config: { http2_protocol_options: {} }`,
      }),
    );
  });

  after(async () => {
    await gw.close();
    server.forceShutdown();
  });

  const call = (path: string, body: Buffer | string, contentType: string) =>
    httpRequest(`${gw.url()}${path}`, { method: 'POST', headers: { 'content-type': contentType, 'x-grpc-web': '1', origin: 'https://app.example' }, body });

  it('binary: the message, then the trailers as a frame in the body', async () => {
    const res = await call('/test.Echo/Echo', frame(Buffer.from('hello')), 'application/grpc-web+proto');
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/grpc-web+proto');
    assert.equal(res.headers['access-control-allow-origin'], 'https://app.example');
    const { messages, trailers } = parseFrames(Buffer.from(res.body, 'latin1'));
    assert.deepEqual(messages, ['echo:hello']);
    assert.equal(trailers['grpc-status'], '0');
    assert.equal(trailers['x-served-by'], 'grpc-js');
  });

  it('text: base64 both ways', async () => {
    const res = await call('/test.Echo/Echo', frame(Buffer.from('text client')).toString('base64'), 'application/grpc-web-text');
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/grpc-web-text+proto');
    const { messages, trailers } = parseFrames(Buffer.from(res.body, 'base64'));
    assert.deepEqual(messages, ['echo:text client']);
    assert.equal(trailers['grpc-status'], '0');
  });

  it('an error status reaches the browser client', async () => {
    const res = await call('/test.Echo/Fail', frame(Buffer.from('x')), 'application/grpc-web+proto');
    assert.equal(res.status, 200);
    // A trailers-only gRPC answer carries its status in the headers.
    const status = res.headers['grpc-status'] ?? parseFrames(Buffer.from(res.body, 'latin1')).trailers['grpc-status'];
    assert.equal(status, String(grpc.status.NOT_FOUND));
  });

  it('the CORS preflight of a browser gRPC-Web call is answered before the filter', async () => {
    const res = await httpRequest(`${gw.url()}/test.Echo/Echo`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-grpc-web' },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers['access-control-allow-methods'], 'POST');
  });

  it('grpc_stats counts calls and messages per allowed method, the others together', async () => {
    const method = (name: string): number => stat(gw, `cluster.grpc.grpc.test.Echo.Echo.${name}`) ?? 0;
    const before = { success: method('success'), total: method('total'), requests: method('request_message_count') };
    await call('/test.Echo/Echo', Buffer.concat([frame(Buffer.from('a'))]), 'application/grpc-web+proto');
    assert.equal(method('success') - before.success, 1);
    assert.equal(method('total') - before.total, 1);
    assert.equal(method('request_message_count') - before.requests, 1);
    assert.ok(method('response_message_count') >= 1);
    const failures = stat(gw, 'cluster.grpc.grpc.failure') ?? 0;
    await call('/test.Echo/Fail', frame(Buffer.from('x')), 'application/grpc-web+proto');
    assert.equal((stat(gw, 'cluster.grpc.grpc.failure') ?? 0) - failures, 1, 'Fail is not in the allowlist: counted under grpc.');
  });
});
