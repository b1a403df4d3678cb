/**
 * The periodic resync on its own: changes whose NOTIFY never reaches a `portico start` process still get
 * served by it within the resync interval. Three processes on one real PostgreSQL: two re-read the store every
 * 200 ms, one only every 10 minutes (the control: it can only learn of a change through NOTIFY).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { type EchoServer, startEchoServer } from '../../src/echo/echo-server.js';
import { POSTGRES_MISSING, startPostgres, type TestPostgres } from '../support/postgres.js';
import { startProcess, type StartedProcess } from '../support/start-process.js';
import { httpRequest } from '../support/upstreams.js';

const RESYNC_S = '0.2';

async function servedVersion(p: StartedProcess): Promise<number> {
  return JSON.parse((await httpRequest(`${p.api}/api/v1/history?limit=1`)).body).served;
}

/** Polls until the process serves `version` and routes `path`; returns how long after `since` that was. */
async function convergence(p: StartedProcess, version: number, path: string, since = Date.now()): Promise<number> {
  for (;;) {
    if ((await servedVersion(p)) === version && (await httpRequest(`${p.proxy}${path}`)).status === 200) return Date.now() - since;
    if (Date.now() - since > 20_000) throw new Error(`version ${version} (${path}) not served within 20 s:\n${p.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('the periodic resync', () => {
  let postgres: TestPostgres | undefined;
  let echo: EchoServer;
  let url: string;
  let sql: pg.Client;
  let a: StartedProcess;
  let b: StartedProcess;
  let control: StartedProcess;
  const mapping = (name: string) => ({
    apiVersion: 'getambassador.io/v3alpha1',
    kind: 'Mapping',
    metadata: { name },
    spec: { prefix: `/${name}/`, service: `127.0.0.1:${echo.port}` },
  });

  before(async () => {
    postgres = await startPostgres();
    if (!postgres) return;
    echo = await startEchoServer({ name: 'resync-echo' });
    url = await postgres.newDatabase();
    // application_name tells the processes' connections apart in pg_stat_activity.
    const start = (name: string, resyncS: string) => startProcess(['--database-url', `${url}?application_name=${name}`, '--resync-interval-s', resyncS]);
    // Settled one by one, so that those that did start are stopped by `after` even when another failed.
    const started = await Promise.allSettled([start('replica-a', RESYNC_S), start('replica-b', RESYNC_S), start('control', '600')]);
    [a, b, control] = started.map((s) => (s.status === 'fulfilled' ? s.value : undefined)) as StartedProcess[];
    const failed = started.find((s) => s.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    sql = new pg.Client({ connectionString: url });
    await sql.connect();
  });
  after(async () => {
    await sql?.end();
    await Promise.all([a?.stop(), b?.stop(), control?.stop()]);
    await echo?.close();
    await postgres?.stop();
  });

  it('serves a version committed without NOTIFY, and only the resync finds it', async (t) => {
    if (!postgres) return t.skip(POSTGRES_MISSING);
    const put = await httpRequest(`${a.api}/api/v1/mappings/first`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(mapping('first')) });
    assert.equal(put.status, 201);
    for (const p of [a, b, control]) await convergence(p, 1, '/first/x');

    // Another writer commits version 2 by SQL, in the store's schema, and notifies nobody.
    const doc = mapping('by-sql');
    await sql.query('BEGIN');
    await sql.query('INSERT INTO portico_resources (kind, name, doc, version) VALUES ($1, $2, $3::json, 2)', ['Mapping', 'by-sql', JSON.stringify(doc)]);
    await sql.query("INSERT INTO portico_versions (version, source, summary, diff) VALUES (2, 'sql', 'create Mapping/by-sql', $1::json)", [
      JSON.stringify([{ op: 'create', kind: 'Mapping', name: 'by-sql', after: doc }]),
    ]);
    await sql.query('COMMIT');
    const committed = Date.now();

    for (const [name, p] of [['a', a], ['b', b]] as const) t.diagnostic(`replica ${name} served version 2 ${await convergence(p, 2, '/by-sql/x', committed)} ms after the commit`);
    assert.equal(await servedVersion(control), 1, 'without NOTIFY or a resync due, the control process cannot know of version 2');
    assert.equal((await httpRequest(`${control.proxy}/by-sql/x`)).status, 404);
  });

  it("catches up a process whose LISTEN connection was killed, with changes it was not notified of", async (t) => {
    if (!postgres) return t.skip(POSTGRES_MISSING);
    const killed = await sql.query(
      "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE application_name = 'replica-b' AND query LIKE 'LISTEN %'",
    );
    assert.deepEqual(killed.rows, [{ killed: true }]);
    // Written through a, with NOTIFY: the control process hears it (and catches up on version 2 with it);
    // b, without its listener, only re-reads the store.
    const put = await httpRequest(`${a.api}/api/v1/mappings/after-kill`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(mapping('after-kill')) });
    assert.equal(put.headers['x-portico-config-version'], '3');
    t.diagnostic(`replica b served version 3 ${await convergence(b, 3, '/after-kill/x')} ms after the write`);
    await convergence(control, 3, '/by-sql/x');
    assert.match(b.output(), /LISTEN portico_config: terminating connection/);
  });

  it('catches up when its LISTEN connection comes back, even with no resync due', async (t) => {
    if (!postgres) return t.skip(POSTGRES_MISSING);
    const killed = await sql.query(
      "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE application_name = 'control' AND query LIKE 'LISTEN %'",
    );
    assert.deepEqual(killed.rows, [{ killed: true }]);
    // Notified while the control process has no listener (it reconnects a second later): only the catch-up
    // that follows the reconnection can tell it, since its resync is 10 minutes away.
    const put = await httpRequest(`${a.api}/api/v1/mappings/missed`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(mapping('missed')) });
    assert.equal(put.headers['x-portico-config-version'], '4');
    t.diagnostic(`the control process served version 4 ${await convergence(control, 4, '/missed/x')} ms after the write`);
  });
});
