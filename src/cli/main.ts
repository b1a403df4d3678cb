import { ECHO_OPTIONS, runEchoCommand } from '../echo/echo-server.js';
import { VERSION } from '../version.js';
import { applyCommand, deleteCommand, getCommand } from './client.js';
import { BOOTSTRAP_USAGE, bootstrapCommand } from './bootstrap.js';
import { RATELIMIT_HELP, ratelimitCommand } from './ratelimit.js';
import { runCommand, validateCommand } from './run.js';
import { startCommand } from './start.js';

const RUN_OPTIONS = `Options of run and validate:
  -c, --config-path FILE   the bootstrap file
      --config-yaml YAML   YAML merged over the file (lists append, objects merge), as in Envoy
  -l, --log-level LEVEL    trace, debug, info (default), warning, error, critical, off
      --drain-time-s N     on SIGTERM/SIGINT, seconds in-flight requests get to finish (default 5)
      --concurrency N      worker processes serving the listeners (default: the number of CPUs)
      --file-flush-interval-msec N
                           access log files are written when 64 KiB are queued or N ms after the first
                           queued line (default 10000, as Envoy); stdout/stderr logs every event-loop turn
      --service-cluster NAME
                           the local service cluster, overriding the bootstrap's node.cluster
      --mode MODE          serve (default) or validate: "portico run --mode validate" equals "portico validate"
`;

const START_OPTIONS = `Options of start (docs/control-plane.md):
      --data-dir DIR           embedded store directory (default ./.portico)
      --database-url URL       PostgreSQL instead of the embedded store (or PORTICO_DATABASE_URL)
      --proxy-host H, --proxy-port N    HTTP listener without Listener resources (default 0.0.0.0:8080)
      --https-port N           HTTPS listener of Hosts with certificates, without Listener resources (default 8443)
      --api-host H, --api-port N        API (default 127.0.0.1:8888)
      --admin-host H, --admin-port N    Envoy admin (default 127.0.0.1:9901)
      --api-token TOKEN        bearer token for mutating API calls (or PORTICO_API_TOKEN)
      --max-body-bytes N       largest API request body (default 8388608)
      --resync-interval-s N    how often to re-read the store as a safety net for NOTIFY (default 5)
      --drain-time-s N         how long old connections get after a change or on shutdown (default 5)
      --redis-url URL          the rate limit service counts in Redis (or PORTICO_REDIS_URL); in memory without
      --ratelimit-port N       the rate limit service's gRPC port on 127.0.0.1 (default 0: any free one)
      --xds-host H, --xds-port N        xDS server for data planes (default 127.0.0.1:18000)
      --data-plane-only        no control plane: a data plane of the xDS server --xds-server HOST:PORT, as
                               node --node NAME (default: the host name); with --proxy-port, on that port
  -l, --log-level LEVEL
`;

const CLIENT_OPTIONS = `Options of apply, get and delete:
  -s, --server URL         the API (default http://127.0.0.1:8888, or PORTICO_SERVER)
      --api-token TOKEN    bearer token (or PORTICO_API_TOKEN)
`;

/** Each command's line in the overview, and what `portico COMMAND --help` prints below it. */
const COMMANDS: Record<string, { line: string; options: string }> = {
  run: { line: 'portico run -c FILE [options]        serve an Envoy v3 bootstrap (YAML or JSON)', options: RUN_OPTIONS },
  validate: {
    line: 'portico validate -c FILE [options]   check a bootstrap and print every problem; exit 1 if there is one',
    options: RUN_OPTIONS,
  },
  start: { line: 'portico start [options]              control plane, store, API (8888), xDS (18000), proxy (8080), admin (9901)', options: START_OPTIONS },
  bootstrap: {
    line: 'portico bootstrap [options]          print the bootstrap of a data plane of portico start, over xDS (docs/xds.md)',
    options: BOOTSTRAP_USAGE,
  },
  apply: {
    line: 'portico apply -f FILE [--dry-run]    create or update the resources of a YAML or JSON file, atomically',
    options: `${CLIENT_OPTIONS}  -f, --filename FILE      a file of resources, - for standard input (may be repeated)\n      --dry-run            check and show the changes without making them\n`,
  },
  get: {
    line: 'portico get KIND [NAME] [-o json]    show Mappings or Modules (YAML by default)',
    options: `${CLIENT_OPTIONS}  -o, --output FORMAT      yaml (default) or json\n`,
  },
  delete: { line: 'portico delete KIND NAME             delete a resource', options: CLIENT_OPTIONS },
  ratelimit: {
    line: 'portico ratelimit -c FILE [--redis-url URL] [--grpc-port N] [--admin-port N]\n                                       a rate limit service speaking Envoy\'s RLS protocol (docs/ratelimit.md)',
    options: RATELIMIT_HELP,
  },
  echo: {
    line: 'portico echo [--port N] [--host H] [--name NAME]\n                                       a built-in upstream that echoes requests as JSON',
    options: ECHO_OPTIONS,
  },
};

const USAGE = `portico ${VERSION}: an Envoy-compatible API gateway

Usage:
${Object.values(COMMANDS)
  .map((c) => `  ${c.line}\n`)
  .join('')}  portico help | --help                this text; portico COMMAND --help: that command's options
  portico version | --version          print the version

${RUN_OPTIONS}
${START_OPTIONS}
${BOOTSTRAP_USAGE}
${CLIENT_OPTIONS}`;

/** `-h` or `--help` among a command's arguments (before a `--` that ends the options). */
function asksForHelp(args: string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const help = command !== undefined && Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (help && asksForHelp(rest)) {
    process.stdout.write(`Usage: ${help.line}\n\n${help.options}`);
    return 0;
  }
  switch (command) {
    case 'run':
      return runCommand(rest);
    case 'validate':
      return validateCommand(rest);
    case 'start':
      return startCommand(rest);
    case 'bootstrap':
      return bootstrapCommand(rest);
    case 'apply':
      return applyCommand(rest);
    case 'get':
      return getCommand(rest);
    case 'delete':
      return deleteCommand(rest);
    case 'ratelimit':
      return ratelimitCommand(rest);
    case 'echo':
      await runEchoCommand(rest);
      return 0;
    case 'version':
    case '--version':
      process.stdout.write(`${VERSION}\n`);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 1 : 0;
    default:
      process.stderr.write(`portico: unknown command "${command}"\n\n${USAGE}`);
      return 1;
  }
}


const command = process.argv[2];
main(process.argv.slice(2)).then(
  (code) => {
    // The servers have shut down in order when their command returns: what may still hold the event loop (a
    // gRPC channel's reconnect, a socket in TIME_WAIT handling) must not keep the process.
    if (command === 'run' || command === 'start') process.exit(code);
    if (code !== 0) process.exitCode = code;
  },
  (err: Error) => {
    process.stderr.write(`portico: ${err.message}\n`);
    process.exitCode = 1;
  },
);
