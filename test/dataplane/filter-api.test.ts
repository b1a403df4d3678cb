/**
 * The HTTP filter API end to end through real sockets, with filters written for the test and composed into the
 * registry as a program composes its own: a filter that throws, one that pauses on a timer and resumes (with
 * the body held by a buffering or a watermark stop), one that answers locally mid-body, one that rewrites
 * streamed bodies both ways, trailers both ways, and per-route `disabled`.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { request as httpRequestRaw } from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { Bootstrap } from '../../src/config/load.js';
import { DataPlane } from '../../src/dataplane/data-plane.js';
import {
  type DecoderFilterCallbacks,
  type EncoderFilterCallbacks,
  FilterDataStatus,
  FilterHeadersStatus,
  type HttpFilterFactory,
  HttpFilterRegistry,
  type ResponseHead,
  type StreamFilter,
} from '../../src/dataplane/http/filter.js';
import type { RequestHead } from '../../src/dataplane/stream-info.js';
import { ROUTER_FILTER_FACTORY } from '../../src/extensions/filters/http/router/router-filter.js';
import { EXTENSIONS } from '../../src/extensions/registry.js';
import { createLogger } from '../../src/util/logger.js';
import { httpListener, type Json, parseBootstrap } from '../support/portico.js';
import { httpRequest, type RecordingUpstream, startRecordingUpstream } from '../support/upstreams.js';

type Callbacks = DecoderFilterCallbacks & EncoderFilterCallbacks;

/** A test filter factory whose config is `{ kind }`, given as the filter's typed_config value. */
function factory(configType: string, create: (callbacks: Callbacks, config: Json) => StreamFilter): HttpFilterFactory {
  return {
    name: configType,
    configType,
    routeConfigType: `${configType}PerRoute`,
    createFilterConfig: (config) => ({ createFilter: (callbacks) => create(callbacks, config as Json), release: () => {} }),
    compileRouteConfig: (config) => config,
  };
}

/** Throws from decodeHeaders, or from encodeHeaders when the request has `x-throw: encode`. */
const THROWS = factory('test.Throws', (callbacks) => ({
  decodeHeaders(head: RequestHead): FilterHeadersStatus {
    if (head.headers['x-throw'] === 'decode') throw new Error('decodeHeaders failed on purpose');
    return FilterHeadersStatus.Continue;
  },
  encodeHeaders(): FilterHeadersStatus {
    if (callbacks.head.headers['x-throw'] === 'encode') throw new Error('encodeHeaders failed on purpose');
    return FilterHeadersStatus.Continue;
  },
}));

/** Stops the request for `x-pause-ms` ms (StopAllIterationAndBuffer or, with `x-watermark`, AndWatermark). */
const PAUSES = factory('test.Pauses', (callbacks) => {
  let timer: NodeJS.Timeout | undefined;
  return {
    decodeHeaders(head: RequestHead): FilterHeadersStatus {
      const ms = Number(head.headers['x-pause-ms'] ?? 0);
      if (ms === 0) return FilterHeadersStatus.Continue;
      timer = setTimeout(() => {
        head.headers['x-paused'] = String(ms);
        callbacks.continueDecoding();
      }, ms);
      return head.headers['x-watermark'] !== undefined ? FilterHeadersStatus.StopAllIterationAndWatermark : FilterHeadersStatus.StopAllIterationAndBuffer;
    },
    onDestroy(): void {
      clearTimeout(timer);
    },
  };
});

/** Answers 403 once `x-reply-after` body bytes have arrived. */
const REPLIES_MID_BODY = factory('test.RepliesMidBody', (callbacks) => {
  let seen = 0;
  return {
    decodeData(chunk: Buffer): FilterDataStatus {
      seen += chunk.length;
      const limit = Number(callbacks.head.headers['x-reply-after'] ?? Infinity);
      if (seen >= limit) {
        callbacks.sendLocalReply(403, `refused after ${seen} bytes`, 0, 'test_mid_body');
        return FilterDataStatus.StopIterationNoBuffer;
      }
      return FilterDataStatus.Continue;
    },
  };
});

