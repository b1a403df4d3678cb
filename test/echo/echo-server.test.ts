import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { echoBytesPattern, runEchoCommand, startEchoServer, type EchoServer } from '../../src/echo/echo-server.js';
import {
  httpRequest,
  rawRequest,
  refusedPort,
  startHelloService,
  startMisbehavingUpstream,
  startRecordingUpstream,
  type MisbehavingUpstream,
} from '../support/upstreams.js';

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

/** Fetches with undici and returns the body as a Buffer. */
async function fetchBuffer(url: string, method = 'GET'): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  const dispatcher = new Agent({ connections: 1 });
  try {
    const res = await request(url, { dispatcher, method });
    const body = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, headers: res.headers, body };
  } finally {
    await dispatcher.destroy();
  }
}

describe('echo server', () => {
  let echo: EchoServer;
  let base: string;

  before(async () => {
    echo = await startEchoServer({ name: 'echo-test' });
    base = `http://127.0.0.1:${echo.port}`;
  });
  after(async () => {
    await echo.close();
  });

  it('listens on 127.0.0.1 with the given name', () => {
    assert.equal(echo.host, '127.0.0.1');
    assert.equal(echo.name, 'echo-test');
    assert.ok(echo.port > 0);
    assert.equal(echo.server.keepAliveTimeout, 65_000);
    assert.equal(echo.server.headersTimeout, 66_000);
  });

  it('echoes method, path, query, headers and an empty body', async () => {
    const res = await httpRequest(`${base}/some/path?a=1&b=2&a=3&c`, { headers: { 'X-Test': 'hello' } });
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.equal(res.headers['x-echo-name'], 'echo-test');
    const echoed = JSON.parse(res.body);
    assert.equal(echoed.name, 'echo-test');
    assert.equal(echoed.method, 'GET');
    assert.equal(echoed.path, '/some/path');
    assert.equal(echoed.url, '/some/path?a=1&b=2&a=3&c');
    assert.deepEqual(echoed.query, { a: ['1', '3'], b: '2', c: '' });
    assert.equal(echoed.headers['x-test'], 'hello');
    assert.ok(echoed.rawHeaders.some(([n, v]: [string, string]) => n === 'X-Test' && v === 'hello'));
    assert.deepEqual(echoed.body, { size: 0, sha256: sha256('') });
    assert.equal(echoed.protocol, 'HTTP/1.1');
    assert.equal(echoed.remoteAddress, '127.0.0.1');
    assert.equal(typeof echoed.remotePort, 'number');
    assert.equal(echoed.trailers, undefined);
  });

  it('hashes a 5 MiB streamed upload without buffering it', async () => {
    const chunk = Buffer.alloc(64 * 1024);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 7) & 0xff;
    const chunks = 80; // 5 MiB
    const expected = createHash('sha256');
    for (let i = 0; i < chunks; i++) expected.update(chunk);
    const body = Readable.from(
      (function* () {
        for (let i = 0; i < chunks; i++) yield chunk;
      })(),
    );
    const res = await httpRequest(`${base}/upload`, { method: 'POST', body });
    assert.equal(res.status, 200);
    const echoed = JSON.parse(res.body);
    assert.equal(echoed.method, 'POST');
    assert.deepEqual(echoed.body, { size: 5 * 1024 * 1024, sha256: expected.digest('hex') });
  });

  it('reports request trailers', async () => {
    const res = await rawRequest(
      echo.port,
      'POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n' +
        '5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n',
    );
    assert.equal(res.status, 200);
    const echoed = JSON.parse(res.body);
    assert.deepEqual(echoed.body, { size: 5, sha256: sha256('hello') });
    assert.deepEqual(echoed.trailers, { 'x-checksum': 'abc' });
  });

  it('answers HEAD with the headers and no body', async () => {
    const res = await rawRequest(echo.port, 'HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.equal(res.headers['x-echo-name'], 'echo-test');
    assert.ok(Number(res.headers['content-length']) > 0);
    assert.equal(res.body, '');
    assert.ok(res.raw.endsWith('\r\n\r\n'));
  });

  it('keeps connections alive (two pipelined requests on one socket)', async () => {
    const res = await rawRequest(echo.port, 'GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /status/201 HTTP/1.1\r\nHost: x\r\n\r\n', {
      responses: 2,
    });
    assert.deepEqual(
      res.responses.map((r) => r.status),
      [200, 201],
    );
    assert.equal(JSON.parse(res.body).path, '/a');
    assert.equal(res.responses[1]!.body, 'status 201');
    assert.equal(res.closed, false);
  });

  it('/status/CODE answers that status', async () => {
    for (const code of [200, 201, 404, 418, 503, 599]) {
      const res = await httpRequest(`${base}/status/${code}`);
      assert.equal(res.status, code);
      assert.equal(res.body, `status ${code}`);
      assert.equal(res.headers['x-echo-name'], 'echo-test');
    }
    for (const code of [204, 304]) {
      const res = await rawRequest(echo.port, `GET /status/${code} HTTP/1.1\r\nHost: x\r\n\r\n`);
      assert.equal(res.status, code);
      assert.equal(res.body, '');
      assert.equal(res.headers['content-length'], undefined);
      assert.equal(res.headers['x-echo-name'], 'echo-test');
    }
    const head = await rawRequest(echo.port, 'HEAD /status/500 HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(head.status, 500);
    assert.equal(head.body, '');
    const switching = await rawRequest(echo.port, 'GET /status/101 HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(switching.status, 101);
  });

  it('/status rejects malformed and out-of-range codes with 400', async () => {
    for (const bad of ['abc', '', '99', '100', '102', '600', '2OO', '-200', '200/x', '1e3']) {
      const res = await httpRequest(`${base}/status/${bad}`);
      assert.equal(res.status, 400, `/status/${bad}`);
      assert.match(res.body, /invalid status code/);
    }
  });

  it('/delay/MS waits at least MS then echoes', async () => {
    const started = performance.now();
    const res = await httpRequest(`${base}/delay/150?x=1`);
    const elapsed = performance.now() - started;
    assert.equal(res.status, 200);
    assert.ok(elapsed >= 150, `elapsed ${elapsed}`);
    const echoed = JSON.parse(res.body);
    assert.equal(echoed.path, '/delay/150');
    assert.deepEqual(echoed.query, { x: '1' });
    assert.equal((await httpRequest(`${base}/delay/soon`)).status, 400);
  });

  it('/delay survives the client going away', async () => {
    const res = await rawRequest(echo.port, 'GET /delay/2000 HTTP/1.1\r\nHost: x\r\n\r\n', { timeoutMs: 50 });
    assert.equal(res.raw, '');
    assert.equal(res.closed, false);
    assert.equal((await httpRequest(`${base}/status/200`)).status, 200);
  });

  it('/bytes/N streams N deterministic bytes with content-length', async () => {
    const n = 200_000; // not a multiple of the 64 KiB chunk
    const local = Buffer.alloc(n);
    for (let i = 0; i < n; i++) local[i] = i % 256;
    assert.ok(echoBytesPattern(n).equals(local));
    const res = await fetchBuffer(`${base}/bytes/${n}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/octet-stream');
    assert.equal(res.headers['content-length'], String(n));
    assert.equal(res.body.length, n);
    assert.equal(sha256(res.body), sha256(local));

    const empty = await fetchBuffer(`${base}/bytes/0`);
    assert.equal(empty.headers['content-length'], '0');
    assert.equal(empty.body.length, 0);
  });

  it('/bytes/N streams large bodies honouring backpressure', async () => {
    const n = 32 * 1024 * 1024 + 3;
    const dispatcher = new Agent({ connections: 1 });
    try {
      const res = await request(`${base}/bytes/${n}`, { dispatcher });
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length;
        hash.update(chunk as Buffer);
      }
      assert.equal(size, n);
      assert.equal(hash.digest('hex'), sha256(echoBytesPattern(n)));
    } finally {
      await dispatcher.destroy();
    }
  });

  it('/bytes/N?chunked=1 omits content-length', async () => {
    const res = await rawRequest(echo.port, 'GET /bytes/70000?chunked=1 HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-length'], undefined);
    assert.equal(res.headers['transfer-encoding'], 'chunked');
    const viaUndici = await fetchBuffer(`${base}/bytes/70000?chunked=1`);
    assert.equal(viaUndici.headers['content-length'], undefined);
    assert.equal(sha256(viaUndici.body), sha256(echoBytesPattern(70_000)));
  });

  it('/bytes with HEAD sends content-length and no body', async () => {
    const res = await rawRequest(echo.port, 'HEAD /bytes/12345 HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-length'], '12345');
    assert.equal(res.body, '');
  });

  it('/bytes rejects malformed counts with 400', async () => {
    for (const bad of ['-1', 'ten', '1.5', '']) {
      const res = await httpRequest(`${base}/bytes/${bad}`);
      assert.equal(res.status, 400, `/bytes/${bad}`);
      assert.equal(res.headers['x-echo-name'], 'echo-test');
    }
  });

  it('/bytes stops generating when the client goes away', async () => {
    const res = await rawRequest(echo.port, 'GET /bytes/1000000000 HTTP/1.1\r\nHost: x\r\n\r\n', { timeoutMs: 100 });
    assert.equal(res.status, 200);
    assert.equal(res.closed, false);
    assert.ok(res.rawBuffer.length < 1_000_000_000);
    assert.equal((await httpRequest(`${base}/status/200`)).status, 200);
  });

  it('/stream/N writes N JSON lines, chunked', async () => {
    const res = await rawRequest(echo.port, 'GET /stream/25 HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(res.status, 200);
    assert.equal(res.headers['transfer-encoding'], 'chunked');
    const lines = res.body.trimEnd().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.length, 25);
    lines.forEach((line, i) => assert.deepEqual(line, { id: i, name: 'echo-test', path: '/stream/25' }));
    const many = await httpRequest(`${base}/stream/5000`);
    assert.equal(many.body.split('\n').filter(Boolean).length, 5000);
    assert.equal((await httpRequest(`${base}/stream/x`)).status, 400);
  });

  it('/headers returns the request headers', async () => {
    const res = await httpRequest(`${base}/headers`, { headers: { 'x-one': '1', 'x-two': '2' } });
    assert.equal(res.status, 200);
    const echoed = JSON.parse(res.body);
    assert.deepEqual(Object.keys(echoed), ['headers']);
    assert.equal(echoed.headers['x-one'], '1');
    assert.equal(echoed.headers['x-two'], '2');
  });

  it('/trailers ends a chunked response with x-echo-trailer', async () => {
    const res = await httpRequest(`${base}/trailers`);
    assert.equal(res.status, 200);
    assert.equal(res.headers['trailer'], 'x-echo-trailer');
    assert.equal(res.headers['transfer-encoding'], 'chunked');
    assert.equal(res.trailers['x-echo-trailer'], 'yes');
    assert.equal(JSON.parse(res.body).path, '/trailers');
    const raw = await rawRequest(echo.port, 'GET /trailers HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.deepEqual(raw.responses[0]!.trailers, { 'x-echo-trailer': 'yes' });
  });

  it('?response_header=name:value adds response headers on any path', async () => {
    const res = await httpRequest(
      `${base}/status/202?response_header=x-a:1&response_header=X-A:%202&response_header=cache-control:no-store`,
    );
    assert.equal(res.status, 202);
    assert.deepEqual(res.headers['x-a'], ['1', '2']);
    assert.equal(res.headers['cache-control'], 'no-store');
    const echoed = await httpRequest(`${base}/x?response_header=content-type:text/x-test`);
    assert.equal(echoed.headers['content-type'], 'text/x-test');
    assert.equal(JSON.parse(echoed.body).path, '/x');
    assert.equal((await httpRequest(`${base}/x?response_header=novalue`)).status, 400);
    assert.equal((await httpRequest(`${base}/x?response_header=bad%20name:v`)).status, 400);
    assert.equal((await httpRequest(`${base}/x?response_header=content-length:5`)).status, 400);
  });

  it('close() returns promptly with idle keep-alive connections open', async () => {
    const other = await startEchoServer({ name: 'closing' });
    const socket = connect(other.port, '127.0.0.1');
    await new Promise<void>((resolve) => {
      socket.on('data', () => resolve());
      socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    });
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    const started = performance.now();
    await other.close();
    await closed;
    assert.ok(performance.now() - started < 1000);
    await other.close(); // idempotent
  });
});

describe('runEchoCommand', () => {
  it('rejects unknown flags, naming them', async () => {
    await assert.rejects(runEchoCommand(['--bogus']), (err: Error) => err instanceof Error && err.message.includes('--bogus'));
    await assert.rejects(runEchoCommand(['--port', 'abc']), /--port/);
  });

  it('prints its address and exits cleanly on SIGTERM', async () => {
    const moduleUrl = new URL('../../src/echo/echo-server.js', import.meta.url).href;
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const m = await import(${JSON.stringify(moduleUrl)}); await m.runEchoCommand(['--port', '0', '--name', 'cli-echo']);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0]!);
      });
      child.on('exit', () => reject(new Error(`exited early: ${out}`)));
    });
    const match = /^portico echo "cli-echo" listening on http:\/\/127\.0\.0\.1:(\d+)$/.exec(line);
    assert.ok(match, line);
    const res = await httpRequest(`http://127.0.0.1:${match[1]}/hi`);
    assert.equal(JSON.parse(res.body).name, 'cli-echo');
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  });
});

describe('test upstreams', () => {
  it('hello service answers /<anything>/<n> and records requests', async () => {
    const hello = await startHelloService(2);
    const named = await startHelloService(3, { name: 'svc3' });
    try {
      const ok = await httpRequest(`http://127.0.0.1:${hello.port}/service/2?x=1`);
      assert.equal(ok.status, 200);
      assert.equal(ok.headers['content-type'], 'text/plain');
      assert.equal(ok.body, 'Hello from behind Envoy (service 2)!\n');
      assert.equal((await httpRequest(`http://127.0.0.1:${hello.port}/service/1`)).status, 404);
      assert.deepEqual(
        hello.requests.map((r) => r.url),
        ['/service/2?x=1', '/service/1'],
      );
      const res = await httpRequest(`http://127.0.0.1:${named.port}/service/3`);
      assert.equal(res.body, 'Hello from behind Envoy (service 3)! hostname svc3 resolved 127.0.0.1\n');
    } finally {
      await hello.close();
      await named.close();
    }
  });

  it('recording upstream records requests after their bodies', async () => {
    const plain = await startRecordingUpstream();
    const custom = await startRecordingUpstream((_req, res, record) => {
      res.writeHead(201, { 'x-size': String(record.bodySize) });
      res.end('made');
    });
    try {
      const res = await httpRequest(`http://127.0.0.1:${plain.port}/p?q=1`, { method: 'PUT', body: 'abcdef', headers: { 'x-h': 'v' } });
      assert.equal(res.status, 200);
      assert.equal(res.body, 'ok');
      const rec = plain.requests[0]!;
      assert.equal(rec.method, 'PUT');
      assert.equal(rec.url, '/p?q=1');
      assert.equal(rec.headers['x-h'], 'v');
      assert.ok(rec.rawHeaders.includes('x-h'));
      assert.equal(rec.bodySize, 6);
      assert.equal(rec.body.toString(), 'abcdef');
      const made = await httpRequest(`http://127.0.0.1:${custom.port}/`, { method: 'POST', body: 'xyz' });
      assert.equal(made.status, 201);
      assert.equal(made.headers['x-size'], '3');
      assert.equal(made.body, 'made');
    } finally {
      await plain.close();
      await custom.close();
    }
  });

  it('refusedPort() has nothing listening', async () => {
    const port = await refusedPort();
    await assert.rejects(rawRequest(port, 'GET / HTTP/1.1\r\n\r\n'), { code: 'ECONNREFUSED' });
  });

  describe('misbehaving upstreams', () => {
    const get = 'GET /x HTTP/1.1\r\nHost: upstream\r\n\r\n';
    const withUpstream = async (
      mode: Parameters<typeof startMisbehavingUpstream>[0],
      fn: (u: MisbehavingUpstream, url: string) => Promise<void>,
    ): Promise<void> => {
      const upstream = await startMisbehavingUpstream(mode);
      try {
        await fn(upstream, `http://127.0.0.1:${upstream.port}/x`);
      } finally {
        await upstream.close();
      }
    };
    const errorCode = async (promise: Promise<unknown>): Promise<string> => {
      try {
        await promise;
      } catch (err) {
        // undici's HTTPParserError carries its llhttp code only in the message; report its name instead.
        const e = err as NodeJS.ErrnoException;
        return String(e.code ?? e.name);
      }
      assert.fail('expected the request to fail');
    };

    it('reset: the client sees a connection reset', () =>
      withUpstream('reset', async (u, url) => {
        const raw = await rawRequest(u.port, get);
        assert.equal(raw.raw, '');
        assert.equal(raw.closed, true);
        assert.equal(raw.error, 'ECONNRESET');
        assert.match(await errorCode(httpRequest(url)), /^(ECONNRESET|UND_ERR_SOCKET)$/);
        assert.equal(u.connections, 2);
        assert.equal(u.requests[0], get);
      }));

    it('close: the connection ends without a response', () =>
      withUpstream('close', async (u, url) => {
        const raw = await rawRequest(u.port, get);
        assert.equal(raw.raw, '');
        assert.equal(raw.closed, true);
        assert.equal(raw.error, undefined);
        assert.equal(await errorCode(httpRequest(url)), 'UND_ERR_SOCKET');
        assert.equal(u.connections, 2);
      }));

    it('hang: nothing ever comes back', () =>
      withUpstream('hang', async (u, url) => {
        const raw = await rawRequest(u.port, get, { timeoutMs: 150 });
        assert.equal(raw.raw, '');
        assert.equal(raw.closed, false);
        assert.equal(await errorCode(httpRequest(url, { timeoutMs: 150 })), 'UND_ERR_HEADERS_TIMEOUT');
        assert.equal(u.requests.length, 2);
      }));

    it('garbage: the client fails to parse the response', () =>
      withUpstream('garbage', async (u, url) => {
        const raw = await rawRequest(u.port, get);
        assert.equal(raw.raw, 'this is not http\r\n\r\n');
        assert.equal(raw.status, undefined);
        assert.equal(raw.closed, true);
        assert.match(await errorCode(httpRequest(url)), /^(HPE_\w+|HTTPParserError)$/);
      }));

    it('headers-then-reset: 200 headers, 10 of 1000 bytes, then the connection dies', () =>
      withUpstream('headers-then-reset', async (u, url) => {
        const raw = await rawRequest(u.port, get);
        assert.equal(raw.status, 200);
        assert.equal(raw.headers['content-length'], '1000');
        assert.equal(raw.body, '0123456789');
        assert.equal(raw.responses[0]!.complete, false);
        assert.equal(raw.closed, true);
        const dispatcher = new Agent({ connections: 1 });
        try {
          const res = await request(url, { dispatcher });
          assert.equal(res.statusCode, 200);
          await assert.rejects(res.body.text());
        } finally {
          await dispatcher.destroy();
        }
        assert.equal(u.connections, 2);
      }));

    it('slow-headers: only the status line arrives', () =>
      withUpstream('slow-headers', async (u, url) => {
        const raw = await rawRequest(u.port, get, { timeoutMs: 150 });
        assert.equal(raw.raw, 'HTTP/1.1 200 OK\r\n');
        assert.equal(raw.status, 200);
        assert.equal(raw.closed, false);
        assert.equal(await errorCode(httpRequest(url, { timeoutMs: 150 })), 'UND_ERR_HEADERS_TIMEOUT');
        assert.equal(u.connections, 2);
      }));
  });
});
