import { parseArgs } from 'node:util';
import { AdminServer } from '../admin/admin-server.js';
import { formatConfigErrors } from '../config/errors.js';
import { loadBootstrap } from '../config/load.js';
import { compileBootstrap, DataPlane } from '../dataplane/data-plane.js';
import { createLogger, isLogLevel, type LogLevel } from '../util/logger.js';

const OPTIONS = {
  'config-path': { type: 'string', short: 'c' },
  'config-yaml': { type: 'string' },
  'log-level': { type: 'string', short: 'l', default: 'info' },
  'drain-time-s': { type: 'string', default: '5' },
  mode: { type: 'string', default: 'serve' },
} as const;

interface RunOptions {
  configPath: string | undefined;
  configYaml: string | undefined;
  logLevel: LogLevel;
  drainTimeMs: number;
  mode: 'serve' | 'validate';
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
  return { configPath: values['config-path'], configYaml: values['config-yaml'], logLevel, drainTimeMs: drain * 1000, mode };
}

/** `portico validate`: decode, check and compile without binding anything; print every problem. */
export async function validateCommand(argv: string[]): Promise<number> {
  return validate(parseRunOptions(argv));
}

function validate(options: RunOptions): number {
  const log = createLogger(options.logLevel);
  const { bootstrap, errors } = loadBootstrap(options);
  if (errors.length === 0) compileBootstrap(bootstrap, log, errors);
  if (errors.length > 0) {
    process.stderr.write(`configuration rejected, ${errors.length} problem${errors.length > 1 ? 's' : ''}:\n${formatConfigErrors(errors)}\n`);
    return 1;
  }
  process.stdout.write(`configuration '${options.configPath ?? '--config-yaml'}' OK\n`);
  return 0;
}

/** `portico run`: serve a bootstrap until SIGTERM, SIGINT or `/quitquitquit`. */
export async function runCommand(argv: string[]): Promise<number> {
  const options = parseRunOptions(argv);
  if (options.mode === 'validate') return validate(options);
  const log = createLogger(options.logLevel);
  const { bootstrap, errors } = loadBootstrap(options);
  if (errors.length > 0) {
    process.stderr.write(`configuration rejected, ${errors.length} problem${errors.length > 1 ? 's' : ''}:\n${formatConfigErrors(errors)}\n`);
    return 1;
  }
  const startTime = Date.now();
  let state: 'LIVE' | 'DRAINING' | 'INITIALIZING' = 'INITIALIZING';
  const plane = await DataPlane.start(bootstrap, log);
  state = 'LIVE';

  let admin: AdminServer | undefined;
  let stopping: Promise<void> | undefined;
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((resolve) => (resolveStopped = resolve));
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      state = 'DRAINING';
      log.info('shutting down');
      await Promise.all([plane.close(options.drainTimeMs), admin?.close()]);
      resolveStopped();
    })());
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);

  const adminAddress = bootstrap.admin?.address?.socket_address;
  if (adminAddress) {
    admin = new AdminServer({
      state: () => state,
      startTime,
      commandLineOptions: { config_path: options.configPath ?? '', log_level: options.logLevel, drain_time: `${options.drainTimeMs / 1000}s` },
      node: (bootstrap.node ?? {}) as Record<string, unknown>,
      bootstrap,
      configLoadedAt: new Date(startTime).toISOString(),
      quit: () => void stop(),
    });
    const bound = await admin.listen(adminAddress.address ?? '127.0.0.1', adminAddress.port_value ?? 0);
    log.info(`admin listening on ${bound.address}:${bound.port}`);
  }
  log.info('portico is live');
  await stopped;
  return 0;
}
