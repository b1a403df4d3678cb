/**
 * Malformed and hostile HTTP/1.1 input, sent as exact bytes: every attempt is refused without a 2xx, nothing
 * reaches the upstream, the gateway keeps serving other connections, and a slow client blocks nobody.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { simpleBootstrap, startPortico, staticCluster, type RunningPortico } from '../support/portico.js';
import { rawRequest, startRecordingUpstream, type RawRequestResult, type RecordingUpstream } from '../support/upstreams.js';

let upstream: RecordingUpstream;
let gw: RunningPortico;

before(async () => {
  upstream = await startRecordingUpstream();
  gw = await startPortico(
    simpleBootstrap({ routes: '- match: { prefix: "/" }\n  route: { cluster: backend }', clusters: staticCluster('backend', upstream.port) }),
  );
});
after(async () => {
  await gw.close();
  await upstream.close();
});

/** A normal request on a new connection still gets through (and is the only thing the upstream sees). */
async function assertStillServing(): Promise<void> {
  const before = upstream.requests.length;
  const res = await rawRequest(gw.port(), 'GET /healthy HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.equal(res.status, 200, `a normal request after the bad one: ${res.raw}`);
  assert.equal(res.body, 'ok');
  assert.equal(upstream.requests.length, before + 1);
  assert.equal(upstream.requests.at(-1)!.url, '/healthy');
}

/** Sends `bytes`; the upstream must see no request from it. */
async function refused(bytes: string | Buffer): Promise<RawRequestResult> {
  const before = upstream.requests.length;
  const res = await rawRequest(gw.port(), bytes, { timeoutMs: 5_000 });
  // Let anything that leaked through arrive before counting.
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.deepEqual(
    upstream.requests.slice(before).map((r) => `${r.method} ${r.url}`),
    [],
    'nothing reaches the upstream',
  );
  return res;
}

/**
 * A 400 (or 4xx `status`) followed by the connection being closed. Like Envoy's protocol-error reply, the body
 * is the status text, with `server` and `date`.
 */
function assertRejected(res: RawRequestResult, status = 400): void {
  assert.equal(res.status, status, `expected ${status}: ${JSON.stringify(res.raw)}`);
  assert.equal(res.body, status === 400 ? 'Bad Request' : 'Request Header Fields Too Large');
  assert.equal(res.headers['server'], 'envoy');
  assert.ok(res.headers['date'], 'a date header');
  assert.equal(res.responses.filter((r) => r.status !== undefined && r.status < 300 && r.status >= 200).length, 0, 'no 2xx');
  assert.ok(res.closed, 'the connection is closed after a protocol error');
}

/** Refused without any 2xx: a 400 or the connection closed. */
function assertNo2xx(res: RawRequestResult): void {
  const statuses = res.responses.map((r) => r.status);
  assert.ok(statuses.every((s) => s === undefined || s >= 400), `unexpected ${JSON.stringify(res.raw)}`);
  assert.ok(res.closed, 'the connection is closed');
}

describe('request smuggling', () => {
  it('refuses Content-Length together with Transfer-Encoding (CL.TE)', async () => {
    const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
    const body = `0\r\n\r\n${smuggled}`;
    assertRejected(
      await refused(`POST /cl-te HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n\r\n${body}`),
    );
    await assertStillServing();
  });

  it('refuses Transfer-Encoding before Content-Length (TE.CL)', async () => {
    const chunk = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
    const body = `${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`;
    assertRejected(await refused(`POST /te-cl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n${body}`));
    await assertStillServing();
  });

  it('refuses two different Content-Length values', async () => {
    assertRejected(await refused('POST /two-cl HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhelloX'));
    await assertStillServing();
  });

  it('refuses a malformed Content-Length', async () => {
    assertRejected(await refused('POST /bad-cl HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\nhello'));
    assertRejected(await refused('POST /neg-cl HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n'));
    await assertStillServing();
  });

  for (const encoding of ['chunked, identity', 'identity, chunked, identity', 'xchunked', 'chunked\x0bx']) {
    it(`refuses Transfer-Encoding: ${JSON.stringify(encoding)}`, async () => {
      const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
      assertRejected(
        await refused(`POST /te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ${encoding}\r\n\r\n0\r\n\r\n${smuggled}`),
      );
      await assertStillServing();
    });
  }

  it('refuses a space between Transfer-Encoding and its colon', async () => {
    assertRejected(await refused('POST /te-space HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n'));
    await assertStillServing();
  });
});

describe('chunk framing', () => {
  it('refuses an invalid chunk size', async () => {
    assertNo2xx(await refused('POST /bad-chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'));
    await assertStillServing();
  });

  it('refuses a chunk without its CRLF', async () => {
    assertNo2xx(await refused('POST /no-crlf HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n'));
    await assertStillServing();
  });

  it('refuses a chunk longer than its size', async () => {
    assertNo2xx(await refused('POST /long-chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n'));
    await assertStillServing();
  });
});

describe('header syntax', () => {
  it('refuses obs-fold (a header continued on the next line)', async () => {
    assertRejected(await refused('GET /fold HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n'));
    await assertStillServing();
  });

  it('refuses invalid characters in a header value', async () => {
    assertRejected(await refused('GET /ctl HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n'));
    assertRejected(await refused(Buffer.from('GET /nul HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n', 'latin1')));
    await assertStillServing();
  });

  it('refuses invalid characters in a header name', async () => {
    assertRejected(await refused('GET /name HTTP/1.1\r\nHost: x\r\nBad Name: x\r\n\r\n'));
    assertRejected(await refused('GET /name HTTP/1.1\r\nHost: x\r\nBad(Name): x\r\n\r\n'));
    assertRejected(await refused('GET /name HTTP/1.1\r\nHost: x\r\n: empty\r\n\r\n'));
    await assertStillServing();
  });

  it('answers oversized headers with 431', async () => {
    assertRejected(await refused(`GET /big HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(70 * 1024)}\r\n\r\n`), 431);
    let many = 'GET /many HTTP/1.1\r\nHost: x\r\n';
    for (let i = 0; i < 2000; i++) many += `x-h${i}: ${'v'.repeat(30)}\r\n`;
    assertRejected(await refused(`${many}\r\n`), 431);
    await assertStillServing();
  });
});

describe('request line', () => {
  for (const [name, line] of [
    ['garbage', 'HELLO\r\n\r\n'],
    ['binary', '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n'],
    ['a bad method', 'G(T / HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['a bad version', 'GET / HTTP/9.Z\r\nHost: x\r\n\r\n'],
    ['a space in the target', 'GET /a b HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['a control character in the target', 'GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n'],
  ] as const) {
    it(`refuses ${name}`, async () => {
      assertRejected(await refused(Buffer.from(line, 'latin1')));
      await assertStillServing();
    });
  }
});

describe('slow clients', () => {
  it('a client sending one byte every 100 ms does not block other clients', async () => {
    const request = 'GET /slow HTTP/1.1\r\nHost: x\r\nX-Padding: slow-loris-but-honest\r\n\r\n';
    const socket = connect({ port: gw.port(), host: '127.0.0.1' });
    socket.on('error', () => {});
    let response = '';
    socket.on('data', (chunk: Buffer) => (response += chunk.toString('latin1')));
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    let sent = 0;
    let othersDone = false;
    // The last byte is held back until the other clients are done, so their requests overlap the slow head.
    const writer = setInterval(() => {
      if (sent < request.length - 1 || (othersDone && sent < request.length)) socket.write(request[sent++]!);
      else if (sent === request.length) clearInterval(writer);
    }, 100);
    try {
      await new Promise((resolve) => setTimeout(resolve, 500));
      for (let i = 0; i < 5; i++) {
        const res = await rawRequest(gw.port(), `GET /fast-${i} HTTP/1.1\r\nHost: x\r\n\r\n`);
        assert.equal(res.status, 200);
      }
      assert.equal(response, '', 'the slow client has no answer yet');
      othersDone = true;
      // And the slow client is served too once its request is complete.
      const deadline = Date.now() + 30_000;
      while (!response.includes('\r\n\r\nok') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      assert.match(response, /^HTTP\/1\.1 200 /);
      assert.ok(upstream.requests.some((r) => r.url === '/slow'));
    } finally {
      clearInterval(writer);
      socket.destroy();
    }
    await assertStillServing();
  });
});
