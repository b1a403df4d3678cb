/**
 * The configuration store: the current resources and the history of every change. Each change is one
 * transaction that writes the resources and a new version row (time, source, diff) and notifies other
 * processes; a change that fails validation rolls back and leaves everything as it was. Rollback to version N
 * is a new version whose content equals version N.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Resource } from '../resources.js';
import type { ResourceError } from '../translate.js';
import type { Engine, Queryable } from './engine.js';

export const NOTIFY_CHANNEL = 'portico_config';
// Serialises writers across processes; the value only has to be unique to Portico within the database.
const LOCK_KEY = 748_201_317;

// json, not jsonb: documents keep the key order they were written in.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS portico_versions (
  version integer PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now(),
  source text NOT NULL,
  summary text NOT NULL,
  diff json NOT NULL
);
CREATE TABLE IF NOT EXISTS portico_resources (
  kind text NOT NULL,
  name text NOT NULL,
  doc json NOT NULL,
  version integer NOT NULL,
  PRIMARY KEY (kind, name)
);`;

export interface StoredResource {
  resource: Resource;
  /** The version that last wrote it; its ETag. */
  version: number;
}

export interface DiffEntry {
  op: 'create' | 'update' | 'delete';
  kind: string;
  name: string;
  before?: Resource;
  after?: Resource;
}

export interface VersionInfo {
  version: number;
  created_at: string;
  source: string;
  summary: string;
  diff: DiffEntry[];
}

export type Change =
  | { op: 'put'; resource: Resource; ifMatch?: string; ifNoneMatch?: boolean }
  | { op: 'delete'; kind: string; name: string; ifMatch?: string };

/** The resources as of one version. */
export interface Snapshot {
  version: number;
  resources: ReadonlyMap<string, StoredResource>;
}

export type ChangeResult<T> =
  | { ok: true; version: number; diff: DiffEntry[]; snapshot: Snapshot; validated: T | undefined }
  | { ok: false; status: 400 | 404 | 412; errors: ResourceError[] };

/** Decides whether a candidate configuration may be committed; `value` (the translation) is handed back. */
export type Validator<T> = (resources: Resource[]) => { errors: ResourceError[]; value: T };

export function key(kind: string, name: string): string {
  return `${kind}/${name}`;
}

export function etag(version: number): string {
  return `"${version}"`;
}

class Rejected {
  constructor(readonly result: ChangeResult<never>) {}
}

export class ConfigStore {
  private current: Snapshot = { version: 0, resources: new Map() };
  /** In-process writers queue here; the advisory lock orders them against other processes. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(readonly engine: Engine) {}

  static async open(engine: Engine): Promise<ConfigStore> {
    await engine.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEY]);
      for (const statement of SCHEMA.split(';').filter((s) => s.trim())) await tx.query(statement);
    });
    const store = new ConfigStore(engine);
    await store.refresh();
    return store;
  }

  get snapshot(): Snapshot {
    return this.current;
  }

  /**
   * Catches up with changes committed by any process (replaying their diffs) and returns the new snapshot, or
   * undefined when nothing changed.
   */
  refresh(): Promise<Snapshot | undefined> {
    return this.serialised(async () => {
      const before = this.current.version;
      // The shared lock keeps writers out, so the version and the rows read agree.
      this.current = await this.engine.transaction(async (tx) => {
        await tx.query('SELECT pg_advisory_xact_lock_shared($1)', [LOCK_KEY]);
        return this.catchUp(tx, this.current);
      });
      return this.current.version === before ? undefined : this.current;
    });
  }

