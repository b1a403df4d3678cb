/**
 * Regexes meet request data in linear time: `(a+)+$`, valid RE2, takes a backtracking engine 2^40 steps on 40
 * `a`s and a `!` (hours), which would stall the worker and every request queued behind it. The gateway is a
 * `portico run` process of its own with one worker, so a stall could not also stop this test's clock: each
 * request must be answered, and the next one after it too, within the client's timeout.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startEchoServer, type EchoServer } from '../../src/echo/echo-server.js';
import { simpleBootstrap, staticCluster } from '../support/portico.js';
import { freePort } from '../support/ports.js';
import { startRun, type LiveProcess } from '../support/start-process.js';
import { httpRequest } from '../support/upstreams.js';

const EVIL = 'a'.repeat(40) + '!';

describe('regexes run in linear time against request data', { timeout: 120_000 }, () => {
  let echo: EchoServer;
  let gateway: LiveProcess;
  let url: string;

  before(async () => {
    echo = await startEchoServer({ name: 'regex-echo' });
    const port = await freePort();
    const routes = `
- match: { safe_regex: { regex: "/(a+)+$" } }
  direct_response: { status: 200, body: { inline_string: path-regex } }
- match: { prefix: /h, headers: [{ name: x-h, string_match: { safe_regex: { regex: "(a+)+$" } } }] }
  direct_response: { status: 200, body: { inline_string: header-regex } }
- match: { prefix: /q, query_parameters: [{ name: q, string_match: { safe_regex: { regex: "(a+)+$" } } }] }
  direct_response: { status: 200, body: { inline_string: query-regex } }
- match: { prefix: /rw/ }
  route: { cluster: echo, regex_rewrite: { pattern: { regex: "(a+)+$" }, substitution: "x" } }
- match: { prefix: / }
  direct_response: { status: 200, body: { inline_string: fallback } }`;
    const file = join(mkdtempSync(join(tmpdir(), 'portico-regex-')), 'bootstrap.yaml');
    writeFileSync(file, simpleBootstrap({ routes, clusters: staticCluster('echo', echo.port), listenerPort: port }));
    gateway = await startRun(file, ['--concurrency', '1']);
    url = `http://127.0.0.1:${port}`;
  });

  after(async () => {
    assert.equal(await gateway?.stop(), 0);
    await echo?.close();
  });

  /** The body, after checking the request was answered 200 well within the timeout a stalled worker would hit. */
  async function get(path: string, headers: Record<string, string> = {}): Promise<string> {
    const res = await httpRequest(url + path, { headers, timeoutMs: 30_000 });
    assert.equal(res.status, 200, res.body);
    return res.body;
  }

  it('a route safe_regex', async () => {
    assert.equal(await get(`/${EVIL}`), 'fallback');
    assert.equal(await get(`/${EVIL.slice(0, -1)}`), 'path-regex');
  });

  it('a header matcher', async () => {
    assert.equal(await get('/h', { 'x-h': EVIL }), 'fallback');
    assert.equal(await get('/h', { 'x-h': EVIL.slice(0, -1) }), 'header-regex');
  });

  it('a query parameter matcher', async () => {
    assert.equal(await get(`/q?q=${EVIL}`), 'fallback');
    assert.equal(await get(`/q?q=${EVIL.slice(0, -1)}`), 'query-regex');
  });

  it('a regex_rewrite, which searches the whole path', async () => {
    assert.equal(JSON.parse(await get(`/rw/${EVIL}`)).path, `/rw/${EVIL}`);
    assert.equal(JSON.parse(await get(`/rw/${EVIL.slice(0, -1)}`)).path, '/rw/x');
  });
});
