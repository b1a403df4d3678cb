/**
 * Conformance harness: runs Envoy's own example configs (the corpus described in
 * `../shared/conformance/README.md`) through Portico exactly as a user would, with addresses rewritten onto
 * loopback, fake upstreams playing the sandbox containers, and expectations from the README.
 *
 * An example is declared as data (see `examples.ts`): its corpus files, how each file's clusters are pointed at
 * fakes or at other Portico instances, which fakes to start, and the expectations. `describeExample()` turns
 * one declaration into a node:test suite. Nothing here edits the corpus: every rewrite is applied to the parsed
 * JSON in memory (or to a copy in a temporary directory for `portico run` subprocesses).
 */
import { connectError, freePort } from '../support/ports.js';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Agent, request as undiciRequest } from 'undici';
import { type ConfigError, formatConfigErrors } from '../../src/config/errors.js';
import { type Bootstrap, checkBootstrap, parseDocument } from '../../src/config/load.js';
import { compileBootstrap, DataPlane } from '../../src/dataplane/data-plane.js';
import { createLogger } from '../../src/util/logger.js';
import { EXTENSIONS } from '../../src/extensions/registry.js';

// ---------------------------------------------------------------------------------------------------------------
// Locating the corpus

function findRepoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bin', 'portico.js'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('conformance harness: cannot find the repository root');
    dir = parent;
  }
}

export const REPO_ROOT = findRepoRoot();
export const PORTICO_BIN = join(REPO_ROOT, 'bin', 'portico.js');

/** `$PORTICO_CONFORMANCE_DIR`, else `../shared/conformance/envoy-examples` next to the repository. */
export const CORPUS_DIR = process.env['PORTICO_CONFORMANCE_DIR']
  ? resolve(process.env['PORTICO_CONFORMANCE_DIR'])
  : resolve(REPO_ROOT, '..', 'shared', 'conformance', 'envoy-examples');

export const CORPUS_FOUND = existsSync(CORPUS_DIR) && statSync(CORPUS_DIR).isDirectory();
export const SKIP_MESSAGE = `conformance corpus not found at ${CORPUS_DIR}`;

/** Call first in every conformance test: skips it (and returns true) when the corpus is absent. */
export function skipWithoutCorpus(t: TestContext): boolean {
  if (CORPUS_FOUND) return false;
  t.skip(SKIP_MESSAGE);
  return true;
}

/** Absolute path of a corpus file given relative to the corpus root (`front-proxy/envoy.yaml`). */
export function corpusPath(file: string): string {
  return join(CORPUS_DIR, ...file.split('/'));
}

/** Corpus files that are not bootstraps (discovery files read through a bootstrap). */
export const NOT_BOOTSTRAPS: readonly RegExp[] = [/^dynamic-config-fs\/configs\//];

/** Every bootstrap in the corpus: `*.yaml` relative paths with `/`, sorted, discovery files left out. */
export function corpusBootstraps(): string[] {
  const walk = (dir: string, prefix: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
      const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
      if (entry.isDirectory()) return walk(join(dir, entry.name), rel);
      return /\.ya?ml$/.test(entry.name) ? [rel] : [];
    });
  return walk(CORPUS_DIR, '')
    .filter((file) => !NOT_BOOTSTRAPS.some((re) => re.test(file)))
    .sort();
}

// ---------------------------------------------------------------------------------------------------------------
// Loading as `portico run` does

/** The parsed (proto-JSON) form of a bootstrap, before decoding: what rewrites operate on. */
export type BootstrapJson = Record<string, any>;

export interface LoadOutcome {
  file: string;
  result: 'loads' | 'rejected' | 'crashed';
  /** Where the errors came from: YAML parsing, checkBootstrap, or compileBootstrap. */
  stage?: 'parse' | 'check' | 'compile';
  errors: ConfigError[];
  /** The exception's stack when loading threw. */
  crash?: string;
}

/** Reads and parses a corpus file with the CLI's parser (`parseDocument`). */
export function readCorpusJson(file: string, errors: ConfigError[]): unknown {
  return parseDocument(readFileSync(corpusPath(file), 'utf8'), file, errors);
}

