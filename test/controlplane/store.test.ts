import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseResource, type Resource } from '../../src/controlplane/resources.js';
import { type Engine, openPglite, openPostgres } from '../../src/controlplane/store/engine.js';
import { ConfigStore, etag, NOTIFY_CHANNEL } from '../../src/controlplane/store/store.js';
import { buildConfig } from '../../src/controlplane/translate.js';
import { createLogger } from '../../src/util/logger.js';
import { POSTGRES_MISSING, startPostgres, type TestPostgres } from '../support/postgres.js';

const log = createLogger('off');
const validate = (resources: Resource[]) => buildConfig(resources, { listenerAddress: '127.0.0.1', listenerPort: 0 }, log);

function mapping(name: string, spec: Record<string, unknown>): Resource {
  const r = parseResource({ kind: 'Mapping', metadata: { name }, spec }, []);
  assert.ok(r, `invalid test mapping ${name}`);
  return r;
}

/** The same behaviour on both engines. */
type Opened = { engine: () => Promise<Engine>; cleanup: () => Promise<void> };

/** The same behaviour on both engines; `open` resolves to undefined when the engine is not available. */
function storeSuite(engineName: string, open: () => Promise<Opened | undefined>) {
  describe(`store on ${engineName}`, () => {
    let env: Opened | undefined;
    let store: ConfigStore;
    before(async () => {
      env = await open();
      if (env) store = await ConfigStore.open(await env.engine());
    });
    after(async () => {
      await store?.close();
      await env?.cleanup();
    });

    it('makes every change a version with time, source and diff', async (t) => {
      if (!env) return t.skip(POSTGRES_MISSING);
      const r = await store.change([{ op: 'put', resource: mapping('user', { prefix: '/user/', service: 'usersvc' }) }], 'test', validate);
      assert.ok(r.ok);
      assert.equal(r.version, 1);
      assert.ok(r.validated?.bootstrap.static_resources?.clusters?.length === 1);
      const [v] = await store.history(10);
      assert.equal(v!.version, 1);
      assert.equal(v!.source, 'test');
      assert.equal(v!.summary, 'create Mapping/user');
      assert.deepEqual(v!.diff.map((d) => [d.op, d.kind, d.name, d.before]), [['create', 'Mapping', 'user', undefined]]);
      assert.ok(Date.now() - Date.parse(v!.created_at) < 60_000);
    });

    it('writes nothing when validation fails, and nothing for a put equal to what is stored', async (t) => {
      if (!env) return t.skip(POSTGRES_MISSING);
      const bad = await store.change(
        [
          { op: 'put', resource: mapping('a', { prefix: '/a/', service: 'a', weight: 60 }) },
          { op: 'put', resource: mapping('b', { prefix: '/a/', service: 'b', weight: 60 }) },
        ],
        'test',
        validate,
      );
      assert.ok(!bad.ok);
      assert.equal(bad.status, 400);
      assert.deepEqual(bad.errors.map((e) => [e.resource, e.path]), [['Mapping/a', 'spec.weight'], ['Mapping/b', 'spec.weight']]);
      const same = await store.change([{ op: 'put', resource: mapping('user', { prefix: '/user/', service: 'usersvc' }) }], 'test', validate);
      assert.ok(same.ok);
      assert.equal(same.version, 1);
      assert.equal((await store.history(10)).length, 1);
      assert.equal(store.snapshot.resources.size, 1);
    });

    it('checks If-Match against the ETag', async (t) => {
      if (!env) return t.skip(POSTGRES_MISSING);
      const stale = await store.change([{ op: 'put', resource: mapping('user', { prefix: '/u/', service: 'usersvc' }), ifMatch: '"99"' }], 'test', validate);
      assert.ok(!stale.ok);
      assert.equal(stale.status, 412);
      const fresh = await store.change([{ op: 'put', resource: mapping('user', { prefix: '/u/', service: 'usersvc' }), ifMatch: etag(1) }], 'test', validate);
      assert.ok(fresh.ok);
      assert.equal(fresh.version, 2);
      const missing = await store.change([{ op: 'delete', kind: 'Mapping', name: 'nope', ifMatch: '*' }], 'test', validate);
      assert.ok(!missing.ok);
    });

    it('rolls back with a new version equal to the old one', async (t) => {
      if (!env) return t.skip(POSTGRES_MISSING);
      const del = await store.change([{ op: 'delete', kind: 'Mapping', name: 'user' }], 'test', validate);
      assert.ok(del.ok && del.version === 3);
      const changes = await store.rollbackChanges(1);
      assert.ok(changes);
      const r = await store.change(changes, 'rollback to 1', validate);
      assert.ok(r.ok);
      assert.equal(r.version, 4);
      assert.deepEqual(store.snapshot.resources.get('Mapping/user')?.resource.spec, { prefix: '/user/', service: 'usersvc' });
      assert.equal(await store.rollbackChanges(99), undefined);
      const empty = await store.change((await store.rollbackChanges(0))!, 'rollback to 0', validate);
      assert.ok(empty.ok && empty.version === 5);
      assert.equal(store.snapshot.resources.size, 0);
      assert.equal((await store.version(5))?.summary, 'delete Mapping/user');
    });

    it('applies a batch of 500 in one version and restores everything when reopened', async (t) => {
      if (!env) return t.skip(POSTGRES_MISSING);
      const batch = Array.from({ length: 500 }, (_, i) => ({ op: 'put' as const, resource: mapping(`m${i}`, { prefix: `/m${i}/`, service: `svc${i % 7}` }) }));
      const r = await store.change(batch, 'batch', validate);
      assert.ok(r.ok);
      assert.equal(r.diff.length, 500);
      await store.close();
      store = await ConfigStore.open(await env.engine());
      assert.equal(store.snapshot.version, 6);
      assert.equal(store.snapshot.resources.size, 500);
      assert.equal(store.snapshot.resources.get('Mapping/m42')?.version, 6);
      assert.equal((await store.history(2)).map((v) => v.version).join(), '6,5');
    });
  });
}