  /**
   * Applies changes in one transaction. Puts equal to what is stored are dropped, and when nothing is left the
   * current version is returned without writing anything.
   */
  change<T>(changes: Change[], source: string, validate: Validator<T>): Promise<ChangeResult<T>> {
    return this.serialised(async () => {
      try {
        const result = await this.engine.transaction(async (tx) => {
          await tx.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEY]);
          const base = await this.catchUp(tx, this.current);
          const planned = plan(base, changes);
          if (!planned.ok) throw new Rejected(planned);
          if (planned.diff.length === 0) return { ok: true as const, version: base.version, diff: [], snapshot: base, validated: undefined };
          const next = applyDiff(base, planned.diff, base.version + 1);
          const { errors, value } = validate([...next.resources.values()].map((r) => r.resource));
          if (errors.length) throw new Rejected({ ok: false, status: 400, errors });
          await write(tx, next.version, planned.diff, source);
          return { ok: true as const, version: next.version, diff: planned.diff, snapshot: next, validated: value };
        });
        this.current = result.snapshot;
        return result;
      } catch (err) {
        if (err instanceof Rejected) return err.result;
        throw err;
      }
    });
  }

  /** What `change` would do, against the snapshot this process has, without writing anything. */
  preview<T>(changes: Change[], validate: Validator<T>): ChangeResult<T> {
    const planned = plan(this.current, changes);
    if (!planned.ok) return planned;
    const next = applyDiff(this.current, planned.diff, this.current.version + (planned.diff.length ? 1 : 0));
    const { errors, value } = validate([...next.resources.values()].map((r) => r.resource));
    if (errors.length) return { ok: false, status: 400, errors };
    return { ok: true, version: next.version, diff: planned.diff, snapshot: next, validated: value };
  }

  /** The changes that bring the current content back to what it was at `version`. */
  async rollbackChanges(version: number): Promise<Change[] | undefined> {
    const current = this.current;
    if (!Number.isInteger(version) || version < 0 || version > current.version) return undefined;
    const rows = await this.engine.query<{ diff: DiffEntry[] }>('SELECT diff FROM portico_versions WHERE version > $1 ORDER BY version DESC', [version]);
    const target = new Map([...current.resources].map(([k, v]) => [k, v.resource]));
    for (const { diff } of rows) {
      for (const entry of [...diff].reverse()) {
        if (entry.before === undefined) target.delete(key(entry.kind, entry.name));
        else target.set(key(entry.kind, entry.name), entry.before);
      }
    }
    const changes: Change[] = [];
    for (const [k, stored] of current.resources) {
      if (!target.has(k)) changes.push({ op: 'delete', kind: stored.resource.kind, name: stored.resource.metadata.name });
    }
    for (const resource of target.values()) changes.push({ op: 'put', resource });
    return changes;
  }

  async history(limit: number, before?: number): Promise<VersionInfo[]> {
    const rows = await this.engine.query<VersionRow>(
      `SELECT version, created_at, source, summary, diff FROM portico_versions WHERE version < $1 ORDER BY version DESC LIMIT $2`,
      [before ?? 2 ** 31 - 1, limit],
    );
    return rows.map(versionInfo);
  }

  async version(version: number): Promise<VersionInfo | undefined> {
    const rows = await this.engine.query<VersionRow>('SELECT version, created_at, source, summary, diff FROM portico_versions WHERE version = $1', [version]);
    return rows[0] && versionInfo(rows[0]);
  }

  close(): Promise<void> {
    return this.engine.close();
  }

  private serialised<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Replays the versions newer than `base` (each version row carries its whole diff), or reads the resources
   * table when starting or when far behind.
   */
  private async catchUp(q: Queryable, base: Snapshot): Promise<Snapshot> {
    const [{ latest }] = await q.query<{ latest: number }>('SELECT coalesce(max(version), 0) AS latest FROM portico_versions');
    if (latest === base.version) return base;
    if (base.version === 0 || latest - base.version > 100) return load(q, latest);
    const rows = await q.query<{ version: number; diff: DiffEntry[] }>('SELECT version, diff FROM portico_versions WHERE version > $1 ORDER BY version', [base.version]);
    let snapshot = base;
    for (const row of rows) snapshot = applyDiff(snapshot, row.diff, row.version);
    return snapshot;
  }

}

async function load(q: Queryable, version: number): Promise<Snapshot> {
  const rows = await q.query<{ kind: string; name: string; doc: Resource; version: number }>('SELECT kind, name, doc, version FROM portico_resources');
  return { version, resources: new Map(rows.map((r) => [key(r.kind, r.name), { resource: r.doc, version: r.version }])) };
}

type VersionRow = { version: number; created_at: Date | string; source: string; summary: string; diff: DiffEntry[] };