/**
 * Loads a corpus file as `portico validate` does: parse, checkBootstrap, then compileBootstrap. Never throws:
 * an exception is reported as `crashed`.
 */
export function loadCorpusFile(file: string): LoadOutcome {
  const errors: ConfigError[] = [];
  try {
    const json = readCorpusJson(file, errors);
    if (errors.length) return { file, result: 'rejected', stage: 'parse', errors };
    const checked = checkBootstrap(json);
    if (checked.errors.length) return { file, result: 'rejected', stage: 'check', errors: checked.errors };
    compileBootstrap(checked.bootstrap, createLogger('off'), errors, EXTENSIONS);
    if (errors.length) return { file, result: 'rejected', stage: 'compile', errors };
    return { file, result: 'loads', errors };
  } catch (err) {
    return { file, result: 'crashed', errors, crash: err instanceof Error ? (err.stack ?? err.message) : String(err) };
  }
}

/** Parses a corpus file, applies `rewrite` to the JSON, and checks it; throws with every error if refused. */
export function loadRewritten(file: string, rewrite: (json: BootstrapJson) => void): { json: BootstrapJson; bootstrap: Bootstrap } {
  const errors: ConfigError[] = [];
  const parsed = readCorpusJson(file, errors);
  if (errors.length) throw new Error(`${file} does not parse:\n${formatConfigErrors(errors)}`);
  const json = structuredClone((parsed ?? {}) as BootstrapJson);
  rewrite(json);
  const checked = checkBootstrap(json);
  if (checked.errors.length) throw new Error(`${file} (rewritten) is refused:\n${formatConfigErrors(checked.errors)}`);
  return { json, bootstrap: checked.bootstrap };
}

// ---------------------------------------------------------------------------------------------------------------
// Example declarations

/** Something a fake upstream must offer: its loopback port and a close() that drops every connection. */
export interface FakeUpstream {
  port: number;
  close(): Promise<void>;
}

/** Where a rewritten cluster endpoint points. */
export type EndpointTarget =
  /** A fake upstream of the example, by id. */
  | { upstream: string }
  /** A listener (default index 0) of another Portico instance of the example, started earlier. */
  | { instance: string; listener?: number }
  /** The admin endpoint of an instance of the example (run as `cli`); the instance's own id for self-references. */
  | { admin: string }
  /** A fixed loopback port. */
  | { port: number };

export interface InstanceSpec {
  /** Id used by targets and expectations (the sandbox's container name reads well). */
  id: string;
  /** Corpus file, relative to the corpus root. */
  file: string;
  /**
   * `plane`: a DataPlane in the test process (listeners on port 0; no admin endpoint).
   * `cli`: `node bin/portico.js run -c COPY` with listeners and admin on picked free ports; needed for admin.
   */
  run: 'plane' | 'cli';
  /**
   * Cluster name → its new endpoints, one target per `lb_endpoint` in file order; a cluster with a single
   * endpoint and several targets gets that endpoint replicated once per target (a scaled sandbox service).
   * Address, port and `health_check_config.port_value` are rewritten together; the cluster `type` is kept.
   * Every cluster of the file must be listed.
   */
  clusters: Record<string, EndpointTarget[]>;
  /** Further in-memory edits (file references, runtime roots, ...) after the address rewrites. */
  rewrite?: (json: BootstrapJson, env: RewriteEnv) => void;
}

export interface RewriteEnv {
  /** A scratch directory for files the test provides (removed when the example stops). */
  tempDir: string;
  resolve(target: EndpointTarget): number;
}

export interface Expectation {
  /** Shown as the test name; start with the README's number ("1. ..."). */
  name: string;
  /** Marks a known gap: the test runs but its failure does not fail the suite. */
  todo?: string;
  timeoutMs?: number;
  run(env: ExampleEnv): Promise<void>;
}

export interface ExampleSpec {
  /** README section name (`front-proxy`). */
  name: string;
  tier: 1 | 2 | 3;
  /** Fake upstreams by id, started before any instance. */
  upstreams: Record<string, () => Promise<FakeUpstream>>;
  /** Portico instances, started in this order (targets may only name instances listed earlier). */
  instances: InstanceSpec[];
  expectations: Expectation[];
}

