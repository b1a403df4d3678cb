/** Runs `portico start` or `portico run` as a child process and waits until it is live. */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../src/util/package-root.js';
import { freePort } from './ports.js';

export const BIN = join(PACKAGE_ROOT, 'bin', 'portico.js');

export interface StartedProcess {
  child: ChildProcess;
  proxyPort: number;
  apiPort: number;
  adminPort: number;
  xdsPort: number;
  api: string;
  proxy: string;
  output(): string;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

/**
 * `portico start` on free ports. A port found free can be taken by another test before the process binds it:
 * such a start (EADDRINUSE) is tried again on other ports.
 */
export async function startProcess(args: string[], attempts = 3): Promise<StartedProcess> {
  try {
    return await startOnFreePorts(args);
  } catch (err) {
    if (attempts > 1 && (err as Error).message.includes('EADDRINUSE')) return startProcess(args, attempts - 1);
    throw err;
  }
}

async function startOnFreePorts(args: string[]): Promise<StartedProcess> {
  const [proxyPort, apiPort, adminPort, xdsPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const live = await spawnLive([
    'start', '--proxy-host', '127.0.0.1', '--proxy-port', String(proxyPort), '--api-port', String(apiPort), '--admin-port', String(adminPort),
    '--xds-port', String(xdsPort), ...args,
  ]);
  return { ...live, proxyPort, apiPort, adminPort, xdsPort, api: `http://127.0.0.1:${apiPort}`, proxy: `http://127.0.0.1:${proxyPort}` };
}

export type LiveProcess = Pick<StartedProcess, 'child' | 'output' | 'stop'>;

/** `portico run -c FILE ...args`, once it says it is live. */
export function startRun(file: string, args: string[] = []): Promise<LiveProcess> {
  return spawnLive(['run', '-c', file, ...args]);
}

/** `portico ...args`, once it has logged that it is live (at info level: pass no `-l` above it). */
async function spawnLive(args: string[]): Promise<LiveProcess> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d));
  child.stderr!.on('data', (d: Buffer) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      // Not left running behind a test that gave up on it.
      child.kill('SIGKILL');
      reject(new Error(`portico ${args[0]} did not come up:\n${output}`));
    }, 60_000);
    const check = () => {
      if (output.includes('portico is live')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stderr!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`portico ${args[0]} exited with ${code}:\n${output}`));
    });
  });
  return {
    child,
    output: () => output,
    stop: () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

/** The child processes of `pid` (a primary's workers), from /proc. */
export function childrenOf(pid: number): number[] {
  const children = new Set<number>();
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      for (const child of text.split(/\s+/)) if (child) children.add(Number(child));
    }
  } catch {
    // the process is gone
  }
  return [...children].sort((a, b) => a - b);
}
