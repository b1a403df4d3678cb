/**
 * The two database engines behind the store, reduced to what it needs: queries, transactions and
 * LISTEN/NOTIFY. PGlite (PostgreSQL compiled to WebAssembly, in a data directory) is the embedded default;
 * PostgreSQL itself, through `pg`, is for production and for several control-plane replicas. The SQL is the same.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from 'pg';

export interface Queryable {
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
}

export interface Engine extends Queryable {
  readonly kind: 'pglite' | 'postgres';
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Calls `onNotify` for every NOTIFY on `channel`, from this process or any other on the same database. */
  listen(channel: string, onNotify: (payload: string) => void): Promise<void>;
  close(): Promise<void>;
}

/** Opens the embedded engine in `dir`, which one process at a time may use (a lock file says which). */
export async function openPglite(dir: string): Promise<Engine> {
  mkdirSync(dir, { recursive: true });
  const lock = lockDataDir(dir);
  try {
    const { PGlite } = await import('@electric-sql/pglite');
    const db = await PGlite.create(join(dir, 'pgdata'));
    return {
      kind: 'pglite',
      query: async (sql, params) => (await db.query(sql, params)).rows as never[],
      transaction: (fn) => db.transaction((tx) => fn({ query: async (sql, params) => (await tx.query(sql, params)).rows as never[] })),
      listen: async (channel, onNotify) => void (await db.listen(channel, onNotify)),
      close: async () => {
        await db.close();
        lock.release();
      },
    };
  } catch (err) {
    lock.release();
    throw err;
  }
}

/** PGlite has no protection against two processes opening one directory, which would corrupt it. */
function lockDataDir(dir: string): { release(): void } {
  const path = join(dir, 'portico.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: 'wx' });
      return { release: () => rmSync(path, { force: true }) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(path, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
        throw new Error(`data directory ${dir} is in use by process ${pid} (use --database-url for several processes)`);
      }
      rmSync(path, { force: true }); // left behind by a process that is gone
    }
  }
  throw new Error(`cannot lock data directory ${dir}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Connects to PostgreSQL. LISTEN uses a connection of its own, re-established when it drops. */
export async function openPostgres(url: string, onError: (message: string) => void): Promise<Engine> {
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  pool.on('error', (err) => onError(`PostgreSQL connection: ${err.message}`));
  await pool.query('SELECT 1');
  const listeners: Client[] = [];
  let closed = false;

  /** `reconnecting`: after a lost connection, whatever was notified in between is missed, so say so once. */
  const listen = async (channel: string, onNotify: (payload: string) => void, reconnecting = false): Promise<void> => {
    const client = new pg.Client({ connectionString: url });
    let retrying = false;
    const retry = () => {
      if (retrying) return;
      retrying = true;
      const index = listeners.indexOf(client);
      if (index >= 0) listeners.splice(index, 1);
      if (!closed) setTimeout(() => listen(channel, onNotify, true).catch((err: Error) => onError(`LISTEN ${channel}: ${err.message}`)), 1000).unref();
    };
    client.on('notification', (n) => n.channel === channel && onNotify(n.payload ?? ''));
    client.on('error', (err) => onError(`LISTEN ${channel}: ${err.message}`));
    client.once('end', retry);
    listeners.push(client);
    try {
      await client.connect();
      await client.query(`LISTEN ${channel}`);
    } catch (err) {
      // At start-up the caller hears of it; later, keep trying.
      if (reconnecting) retry();
      void client.end().catch(() => undefined);
      throw err;
    }
    if (reconnecting) onNotify('');
  };

  return {
    kind: 'postgres',
    query: async (sql, params) => (await pool.query(sql, params)).rows,
    transaction: async (fn) => {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const result = await fn({ query: async (sql, params) => (await client.query(sql, params)).rows });
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.release();
      }
    },
    listen,
    close: async () => {
      closed = true;
      await Promise.all(listeners.map((c) => c.end().catch(() => undefined)));
      await pool.end();
    },
  };
}
