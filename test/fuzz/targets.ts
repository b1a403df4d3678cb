/**
 * Fuzz targets (fast-check): the suite runs each briefly (fuzz.test.ts) and `npm run fuzz` at length (run.ts).
 *
 * - `http1`: requests through a real socket to a Portico listener whose upstream records every byte it gets.
 *   Each case is a well-formed request or one with a single defect drawn from the request-smuggling catalogue
 *   (CL+TE, TE variants, obs-fold, bare LF, NUL and control bytes, huge or negative lengths, bad chunk sizes,
 *   oversized headers), possibly behind a valid pipelined request. The oracle is built with the case: a
 *   well-formed request is forwarded and answered 200; a malformed head is answered 400/413/431/501 or closed and
 *   never reaches the upstream (426 for a version other than 1.x, as Envoy); and the gateway answers the next request.
 * - `config`: random JSON grafted into a valid bootstrap, decoded, checked and compiled: a list of problems or
 *   a configuration, never an exception.
 * - `regex`: random RE2 patterns and inputs: an `invalid_regex` problem or a matcher, never an exception.
 */
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import type { ConfigError } from '../../src/config/errors.js';
import { checkBootstrap } from '../../src/config/load.js';
import { compileBootstrap } from '../../src/dataplane/data-plane.js';
import { compileRe2 } from '../../src/dataplane/matching/regex.js';
import { EXTENSIONS } from '../../src/extensions/registry.js';
import { createLogger } from '../../src/util/logger.js';
import { httpListener, simpleBootstrap, startPortico, staticCluster, type RunningPortico } from '../support/portico.js';
import { rawRequest } from '../support/upstreams.js';

export interface FuzzTarget {
  name: string;
  /** Starts what the property needs; the property runs `runs` cases; stop() ends it. */
  start(): Promise<{ property: fc.IAsyncPropertyWithHooks<any> | fc.IAsyncProperty<any> | fc.IProperty<any>; stop(): Promise<void> }>;
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP/1.1 through the proxy

const TOKEN = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/);
const VALUE = fc.stringMatching(/^[ -~]{0,40}$/).map((v) => v.trim());
const PATH = fc.stringMatching(/^[A-Za-z0-9._~-]{0,20}$/).map((p) => `/f/${p}`);

interface Case {
  bytes: Buffer;
  /** Requests in `bytes` that must reach the upstream, in order. */
  forwarded: number;
  /** The last request is malformed in its head: answered 4xx/501 or closed, never forwarded. */
  malformedHead: boolean;
  /** The last request's body framing is broken: answered 400 or closed (its head may have been forwarded). */
  malformedBody: boolean;
}

interface Valid {
  text: string;
}

const validRequest: fc.Arbitrary<Valid> = fc
  .record({
    method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'),
    path: PATH,
    headers: fc.array(fc.tuple(TOKEN.filter((n) => !/^(host|content-length|transfer-encoding|connection|upgrade|te|expect|keep-alive|proxy-connection)$/i.test(n)), VALUE), { maxLength: 6 }),
    body: fc.option(fc.stringMatching(/^[a-z0-9]{0,64}$/), { nil: undefined }),
    chunked: fc.boolean(),
  })
  .map(({ method, path, headers, body, chunked }) => {
    const head = [`${method} ${path} HTTP/1.1`, 'host: fuzz', ...headers.map(([n, v]) => `${n}: ${v}`)];
    if (body === undefined) return { text: `${head.join('\r\n')}\r\n\r\n` };
    if (chunked) {
      const chunks = body.length === 0 ? '' : `${body.length.toString(16)}\r\n${body}\r\n`;
      return { text: `${head.join('\r\n')}\r\ntransfer-encoding: chunked\r\n\r\n${chunks}0\r\n\r\n` };
    }
    return { text: `${head.join('\r\n')}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}` };
  });

