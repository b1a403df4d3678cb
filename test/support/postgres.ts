/**
 * A throwaway PostgreSQL server for tests: initdb into a temporary directory, `postgres` on a free port, trust
 * authentication, removed on stop. As root, both run as the `postgres` user (PostgreSQL refuses to run as root).
 * `startPostgres()` resolves to undefined when no PostgreSQL is installed, so tests can skip with a reason.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

export interface TestPostgres {
  /** A URL of a fresh, empty database. */
  newDatabase(): Promise<string>;
  stop(): Promise<void>;
}

export const POSTGRES_MISSING = 'PostgreSQL is not installed (initdb and postgres not found; .ci/run installs it)';

function findBinaries(): string | undefined {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  for (const version of versions) {
    const dir = join(root, version, 'bin');
    if (existsSync(join(dir, 'initdb'))) return dir;
  }
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir && existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'postgres'))) return dir;
  return undefined;
}

export async function startPostgres(): Promise<TestPostgres | undefined> {
  const bin = findBinaries();
  if (bin === undefined) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'portico-pg-'));
  const asRoot = process.getuid?.() === 0;
  const uid = asRoot ? Number(execFileSync('id', ['-u', 'postgres']).toString().trim()) : undefined;
  const gid = asRoot ? Number(execFileSync('id', ['-g', 'postgres']).toString().trim()) : undefined;
  if (uid !== undefined && gid !== undefined) chownSync(dir, uid, gid);
  const data = join(dir, 'data');
  execFileSync(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8'], { uid, gid, stdio: 'ignore' });
  const port = await freePort();
  const server: ChildProcess = spawn(
    join(bin, 'postgres'),
    ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'],
    { uid, gid, stdio: 'ignore' },
  );
  const base = `postgres://postgres@127.0.0.1:${port}`;
  const { default: pg } = await import('pg');
  const deadline = Date.now() + 20_000;
  for (;;) {
    const client = new pg.Client({ connectionString: `${base}/postgres` });
    try {
      await client.connect();
      await client.end();
      break;
    } catch (err) {
      await client.end().catch(() => undefined);
      if (Date.now() > deadline || server.exitCode !== null) {
        server.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`PostgreSQL did not start: ${(err as Error).message}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  let databases = 0;
  return {
    async newDatabase() {
      const name = `test_${++databases}`;
      const client = new pg.Client({ connectionString: `${base}/postgres` });
      await client.connect();
      await client.query(`CREATE DATABASE ${name}`);
      await client.end();
      return `${base}/${name}`;
    },
    async stop() {
      const exited = new Promise((resolve) => server.once('exit', resolve));
      server.kill('SIGINT'); // fast shutdown: disconnects clients
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