/** Upper-cases request and response bodies chunk by chunk, and adds a trailer to the request's end. */
const UPPERCASES = factory('test.Uppercases', () => ({
  // The body's length stays: chunk by chunk rewriting keeps streaming.
  decodeData(chunk: Buffer): FilterDataStatus {
    upper(chunk);
    return FilterDataStatus.Continue;
  },
  encodeHeaders(response: ResponseHead): FilterHeadersStatus {
    response.headers['x-uppercased'] = 'true';
    return FilterHeadersStatus.Continue;
  },
  encodeData(chunk: Buffer): FilterDataStatus {
    upper(chunk);
    return FilterDataStatus.Continue;
  },
}));

/** Buffers the whole response body and replaces it with its length. */
const SUMMARIZES = factory('test.Summarizes', (callbacks) => ({
  encodeHeaders(response: ResponseHead, endStream: boolean): FilterHeadersStatus {
    if (endStream) return FilterHeadersStatus.Continue;
    delete response.headers['content-length'];
    return FilterHeadersStatus.StopIteration;
  },
  encodeData(chunk: Buffer, endStream: boolean): FilterDataStatus {
    if (!endStream) return FilterDataStatus.StopIterationAndBuffer;
    // The router ends a response with an empty chunk: what passes on is the buffer, replaced.
    callbacks.setEncodingBuffer(Buffer.from(`${(callbacks.encodingBuffer()?.length ?? 0) + chunk.length} bytes`));
    return FilterDataStatus.Continue;
  },
  encodeTrailers(): never {
    throw new Error('no trailers expected');
  },
}));

function upper(chunk: Buffer): void {
  for (let i = 0; i < chunk.length; i++) {
    const c = chunk[i]!;
    if (c >= 97 && c <= 122) chunk[i] = c - 32;
  }
}

const REGISTRY = new HttpFilterRegistry([THROWS, PAUSES, REPLIES_MID_BODY, UPPERCASES, SUMMARIZES, ROUTER_FILTER_FACTORY]);

/**
 * A bootstrap with the given test filters before the router. The configuration checks know only Portico's own
 * extensions, so the test filters replace placeholders after the bootstrap was parsed.
 */
function bootstrap(filters: string[], upstreamPort: number, routes: Json[], listener: Json = {}): Bootstrap {
  const placeholder = { name: 'placeholder', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors' } };
  const json = {
    static_resources: {
      listeners: [{ ...httpListener({ virtual_hosts: [{ name: 'all', domains: ['*'], routes }] }, { http_protocol_options: { enable_trailers: true } }, filters.map(() => placeholder)), ...listener }],
      clusters: [
        {
          name: 'backend',
          connect_timeout: '1s',
          http_protocol_options: { enable_trailers: true },
          load_assignment: { cluster_name: 'backend', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: upstreamPort } } } }] }] },
        },
      ],
    },
  };
  const parsed = parseBootstrap(JSON.stringify(json));
  const hcm = parsed.static_resources!.listeners![0]!.filter_chains![0]!.filters![0]!.typed_config!.value as { http_filters: { name: string; typed_config: unknown }[] };
  filters.forEach((type, i) => (hcm.http_filters[i] = { name: type, typed_config: { type_url: `type.googleapis.com/${type}`, value: {} } }));
  return parsed;
}

async function start(filters: string[], upstreamPort: number, routes: Json[] = [{ match: { prefix: '/' }, route: { cluster: 'backend' } }], listener: Json = {}): Promise<{ plane: DataPlane; url: string; port: number }> {
  const plane = await DataPlane.start(bootstrap(filters, upstreamPort, routes, listener), createLogger('off'), { ...EXTENSIONS, httpFilters: REGISTRY });
  const port = plane.listeners[0]!.boundAddress()!.port;
  return { plane, url: `http://127.0.0.1:${port}`, port };
}

function counter(plane: DataPlane, name: string): number {
  return plane.stats.snapshot().counters.find(([n]) => n === name)?.[1] ?? 0;
}

