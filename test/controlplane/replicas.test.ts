import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type EchoServer, startEchoServer } from '../../src/echo/echo-server.js';
import { POSTGRES_MISSING, startPostgres, type TestPostgres } from '../support/postgres.js';
import { startProcess, type StartedProcess } from '../support/start-process.js';
import { httpRequest } from '../support/upstreams.js';

/** Polls until `path` answers 200 through `proxy`; returns how long that took. */
async function servedWithin(proxy: string, path: string, limitMs: number): Promise<number> {
  const start = Date.now();
  for (;;) {
    if ((await httpRequest(`${proxy}${path}`)).status === 200) return Date.now() - start;
    if (Date.now() - start > limitMs) throw new Error(`${path} not served through ${proxy} within ${limitMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('two portico start processes on one PostgreSQL', () => {
  let pg: TestPostgres | undefined;
  let echo: EchoServer;
  let a: StartedProcess;
  let b: StartedProcess;
  before(async () => {
    pg = await startPostgres();
    if (!pg) return;
    echo = await startEchoServer({ name: 'replica-echo' });
    const url = await pg.newDatabase();
    // A long resync interval: what is measured here is NOTIFY.
    [a, b] = await Promise.all([startProcess(['--database-url', url, '--resync-interval-s', '600']), startProcess(['--database-url', url, '--resync-interval-s', '600'])]);
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await echo?.close();
    await pg?.stop();
  });

  it('serve a mapping written through either within one second', async (t) => {
    if (!pg) return t.skip(POSTGRES_MISSING);
    for (const [writer, reader, name] of [[a, b, 'via-a'], [b, a, 'via-b']] as const) {
      const post = await httpRequest(`${writer.api}/ambassador/mapping/${name}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prefix: `/${name}/`, service: `127.0.0.1:${echo.port}` }),
      });
      assert.equal(JSON.parse(post.body).ok, true);
      const ms = await servedWithin(reader.proxy, `/${name}/x`, 1000);
      t.diagnostic(`${name}: served by the other process ${ms} ms after the POST answered`);
    }
    const list = JSON.parse((await httpRequest(`${a.api}/api/v1/history`)).body);
    assert.equal(list.version, 2);
    assert.equal(list.served, 2);
  });
});