// ---------------------------------------------------------------------------------------------------------------
// Running an example

export interface RunningInstance {
  id: string;
  file: string;
  /** The rewritten configuration it runs. */
  json: BootstrapJson;
  listenerPort(index?: number): number;
  /** `http://127.0.0.1:<port>` (or https) of a listener. */
  url(index?: number, scheme?: 'http' | 'https'): string;
  /** `http://127.0.0.1:<admin port>`; throws for in-process planes, which have no admin endpoint. */
  adminUrl(): string;
  /** What a `cli` instance wrote to stderr so far. */
  stderr(): string;
  close(): Promise<void>;
}

export interface ExampleEnv {
  upstream<T extends FakeUpstream = FakeUpstream>(id: string): T;
  instance(id: string): RunningInstance;
  close(): Promise<void>;
}


function setSocketAddress(holder: BootstrapJson | undefined, port: number): void {
  if (!holder) return;
  holder['address'] ??= {};
  const address = holder['address'] as BootstrapJson;
  address['socket_address'] = { ...(address['socket_address'] ?? {}), address: '127.0.0.1', port_value: port };
}

/** Points every listener and the admin at 127.0.0.1 with the given ports (0 = ephemeral). */
export function rewriteListeners(json: BootstrapJson, listenerPorts: readonly number[], adminPort: number): void {
  const listeners = (json['static_resources']?.['listeners'] ?? []) as BootstrapJson[];
  listeners.forEach((listener, i) => setSocketAddress(listener, listenerPorts[i] ?? 0));
  if (json['admin']) setSocketAddress(json['admin'], adminPort);
}

/** Rewrites every cluster's endpoints as `clusters` says; throws for a cluster the table does not cover. */
export function rewriteClusters(
  file: string,
  json: BootstrapJson,
  clusters: Record<string, EndpointTarget[]>,
  resolveTarget: (target: EndpointTarget) => number,
): void {
  for (const cluster of (json['static_resources']?.['clusters'] ?? []) as BootstrapJson[]) {
    const name = String(cluster['name']);
    const targets = clusters[name];
    if (!targets) throw new Error(`${file}: cluster ${name} has no endpoint targets in the example table`);
    const localities = (cluster['load_assignment']?.['endpoints'] ?? []) as BootstrapJson[];
    const slots = localities.flatMap((locality) =>
      ((locality['lb_endpoints'] ?? []) as BootstrapJson[]).map((lbEndpoint) => ({ locality, lbEndpoint })),
    );
    if (slots.length === 1 && targets.length > 1) {
      const { locality, lbEndpoint } = slots[0]!;
      locality['lb_endpoints'] = targets.map(() => structuredClone(lbEndpoint));
      slots.splice(0, 1, ...(locality['lb_endpoints'] as BootstrapJson[]).map((e) => ({ locality, lbEndpoint: e })));
    }
    if (slots.length !== targets.length) {
      throw new Error(`${file}: cluster ${name} has ${slots.length} endpoints but the table gives ${targets.length} targets`);
    }
    slots.forEach(({ lbEndpoint }, i) => {
      const port = resolveTarget(targets[i]!);
      const endpoint = (lbEndpoint['endpoint'] ??= {}) as BootstrapJson;
      setSocketAddress(endpoint, port);
      if (endpoint['health_check_config']?.['port_value'] !== undefined) endpoint['health_check_config']['port_value'] = port;
    });
  }
}