describe('HTTP filter API', () => {
  let upstream: RecordingUpstream;

  before(async () => {
    upstream = await startRecordingUpstream((req, res, record) => {
      if (req.url === '/big') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        for (let i = 0; i < 48; i++) res.write('abcdefghijklmnop'.repeat(1024));
        res.end();
        return;
      }
      if (req.url === '/trailers') {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
        res.write('streamed ');
        res.addTrailers({ 'x-checksum': `len=${record.bodySize}` });
        res.end('body');
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'x-received': String(record.bodySize), 'x-paused-seen': String(req.headers['x-paused'] ?? '') });
      res.end(`echo:${record.body.subarray(0, 64).toString()}`);
    });
  });

  after(async () => {
    await upstream.close();
  });

  it('a filter that throws gets the request a 500 and a counted bug; the gateway serves the next request', async () => {
    const gw = await start(['test.Throws'], upstream.port);
    try {
      const decode = await httpRequest(`${gw.url}/x`, { headers: { 'x-throw': 'decode' } });
      assert.equal(decode.status, 500);
      const encode = await httpRequest(`${gw.url}/x`, { headers: { 'x-throw': 'encode' } });
      assert.equal(encode.status, 500);
      assert.equal(counter(gw.plane, 'http.ingress_http.rq_internal_error'), 2);
      const fine = await httpRequest(`${gw.url}/x`);
      assert.equal(fine.status, 200);
      assert.equal(fine.body, 'echo:');
    } finally {
      await gw.plane.close(0);
    }
  });

  it('a filter that pauses on a timer resumes the request, its body held meanwhile', async () => {
    const gw = await start(['test.Pauses'], upstream.port);
    try {
      const body = 'x'.repeat(100_000);
      const started = performance.now();
      const res = await httpRequest(`${gw.url}/paused`, { method: 'POST', body, headers: { 'x-pause-ms': '150' } });
      assert.ok(performance.now() - started >= 140, 'the request waited for the filter');
      assert.equal(res.status, 200);
      assert.equal(res.headers['x-received'], '100000');
      assert.equal(res.headers['x-paused-seen'], '150', 'the filter changed the headers before resuming');
    } finally {
      await gw.plane.close(0);
    }
  });

  it('a buffering stop over the buffer limit gets 413; a watermark stop pauses the client instead', async () => {
    const gw = await start(['test.Pauses'], upstream.port, undefined, { per_connection_buffer_limit_bytes: 16384 });
    try {
      const body = Buffer.alloc(2 * 1024 * 1024, 'y');
      const buffered = await httpRequest(`${gw.url}/buffered`, { method: 'POST', body, headers: { 'x-pause-ms': '200' } });
      assert.equal(buffered.status, 413);
      assert.equal(buffered.body, 'Payload Too Large');
      const before = upstream.requests.length;
      const watermarked = await httpRequest(`${gw.url}/watermarked`, { method: 'POST', body, headers: { 'x-pause-ms': '200', 'x-watermark': '1' } });
      assert.equal(watermarked.status, 200);
      assert.equal(watermarked.headers['x-received'], String(body.length));
      assert.equal(upstream.requests.length, before + 1);
    } finally {
      await gw.plane.close(0);
    }
  });

  it('while a watermark stop holds the request, the gateway stops reading the client', async () => {
    const gw = await start(['test.Pauses'], upstream.port, undefined, { per_connection_buffer_limit_bytes: 16384 });
    try {
      const socket = connect(gw.port, '127.0.0.1');
      await new Promise((resolve) => socket.once('connect', resolve));
      const total = 64 * 1024 * 1024;
      socket.write(`POST /held HTTP/1.1\r\nhost: x\r\ncontent-length: ${total}\r\nx-pause-ms: 600\r\nx-watermark: 1\r\n\r\n`);
      const response = new Promise<string>((resolve) => {
        let text = '';
        socket.on('data', (d: Buffer) => {
          text += d.toString('latin1');
          if (text.includes('\r\n\r\n')) resolve(text);
        });
      });
      const chunk = Buffer.alloc(64 * 1024, 'z');
      const pump = (async (): Promise<void> => {
        for (let written = 0; written < total; written += chunk.length) {
          if (!socket.write(chunk)) await new Promise((resolve) => socket.once('drain', resolve));
        }
      })();
      await new Promise((resolve) => setTimeout(resolve, 400));
      // What left the client while the filter held the request: kernel buffers and a few of the gateway's
      // 16 KiB, far from the 64 MiB a gateway that kept reading would have taken by now.
      assert.ok(socket.bytesWritten < 24 * 1024 * 1024, `${socket.bytesWritten} bytes went out while paused`);
      await pump;
      const head = await response;
      assert.match(head, /^HTTP\/1\.1 200 /);
      assert.match(head, new RegExp(`x-received: ${total}`));
      socket.destroy();
    } finally {
      await gw.plane.close(0);
    }
  });

  it('a filter answers locally mid-body; the connection stays usable for the next request', async () => {
    const gw = await start(['test.RepliesMidBody'], upstream.port);
    try {
      const before = upstream.requests.length;
      const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpRequestRaw(`${gw.url}/upload`, { method: 'POST', headers: { 'x-reply-after': '1000', 'transfer-encoding': 'chunked' } }, (r) => {
          let body = '';
          r.on('data', (d: Buffer) => (body += d.toString()));
          r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.write(Buffer.alloc(600, 'a'));
        setTimeout(() => {
          req.write(Buffer.alloc(600, 'b'));
          setTimeout(() => req.end(Buffer.alloc(600, 'c')), 30);
        }, 30);
      });
      assert.equal(res.status, 403);
      assert.equal(res.body, 'refused after 1200 bytes');
      // The router had begun forwarding the body; the upstream request was reset, never completed.
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(upstream.requests.length, before);
      const next = await httpRequest(`${gw.url}/after`, { method: 'POST', body: 'small', headers: { 'x-reply-after': '1000' } });
      assert.equal(next.status, 200);
      assert.equal(next.body, 'echo:small');
    } finally {
      await gw.plane.close(0);
    }
  });

  it('a filter rewrites streamed bodies both ways, chunk by chunk', async () => {
    const gw = await start(['test.Uppercases'], upstream.port);
    try {
      const res = await httpRequest(`${gw.url}/echo`, { method: 'POST', body: 'hello streamed world' });
      assert.equal(res.status, 200);
      assert.equal(res.headers['x-uppercased'], 'true');
      assert.equal(res.body, 'ECHO:HELLO STREAMED WORLD');
      assert.equal(upstream.requests.at(-1)!.body.toString(), 'HELLO STREAMED WORLD');
      const big = await httpRequest(`${gw.url}/big`);
      assert.equal(big.body.length, 48 * 16 * 1024);
      assert.equal(big.body, 'ABCDEFGHIJKLMNOP'.repeat(48 * 1024));
    } finally {
      await gw.plane.close(0);
    }
  });

  it('an encoder filter that buffers the whole response replaces it', async () => {
    const gw = await start(['test.Summarizes'], upstream.port);
    try {
      const big = await httpRequest(`${gw.url}/big`);
      assert.equal(big.status, 200);
      assert.equal(big.body, `${48 * 16 * 1024} bytes`);
    } finally {
      await gw.plane.close(0);
    }
  });

  it('trailers pass both ways through HTTP/1.1 chunked bodies when enable_trailers is set', async () => {
    const gw = await start(['test.Uppercases'], upstream.port);
    try {
      const res = await new Promise<{ body: string; trailers: Record<string, string | undefined> }>((resolve, reject) => {
        const req = httpRequestRaw(`${gw.url}/trailers`, { method: 'POST', headers: { 'transfer-encoding': 'chunked', te: 'trailers' } }, (r) => {
          let body = '';
          r.on('data', (d: Buffer) => (body += d.toString()));
          r.on('end', () => resolve({ body, trailers: r.trailers }));
        });
        req.on('error', reject);
        req.write('request body');
        req.addTrailers({ 'x-request-trailer': 'sent' });
        req.end();
      });
      assert.equal(res.body, 'STREAMED BODY');
      assert.equal(res.trailers['x-checksum'], 'len=12');
      assert.equal(upstream.requests.at(-1)!.trailers['x-request-trailer'], 'sent');
    } finally {
      await gw.plane.close(0);
    }
  });

  it('a route turns a filter off with FilterConfig disabled', async () => {
    const routes = [
      {
        match: { prefix: '/plain' },
        route: { cluster: 'backend' },
        typed_per_filter_config: { 'test.Uppercases': { '@type': 'type.googleapis.com/envoy.config.route.v3.FilterConfig', disabled: true } },
      },
      { match: { prefix: '/' }, route: { cluster: 'backend' } },
    ];
    const gw = await start(['test.Uppercases'], upstream.port, routes);
    try {
      assert.equal((await httpRequest(`${gw.url}/plain`, { method: 'POST', body: 'low' })).body, 'echo:low');
      assert.equal((await httpRequest(`${gw.url}/other`, { method: 'POST', body: 'low' })).body, 'ECHO:LOW');
    } finally {
      await gw.plane.close(0);
    }
  });
});