/** Defects of the head: each makes the request one that must never be forwarded. */
const HEAD_DEFECTS: fc.Arbitrary<string>[] = [
  // Both framings: a classic desync.
  fc.constant('POST /f/x HTTP/1.1\r\nhost: fuzz\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n'),
  // A transfer coding other than chunked, or chunked not last.
  fc.constantFrom('gzip', 'chunked, gzip', 'xchunked', 'chunked\x0b', 'identity').map((te) => `POST /f/x HTTP/1.1\r\nhost: fuzz\r\ntransfer-encoding: ${te}\r\n\r\n0\r\n\r\n`),
  // obs-fold.
  VALUE.map((v) => `GET /f/x HTTP/1.1\r\nhost: fuzz\r\nx-folded: a\r\n ${v}b\r\n\r\n`),
  // Bare LF ending a header line.
  fc.constant('GET /f/x HTTP/1.1\r\nhost: fuzz\nx-a: b\r\n\r\n'),
  // NUL and other control bytes in a header value, in the method, in the path.
  fc.constantFrom('\x00', '\x01', '\x7f', '\x1b').chain((c) =>
    fc.constantFrom(`GET /f/x HTTP/1.1\r\nhost: fuzz\r\nx-a: a${c}b\r\n\r\n`, `G${c}T /f/x HTTP/1.1\r\nhost: fuzz\r\n\r\n`, `GET /f/x${c}y HTTP/1.1\r\nhost: fuzz\r\n\r\n`),
  ),
  // Lengths that are not one non-negative number.
  fc.constantFrom('-1', '99999999999999999999999', '1e3', '0x10', '5, 6', '+5', '').map((cl) => `POST /f/x HTTP/1.1\r\nhost: fuzz\r\ncontent-length: ${cl}\r\n\r\nhello`),
  // Two different lengths.
  fc.constant('POST /f/x HTTP/1.1\r\nhost: fuzz\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab'),
  // A space before the colon, a header name with a separator, no host.
  fc.constantFrom('GET /f/x HTTP/1.1\r\nhost : fuzz\r\n\r\n', 'GET /f/x HTTP/1.1\r\nhost: fuzz\r\nx(a): b\r\n\r\n', 'GET /f/x HTTP/1.1\r\n\r\n'),
  // Headers over the 60 KiB limit.
  fc.integer({ min: 61, max: 100 }).map((kib) => `GET /f/x HTTP/1.1\r\nhost: fuzz\r\nx-big: ${'a'.repeat(kib * 1024)}\r\n\r\n`),
  // Not HTTP/1.x at all.
  fc.constantFrom('GET /f/x HTTP/2.0\r\nhost: fuzz\r\n\r\n', 'GET /f/x HTTP/1.1 extra\r\nhost: fuzz\r\n\r\n', 'GET\r\n\r\n'),
];

/** Defects of a chunked body after a valid head. */
const BODY_DEFECTS: fc.Arbitrary<string>[] = [
  fc.constantFrom('zz', '-1', '1 2', 'ffffffffffffffffff', '').map((size) => `POST /f/x HTTP/1.1\r\nhost: fuzz\r\ntransfer-encoding: chunked\r\n\r\n${size}\r\nabc\r\n0\r\n\r\n`),
  fc.constant('POST /f/x HTTP/1.1\r\nhost: fuzz\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n'),
];

const httpCase: fc.Arbitrary<Case> = fc.oneof(
  validRequest.map((v) => ({ bytes: Buffer.from(v.text, 'latin1'), forwarded: 1, malformedHead: false, malformedBody: false })),
  fc.tuple(fc.option(validRequest, { nil: undefined }), fc.oneof(...HEAD_DEFECTS)).map(([first, bad]) => ({
    bytes: Buffer.from(`${first?.text ?? ''}${bad}`, 'latin1'),
    forwarded: first === undefined ? 0 : 1,
    malformedHead: true,
    malformedBody: false,
  })),
  fc.oneof(...BODY_DEFECTS).map((bad) => ({ bytes: Buffer.from(bad, 'latin1'), forwarded: 0, malformedHead: false, malformedBody: true })),
);