/** Starts the fakes, then the instances in order; on any failure everything started is closed again. */
export async function startExample(spec: ExampleSpec): Promise<ExampleEnv> {
  const fakes = new Map<string, FakeUpstream>();
  const instances = new Map<string, RunningInstance>();
  const tempDir = mkdtempSync(join(tmpdir(), `portico-conformance-${spec.name}-`));
  const close = async (): Promise<void> => {
    for (const instance of [...instances.values()].reverse()) await instance.close().catch(() => {});
    await Promise.all([...fakes.values()].map((f) => f.close().catch(() => {})));
    rmSync(tempDir, { recursive: true, force: true });
  };
  const env: ExampleEnv = {
    upstream: <T extends FakeUpstream>(id: string): T => {
      const fake = fakes.get(id);
      if (!fake) throw new Error(`${spec.name}: no fake upstream ${id}`);
      return fake as T;
    },
    instance: (id) => {
      const instance = instances.get(id);
      if (!instance) throw new Error(`${spec.name}: no instance ${id}`);
      return instance;
    },
    close,
  };
  // Admin ports of cli instances are picked up front so that any instance may point at them.
  const adminPorts = new Map<string, number>();
  try {
    for (const [id, start] of Object.entries(spec.upstreams)) fakes.set(id, await start());
    for (const inst of spec.instances) if (inst.run === 'cli') adminPorts.set(inst.id, await freePort());
    const resolveTarget = (target: EndpointTarget): number => {
      if ('upstream' in target) return env.upstream(target.upstream).port;
      if ('instance' in target) return env.instance(target.instance).listenerPort(target.listener ?? 0);
      if ('admin' in target) {
        const port = adminPorts.get(target.admin);
        if (port === undefined) throw new Error(`${spec.name}: instance ${target.admin} has no admin endpoint (run it as cli)`);
        return port;
      }
      return target.port;
    };
    for (const inst of spec.instances) {
      const instance =
        inst.run === 'plane'
          ? await startPlaneInstance(inst, resolveTarget, tempDir)
          : await startCliInstance(inst, resolveTarget, tempDir, adminPorts.get(inst.id)!);
      instances.set(inst.id, instance);
    }
  } catch (err) {
    await close();
    throw err;
  }
  return env;
}

async function startPlaneInstance(
  inst: InstanceSpec,
  resolveTarget: (target: EndpointTarget) => number,
  tempDir: string,
): Promise<RunningInstance> {
  const { json, bootstrap } = loadRewritten(inst.file, (j) => {
    rewriteListeners(j, [], 0);
    rewriteClusters(inst.file, j, inst.clusters, resolveTarget);
    inst.rewrite?.(j, { tempDir, resolve: resolveTarget });
  });
  const plane = await DataPlane.start(bootstrap, createLogger('error'), EXTENSIONS);
  const listenerPort = (index = 0): number => {
    const bound = plane.listeners[index]?.boundAddress();
    if (!bound) throw new Error(`${inst.id}: no listener ${index}`);
    return bound.port;
  };
  let closing: Promise<void> | undefined;
  return {
    id: inst.id,
    file: inst.file,
    json,
    listenerPort,
    url: (index = 0, scheme = 'http') => `${scheme}://127.0.0.1:${listenerPort(index)}`,
    adminUrl: () => {
      throw new Error(`${inst.id} runs in-process and has no admin endpoint; declare it with run: 'cli'`);
    },
    stderr: () => '',
    close: () => (closing ??= plane.close(0)),
  };
}

async function startCliInstance(
  inst: InstanceSpec,
  resolveTarget: (target: EndpointTarget) => number,
  tempDir: string,
  adminPort: number,
): Promise<RunningInstance> {
  const errors: ConfigError[] = [];
  const listenerCount = ((readCorpusJson(inst.file, errors) as BootstrapJson | undefined)?.['static_resources']?.['listeners'] ?? []).length;
  const ports: number[] = [];
  for (let i = 0; i < listenerCount; i++) ports.push(await freePort());
  const { json } = loadRewritten(inst.file, (j) => {
    rewriteListeners(j, ports, adminPort);
    rewriteClusters(inst.file, j, inst.clusters, resolveTarget);
    inst.rewrite?.(j, { tempDir, resolve: resolveTarget });
  });
  const hasAdmin = json['admin'] !== undefined;
  // JSON is YAML 1.2: the copy goes through the same parser as the original.
  const copy = join(tempDir, `${inst.id}-${basename(inst.file).replace(/\.ya?ml$/, '')}.json`);
  writeFileSync(copy, JSON.stringify(json, null, 2));
  const child = spawn(process.execPath, [PORTICO_BIN, 'run', '-c', copy, '-l', 'warning', '--drain-time-s', '0'], {
    cwd: tempDir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stdout?.resume();
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolveExit) => child.once('exit', (code) => resolveExit(code)));
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => (closing ??= stopChild(child, exited));
  try {
    await waitUntilReady(inst.id, hasAdmin ? adminPort : ports[0], hasAdmin, exited, () => stderr);
  } catch (err) {
    await close();
    throw err;
  }
  return {
    id: inst.id,
    file: inst.file,
    json,
    listenerPort: (index = 0) => {
      const port = ports[index];
      if (port === undefined) throw new Error(`${inst.id}: no listener ${index}`);
      return port;
    },
    url: (index = 0, scheme = 'http') => `${scheme}://127.0.0.1:${ports[index]}`,
    adminUrl: () => {
      if (!hasAdmin) throw new Error(`${inst.file} has no admin block`);
      return `http://127.0.0.1:${adminPort}`;
    },
    stderr: () => stderr,
    close,
  };
}

