import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { AdminServer } from '../admin/admin-server.js';
import { type ConfigError, formatConfigErrors } from '../config/errors.js';
import { loadBootstrap } from '../config/load.js';
import { DEFAULT_FILE_FLUSH_INTERVAL_MS } from '../dataplane/access-log/sinks.js';
import { findCompileProblems } from '../dataplane/data-plane.js';
import { Primary } from '../server/primary.js';
import { createLogger, isLogLevel, type Logger, type LogLevel } from '../util/logger.js';
import { EXTENSIONS } from '../extensions/registry.js';

const OPTIONS = {
  'config-path': { type: 'string', short: 'c' },
  'config-yaml': { type: 'string' },
  'log-level': { type: 'string', short: 'l', default: 'info' },
  'drain-time-s': { type: 'string', default: '5' },
  mode: { type: 'string', default: 'serve' },
  concurrency: { type: 'string' },
  'service-cluster': { type: 'string' },
  'file-flush-interval-msec': { type: 'string', default: String(DEFAULT_FILE_FLUSH_INTERVAL_MS) },
} as const;

interface RunOptions {
  configPath: string | undefined;
  configYaml: string | undefined;
  logLevel: LogLevel;
  drainTimeMs: number;
  mode: 'serve' | 'validate';
  concurrency: number;
  fileFlushIntervalMs: number;
  serviceCluster: string | undefined;
}

function parseRunOptions(argv: string[]): RunOptions {
  const { values } = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false });
  const logLevel = values['log-level'];
  if (!isLogLevel(logLevel)) throw new Error(`invalid --log-level "${logLevel}"`);
  const drain = Number(values['drain-time-s']);
  if (!Number.isFinite(drain) || drain < 0) throw new Error(`invalid --drain-time-s "${values['drain-time-s']}"`);
  const mode = values.mode;
  if (mode !== 'serve' && mode !== 'validate') throw new Error(`invalid --mode "${mode}" (serve or validate)`);
  if (values['config-path'] === undefined && values['config-yaml'] === undefined) {
    throw new Error('a configuration is required: -c FILE or --config-yaml YAML');
  }
  const concurrency = values.concurrency === undefined ? availableParallelism() : wholeNumber(values.concurrency, 'concurrency');
  const fileFlushIntervalMs = wholeNumber(values['file-flush-interval-msec'], 'file-flush-interval-msec', MAX_TIMER_MS);
  return {
    configPath: values['config-path'],
    configYaml: values['config-yaml'],
    logLevel,
    drainTimeMs: drain * 1000,
    mode,
    concurrency,
    fileFlushIntervalMs,
    serviceCluster: values['service-cluster'],
  };
}

/** The longest timer Node keeps (about 24.8 days); a longer one would fire after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function wholeNumber(raw: string, flag: string, max = Number.MAX_SAFE_INTEGER): number {
  // Number('') is 0 and Number(' 7') is 7: only digits are a whole number here.
  const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= 1 && n <= max)) {
    throw new Error(`invalid --${flag} "${raw}" (a whole number, ${max === Number.MAX_SAFE_INTEGER ? '1 or more' : `1 to ${max}`})`);
  }
  return n;
}

/** `portico validate`: decode, check and compile without binding anything; print every problem. */
export async function validateCommand(argv: string[]): Promise<number> {
  return validate(parseRunOptions(argv));
}

/** The configuration the options name, with every problem it has (decoding, checks and compilation, in one pass). */
function check(options: RunOptions, log: Logger): ReturnType<typeof loadBootstrap> {
  const loaded = loadBootstrap(options);
  findCompileProblems(loaded.bootstrap, log, loaded.errors, EXTENSIONS);
  return loaded;
}

function rejected(errors: ConfigError[]): string {
  return `configuration rejected, ${errors.length} problem${errors.length > 1 ? 's' : ''}:\n${formatConfigErrors(errors)}\n`;
}

function validate(options: RunOptions): number {
  const { errors } = check(options, createLogger(options.logLevel));
  if (errors.length > 0) {
    process.stderr.write(rejected(errors));
    return 1;
  }
  process.stdout.write(`configuration '${options.configPath ?? '--config-yaml'}' OK\n`);
  return 0;
}

/**
 * SIGHUP: the configuration is read again (`-c` with `--config-yaml` over it), checked in full and swapped in as
 * an update. One with problems leaves the configuration in force, and every problem is logged.
 */
async function reload(options: RunOptions, log: Logger, primary: Primary): Promise<void> {
  log.info(`SIGHUP: reloading ${options.configPath ?? '--config-yaml'}`);
  const { bootstrap, document, errors } = check(options, log);
  if (errors.length > 0) {
    log.error('reload refused, the configuration in force stays:');
    for (const line of rejected(errors).trimEnd().split('\n')) log.error(line);
    return;
  }
  if (JSON.stringify(bootstrap.admin) !== JSON.stringify(primary.bootstrap.admin)) log.warn('a changed admin address takes effect on the next start');
  try {
    const problems = await primary.update(bootstrap, document);
    if (problems.length === 0) log.info('configuration reloaded');
  } catch (err) {
    log.error(`reload failed: ${(err as Error).message}`);
  }
}

/**
 * `portico run`: serve a bootstrap until SIGTERM, SIGINT or `/quitquitquit`, reloading it on SIGHUP. The
 * configuration is compiled here first, so that a bad one is refused before any worker starts.
 */
export async function runCommand(argv: string[]): Promise<number> {
  const options = parseRunOptions(argv);
  if (options.mode === 'validate') return validate(options);
  const log = createLogger(options.logLevel);
  const { bootstrap, errors, document } = check(options, log);
  if (errors.length > 0) {
    process.stderr.write(rejected(errors));
    return 1;
  }
  const primary = new Primary({
    bootstrap,
    document,
    concurrency: options.concurrency,
    drainTimeMs: options.drainTimeMs,
    fileFlushIntervalMs: options.fileFlushIntervalMs,
    log,
    commandLineOptions: {
      config_path: options.configPath ?? '',
      log_level: options.logLevel,
      drain_time: `${options.drainTimeMs / 1000}s`,
      concurrency: options.concurrency,
      file_flush_interval: `${options.fileFlushIntervalMs / 1000}s`,
      service_cluster: options.serviceCluster ?? '',
    },
  });
  process.once('SIGTERM', () => void primary.stop());
  process.once('SIGINT', () => void primary.stop());
  // One reload at a time, in the order asked; installed before the workers start, as SIGHUP would end the process.
  let reloads = Promise.resolve();
  const onHangup = () => void (reloads = reloads.then(() => reload(options, log, primary)));
  process.on('SIGHUP', onHangup);
  try {
    await primary.start();
  } catch (err) {
    process.stderr.write(`portico: cannot serve: ${(err as Error).message}\n`);
    return 1;
  }
  let admin: AdminServer | undefined;
  const adminAddress = bootstrap.admin?.address?.socket_address;
  if (adminAddress) {
    admin = new AdminServer(primary);
    const bound = await admin.listen(adminAddress.address ?? '127.0.0.1', adminAddress.port_value ?? 0);
    log.info(`admin listening on ${bound.address}:${bound.port}`);
  }
  log.info(`portico is live with ${options.concurrency} worker${options.concurrency > 1 ? 's' : ''}`);
  await primary.stopped;
  process.off('SIGHUP', onHangup);
  await admin?.close();
  return 0;
}