storeSuite('PGlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-store-'));
  return { engine: () => openPglite(dir), cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
});

describe('PGlite data directory', () => {
  it('refuses a second process-local open while the first holds it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portico-lock-'));
    const first = await openPglite(dir);
    try {
      // The lock names the holding process; our own pid counts as held only by a stale file, so fake another.
      const { writeFileSync } = await import('node:fs');
      writeFileSync(join(dir, 'portico.lock'), `${process.ppid}\n`);
      await assert.rejects(openPglite(dir), /in use by process/);
    } finally {
      await first.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// One server for this file; suites that need it wait for it.
const server: Promise<TestPostgres | undefined> = startPostgres();
after(async () => (await server)?.stop());

storeSuite('PostgreSQL', async () => {
  const pg = await server;
  if (!pg) return undefined;
  const url = await pg.newDatabase();
  return { engine: () => openPostgres(url, () => undefined), cleanup: async () => undefined };
});

describe('store replicas on PostgreSQL', () => {
  let pg: TestPostgres | undefined;
  before(async () => {
    pg = await server;
  });

  it('lets two stores on one database see each other through NOTIFY', async (t) => {
    if (!pg) return t.skip(POSTGRES_MISSING);
    const url = await pg.newDatabase();
    const a = await ConfigStore.open(await openPostgres(url, () => undefined));
    const b = await ConfigStore.open(await openPostgres(url, () => undefined));
    try {
      let onNotify!: (payload: string) => void;
      const notified = new Promise<string>((resolve) => (onNotify = resolve));
      // listen() resolves once LISTEN is in effect: a notification sent after it cannot be missed.
      await b.engine.listen(NOTIFY_CHANNEL, (payload) => onNotify(payload));
      const r = await a.change([{ op: 'put', resource: mapping('shared', { prefix: '/s/', service: 's' }) }], 'a', validate);
      assert.ok(r.ok);
      assert.equal(await notified, '1');
      const snapshot = await b.refresh();
      assert.equal(snapshot?.resources.get('Mapping/shared')?.version, 1);
      // Concurrent writers are serialised: both versions land, in some order.
      const [x, y] = await Promise.all([
        a.change([{ op: 'put', resource: mapping('from-a', { prefix: '/fa/', service: 's' }) }], 'a', validate),
        b.change([{ op: 'put', resource: mapping('from-b', { prefix: '/fb/', service: 's' }) }], 'b', validate),
      ]);
      assert.ok(x.ok && y.ok);
      assert.deepEqual([x.version, y.version].sort(), [2, 3]);
      await a.refresh();
      assert.equal(a.snapshot.resources.size, 3);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