/** Polls the admin `/ready` (or, without admin, a TCP connect to the first listener) until it answers. */
async function waitUntilReady(
  id: string,
  port: number | undefined,
  viaAdmin: boolean,
  exited: Promise<number | null>,
  stderr: () => string,
): Promise<void> {
  let exitCode: number | null | undefined;
  void exited.then((code) => (exitCode = code));
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (exitCode !== undefined) throw new Error(`${id}: portico run exited with ${exitCode} before it was ready:\n${stderr()}`);
    if (port !== undefined) {
      const ok = viaAdmin
        ? await fetchText(`http://127.0.0.1:${port}/ready`, { timeoutMs: 1000 }).then((r) => r.status === 200, () => false)
        : (await connectError(port)) === undefined;
      if (ok) return;
    }
    await sleep(50);
  }
  throw new Error(`${id}: portico run was not ready within 10 s:\n${stderr()}`);
}

async function stopChild(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------------------------
// Clients

export interface FetchInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer | null;
  timeoutMs?: number;
}

export interface FetchResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request on its own connection; HTTPS does not verify the certificate (the corpus's are self-signed). */
export async function fetchText(url: string, init: FetchInit = {}): Promise<FetchResult> {
  const timeout = init.timeoutMs ?? 5000;
  const dispatcher = new Agent({ connections: 1, headersTimeout: timeout, bodyTimeout: timeout, connect: { rejectUnauthorized: false } });
  try {
    const res = await undiciRequest(url, { dispatcher, method: init.method ?? 'GET', headers: init.headers ?? {}, body: init.body ?? null });
    return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
  } finally {
    await dispatcher.destroy().catch(() => {});
  }
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  elapsedMs: number;
  timedOut: boolean;
}

/** Runs `node bin/portico.js ...args`; kills it (and reports `timedOut`) after `timeoutMs`. */
export function runPortico(args: string[], timeoutMs = 10_000): Promise<CliResult> {
  const started = Date.now();
  return new Promise((resolveRun) => {
    const child = spawn(process.execPath, [PORTICO_BIN, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolveRun({ code, signal, stdout, stderr, elapsedMs: Date.now() - started, timedOut });
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Registering an example as a suite

/** One `describe` per example, one `it` per expectation; every test skips when the corpus is absent. */
export function describeExample(spec: ExampleSpec): void {
  describe(`conformance: ${spec.name} (tier ${spec.tier})`, () => {
    let env: ExampleEnv | undefined;
    let startError: unknown;
    before(async () => {
      if (!CORPUS_FOUND) return;
      try {
        env = await startExample(spec);
      } catch (err) {
        startError = err;
      }
    });
    after(async () => {
      await env?.close();
    });
    for (const expectation of spec.expectations) {
      const options: { timeout: number; todo?: string } = { timeout: expectation.timeoutMs ?? 10_000 };
      if (expectation.todo !== undefined) options.todo = expectation.todo;
      it(expectation.name, options, async (t) => {
        if (skipWithoutCorpus(t)) return;
        if (startError !== undefined) throw startError;
        await expectation.run(env!);
      });
    }
  });
}