function versionInfo(row: VersionRow): VersionInfo {
  const created = row.created_at instanceof Date ? row.created_at.toISOString() : new Date(row.created_at).toISOString();
  return { version: row.version, created_at: created, source: row.source, summary: row.summary, diff: row.diff };
}

function plan(base: Snapshot, changes: Change[]): { ok: true; diff: DiffEntry[] } | ChangeResult<never> {
  const errors: ResourceError[] = [];
  let status: 404 | 412 = 412;
  const touched = new Map<string, DiffEntry | null>();
  for (const change of changes) {
    const kind = change.op === 'put' ? change.resource.kind : change.kind;
    const name = change.op === 'put' ? change.resource.metadata.name : change.name;
    const k = key(kind, name);
    const stored = base.resources.get(k);
    const resource = `${kind}/${name}`;
    if (change.ifMatch !== undefined && change.ifMatch !== '*' && (stored === undefined || etag(stored.version) !== change.ifMatch)) {
      errors.push({ resource, code: 'invalid_value', path: '', message: `If-Match ${change.ifMatch} does not match the current ETag ${stored ? etag(stored.version) : '(none: it does not exist)'}` });
      continue;
    }
    if (change.ifMatch === '*' && stored === undefined) {
      errors.push({ resource, code: 'invalid_value', path: '', message: 'If-Match: * but it does not exist' });
      continue;
    }
    if (change.op === 'put') {
      if (change.ifNoneMatch && stored !== undefined) {
        errors.push({ resource, code: 'duplicate_name', path: 'metadata.name', message: 'it already exists' });
        continue;
      }
      if (stored && isDeepStrictEqual(stored.resource, change.resource)) touched.delete(k);
      else touched.set(k, { op: stored ? 'update' : 'create', kind, name, ...(stored ? { before: stored.resource } : {}), after: change.resource });
    } else if (stored !== undefined) {
      touched.set(k, { op: 'delete', kind, name, before: stored.resource });
    } else if (change.ifMatch !== undefined) {
      status = 404;
      errors.push({ resource, code: 'invalid_value', path: '', message: 'it does not exist' });
    } else {
      touched.delete(k);
    }
  }
  if (errors.length) return { ok: false, status, errors };
  return { ok: true, diff: [...touched.values()].filter((d): d is DiffEntry => d !== null) };
}

function applyDiff(base: Snapshot, diff: DiffEntry[], version: number): Snapshot {
  const resources = new Map(base.resources);
  for (const entry of diff) {
    const k = key(entry.kind, entry.name);
    if (entry.after === undefined) resources.delete(k);
    else resources.set(k, { resource: entry.after, version });
  }
  return { version, resources };
}

function summarize(diff: DiffEntry[]): string {
  const shown = diff.slice(0, 5).map((d) => `${d.op} ${d.kind}/${d.name}`);
  return diff.length > 5 ? `${shown.join(', ')} and ${diff.length - 5} more` : shown.join(', ');
}

async function write(tx: Queryable, version: number, diff: DiffEntry[], source: string): Promise<void> {
  const puts = diff.filter((d) => d.after !== undefined).map((d) => d.after);
  const deletes = diff.filter((d) => d.after === undefined).map((d) => [d.kind, d.name]);
  // One statement per kind of change, whatever the size of the batch.
  if (puts.length) {
    await tx.query(
      `INSERT INTO portico_resources (kind, name, doc, version)
       SELECT x->>'kind', x->'metadata'->>'name', x, $2 FROM json_array_elements($1::json) AS x
       ON CONFLICT (kind, name) DO UPDATE SET doc = EXCLUDED.doc, version = EXCLUDED.version`,
      [JSON.stringify(puts), version],
    );
  }
  if (deletes.length) {
    await tx.query(`DELETE FROM portico_resources WHERE (kind, name) IN (SELECT x->>0, x->>1 FROM json_array_elements($1::json) AS x)`, [JSON.stringify(deletes)]);
  }
  await tx.query('INSERT INTO portico_versions (version, source, summary, diff) VALUES ($1, $2, $3, $4::json)', [version, source, summarize(diff), JSON.stringify(diff)]);
  await tx.query('SELECT pg_notify($1, $2)', [NOTIFY_CHANNEL, String(version)]);
}
