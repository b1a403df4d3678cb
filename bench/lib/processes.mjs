// Child processes of the benchmarks: start them pinned to CPUs, wait for their ports, read the CPU time and RSS
// of their whole process trees from /proc, and make sure every one of them is gone when the run ends.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';

export const hasTaskset = spawnSync('taskset', ['--version']).status === 0;
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;
const running = new Set();
let interrupted = false;
/** True once Ctrl-C or SIGTERM arrived: failures after that are the cleanup's doing, not worth reporting. */
export const wasInterrupted = () => interrupted;

/** Is `cmd` on the PATH (or an existing absolute path)? */
export function which(cmd) {
  const r = spawnSync('sh', ['-c', `command -v "${cmd}"`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** Wraps a command in `taskset -c CPUS` (which execs it, so the child's pid is the command's own). */
function pinned(cpus, cmd, args) {
  return hasTaskset && cpus !== undefined ? ['taskset', ['-c', String(cpus), cmd, ...args]] : [cmd, args];
}

/**
 * Starts a long-running process. It gets its own process group (detached) so that stop() reaches its workers
 * too (nginx's worker, Portico's worker processes), and a Ctrl-C on the terminal reaches only us: we then stop
 * everything in order instead of leaving half the tree behind.
 */
export function start(name, cpus, cmd, args, { cwd, env, captureStdout = false } = {}) {
  const [c, a] = pinned(cpus, cmd, args);
  const stdio = ['ignore', captureStdout ? 'pipe' : 'ignore', 'pipe'];
  const child = spawn(c, a, { cwd, env: { ...process.env, ...env }, detached: true, stdio });
  const proc = { name, child, pid: child.pid, stdout: '', stderr: '', exited: false };
  if (captureStdout) {
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => (proc.stdout += d));
  }
  // Keep the end of stderr for the error message when the process fails to come up.
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => (proc.stderr = (proc.stderr + d).slice(-4000)));
  // 'close' (not 'exit'): stdout is complete, and no process of the group still holds our pipes.
  proc.exit = new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  proc.exit.then(() => {
    proc.exited = true;
    running.delete(proc);
  });
  child.once('error', (err) => (proc.stderr += `\n${err.message}`));
  running.add(proc);
  return proc;
}

/** Runs a command to completion (pinned, in its own group so cleanup can stop it); resolves with its stdout. */
export async function run(cpus, cmd, args) {
  const proc = start(cmd, cpus, cmd, args, { captureStdout: true });
  const { code, signal } = await proc.exit;
  if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${signal ?? code}):\n${proc.stderr.trim()}`);
  return proc.stdout;
}

/**
 * SIGTERM to the process itself (Portico's primary stops its workers, nginx's master its worker), then SIGKILL
 * to its whole group if anything of it is left after `graceMs`.
 */
export async function stop(proc, graceMs = 3000) {
  if (proc.exited) return;
  try {
    process.kill(proc.pid, 'SIGTERM');
  } catch {
    // already gone
  }
  const timer = new Promise((r) => setTimeout(r, graceMs, 'timeout'));
  if ((await Promise.race([proc.exit, timer])) === 'timeout') {
    signalGroup(proc, 'SIGKILL');
    await proc.exit;
  }
}

function signalGroup(proc, signal) {
  try {
    process.kill(-proc.pid, signal);
  } catch {
    // already gone
  }
}

/** Stops every process still running, except those in `keep` (the shared upstreams between scenarios). */
export async function stopAll(keep = []) {
  await Promise.all([...running].filter((p) => !keep.includes(p)).map((p) => stop(p)));
}

/** Stop every child on Ctrl-C, SIGTERM, and (last resort, synchronously) on any exit. */
export function installCleanup(onCleanup = () => {}) {
  const handler = (signal) => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\n${signal}: stopping ${running.size} benchmark process(es)\n`);
    stopAll().finally(() => {
      onCleanup();
      process.exit(130);
    });
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  process.on('exit', () => {
    for (const p of running) signalGroup(p, 'SIGKILL');
    onCleanup();
  });
}

export async function freePort() {
  const server = createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

/** Waits until `port` accepts a connection; fails early, with its stderr, if `proc` exits first. */
export async function waitForPort(port, proc, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc?.exited) throw new Error(`${proc.name} exited before listening on ${port}:\n${proc.stderr.trim()}`);
    const ok = await new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${proc?.name ?? 'process'} did not listen on ${port} within ${timeoutMs} ms:\n${proc?.stderr.trim() ?? ''}`);
}

/** `pid` and all its descendants (Portico's workers, nginx's worker), found by parent pid in /proc. */
export function processTree(pid) {
  const parentOf = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      parentOf.set(Number(entry), statFields(Number(entry))[1]);
    } catch {
      // exited while we were looking
    }
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) {
    for (const [child, parent] of parentOf) if (parent === tree[i]) tree.push(child);
  }
  return tree;
}

/** Fields of /proc/PID/stat after the command name; [0] is state, [1] ppid, [11] utime, [12] stime. */
function statFields(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map((f, i) => (i === 0 ? f : Number(f)));
}

/** CPU seconds (user + system, all threads) used so far by each pid; pids that are gone are left out. */
export function cpuSeconds(pids) {
  const out = new Map();
  for (const pid of pids) {
    try {
      const f = statFields(pid);
      out.set(pid, (f[11] + f[12]) / CLK_TCK);
    } catch {
      // gone
    }
  }
  return out;
}

/** CPU seconds spent between two cpuSeconds() snapshots; a process that appeared in between counts whole. */
export function cpuDelta(before, after) {
  let sum = 0;
  for (const [pid, s] of after) sum += s - (before.get(pid) ?? 0);
  return sum;
}

/** Steal and total ticks of all CPUs from /proc/stat (steal: time a vCPU was ready but the host ran others). */
export function stealTicks() {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user.
  return { steal: fields[7] ?? 0, total: fields.slice(0, 8).reduce((a, b) => a + b, 0) };
}

/** Summed VmRSS of the pids, in bytes (a sum of RSS: pages shared between processes count more than once). */
export function rss(pids) {
  let sum = 0;
  for (const pid of pids) {
    try {
      sum += Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;
    } catch {
      // gone
    }
  }
  return sum;
}

/** Moves this process (every thread) to `cpus`, so the orchestrator stays off the proxy's core. */
export function pinSelf(cpus) {
  if (hasTaskset) spawnSync('taskset', ['-a', '-p', '-c', String(cpus), String(process.pid)], { stdio: 'ignore' });
}

/** The open-file limit our children inherit. */
export function openFileLimit() {
  return Number(spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout) || 1024;
}