/** An upstream that counts the requests it gets and answers each, once its body is read, with an empty 200. */
async function countingUpstream(): Promise<{ port: number; heads: () => number; server: Server }> {
  let heads = 0;
  const server = createHttpServer((req, res) => {
    heads++;
    req.resume();
    req.on('end', () => res.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, heads: () => heads, server };
}

export const HTTP1: FuzzTarget = {
  name: 'http1',
  async start() {
    const upstream = await countingUpstream();
    const gw: RunningPortico = await startPortico(
      simpleBootstrap({ routes: '- match: { prefix: "/" }\n  route: { cluster: up }', clusters: staticCluster('up', upstream.port) }),
    );
    const property = fc.asyncProperty(httpCase, async (c) => {
      const before = upstream.heads();
      const result = await rawRequest(gw.port(), c.bytes, { responses: c.forwarded + (c.malformedHead || c.malformedBody ? 1 : 0), timeoutMs: 3000, closeGraceMs: 0 });
      const statuses = result.responses.map((r) => r.status);
      if (c.malformedHead) {
        const last = statuses[c.forwarded];
        assert.ok(last === undefined ? result.closed : [400, 413, 426, 431, 501].includes(last), `malformed head answered ${last}: ${JSON.stringify(c.bytes.toString('latin1').slice(0, 200))}`);
        assert.equal(upstream.heads() - before, c.forwarded, `a malformed request reached the upstream: ${JSON.stringify(c.bytes.toString('latin1').slice(0, 200))}`);
      } else if (c.malformedBody) {
        const last = statuses[0];
        assert.ok(last === undefined ? result.closed : last === 400 || last === 503, `malformed body answered ${last}: ${JSON.stringify(c.bytes.toString('latin1'))}`);
      } else {
        assert.deepEqual(statuses, [200], `a valid request answered ${statuses}: ${JSON.stringify(c.bytes.toString('latin1'))}`);
        assert.equal(upstream.heads() - before, 1);
      }
      // The gateway lives and serves the next request.
      const next = await rawRequest(gw.port(), 'GET /f/next HTTP/1.1\r\nhost: fuzz\r\n\r\n', { timeoutMs: 3000, closeGraceMs: 0 });
      assert.equal(next.responses[0]?.status, 200);
    });
    return {
      property,
      async stop() {
        await gw.close();
        upstream.server.closeAllConnections();
        await new Promise((resolve) => upstream.server.close(resolve));
      },
    };
  },
};

// ---------------------------------------------------------------------------------------------------------------
// Configuration decoding, checking and compiling

const BASE: Record<string, unknown> = {
  static_resources: {
    listeners: [{ name: 'l', ...httpListener({ virtual_hosts: [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'c', timeout: '1s' } }] }] }) }],
    clusters: [{ name: 'c', type: 'STATIC', load_assignment: { cluster_name: 'c', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: 1 } } } }] }] } }],
  },
};

/** Every path (as keys) to an object or array inside `value`. */
function paths(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (value === null || typeof value !== 'object') return [];
  const here = [prefix];
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v] as const) : Object.entries(value);
  return here.concat(...entries.map(([k, v]) => paths(v, [...prefix, k])));
}

const BASE_PATHS = paths(BASE);
const KEYS = fc.constantFrom('name', 'type', 'port_value', 'timeout', 'prefix', 'cluster', 'routes', 'typed_config', '@type', 'regex', 'safe_regex', 'headers', 'x');

const mutatedConfig = fc
  .array(fc.tuple(fc.constantFrom(...BASE_PATHS), fc.option(KEYS, { nil: undefined }), fc.jsonValue({ maxDepth: 3 })), { minLength: 1, maxLength: 4 })
  .map((mutations) => {
    const doc = structuredClone(BASE);
    for (const [path, key, value] of mutations) {
      let target: any = doc;
      for (const k of path) target = target?.[k];
      if (target === null || typeof target !== 'object') continue;
      if (key === undefined) {
        const keys = Object.keys(target);
        if (keys.length > 0) target[keys[keys.length - 1]!] = value;
      } else {
        target[key] = value;
      }
    }
    return doc;
  });

export const CONFIG: FuzzTarget = {
  name: 'config',
  async start() {
    const log = createLogger('off');
    const property = fc.property(fc.oneof(mutatedConfig, fc.jsonValue({ maxDepth: 4 })), (doc) => {
      const { bootstrap, errors } = checkBootstrap(doc);
      if (errors.length === 0) compileBootstrap(bootstrap, log, errors, EXTENSIONS);
      for (const e of errors as ConfigError[]) assert.ok(typeof e.message === 'string' && typeof e.path === 'string' && typeof e.code === 'string');
    });
    return { property, stop: async () => undefined };
  },
};

// ---------------------------------------------------------------------------------------------------------------
// RE2 patterns

const REGEX_PIECES = fc.constantFrom('a', 'b', '.', '*', '+', '?', '|', '(', ')', '[', ']', '^', '$', '\\d', '\\w', '{2,3}', '(?i)', '\\p{L}', '[[:alpha:]]', '(?:', '\\', '-', 'é');

export const REGEX: FuzzTarget = {
  name: 'regex',
  async start() {
    const property = fc.property(fc.array(REGEX_PIECES, { maxLength: 12 }).map((p) => p.join('')), fc.string({ maxLength: 64 }), (pattern, input) => {
      const errors: ConfigError[] = [];
      const re = compileRe2(pattern, 'regex', errors);
      if (re === undefined) {
        assert.ok(errors.length > 0 && errors.every((e) => e.code === 'invalid_regex'));
        return;
      }
      re.matcher(input).find();
      re.matches(input);
    });
    return { property, stop: async () => undefined };
  },
};

export const TARGETS: Record<string, FuzzTarget> = { http1: HTTP1, config: CONFIG, regex: REGEX };
