import { runEchoCommand } from '../echo/echo-server.js';
import { VERSION } from '../version.js';
import { applyCommand, deleteCommand, getCommand } from './client.js';
import { BOOTSTRAP_USAGE, bootstrapCommand } from './bootstrap.js';
import { ratelimitCommand } from './ratelimit.js';
import { runCommand, validateCommand } from './run.js';
import { startCommand } from './start.js';

const USAGE = `portico ${VERSION}: an Envoy-compatible API gateway

Usage:
  portico run -c FILE [options]        serve an Envoy v3 bootstrap (YAML or JSON)
  portico validate -c FILE [options]   check a bootstrap and print every problem; exit 1 if there is one
  portico start [options]              control plane, store, API (8888), proxy (8080) and admin (9901)
  portico start --data-plane-only --xds-server HOST:PORT [--node NAME]
                                       a data plane of a control plane elsewhere (docs/xds.md)
  portico bootstrap [options]          print the bootstrap of a data plane run from a control plane over xDS
  portico apply -f FILE [--dry-run]    create or update the resources of a YAML or JSON file, atomically
  portico get KIND [NAME] [-o json]    show Mappings or Modules (YAML by default)
  portico delete KIND NAME             delete a resource
  portico ratelimit -c FILE [--redis-url URL] [--grpc-port N] [--admin-port N]
                                       a rate limit service speaking Envoy's RLS protocol (docs/ratelimit.md)
  portico echo [--port N] [--host H] [--name NAME]
                                       a built-in upstream that echoes requests as JSON
  portico help | --help                this text
  portico version | --version          print the version

Options of run and validate:
  -c, --config-path FILE   the bootstrap file
      --config-yaml YAML   YAML merged over the file (lists append, objects merge), as in Envoy
  -l, --log-level LEVEL    trace, debug, info (default), warning, error, critical, off
      --drain-time-s N     on SIGTERM/SIGINT, seconds in-flight requests get to finish (default 5)
      --concurrency N      worker processes serving the listeners (default: the number of CPUs)
      --file-flush-interval-msec N
                           access log files are written when 64 KiB are queued or N ms after the first
                           queued line (default 10000, as Envoy); stdout/stderr logs every event-loop turn
      --mode MODE          serve (default) or validate: "portico run --mode validate" equals "portico validate"

Options of start (docs/control-plane.md):
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

${BOOTSTRAP_USAGE}
Options of apply, get and delete:
  -s, --server URL         the API (default http://127.0.0.1:8888, or PORTICO_SERVER)
      --api-token TOKEN    bearer token (or PORTICO_API_TOKEN)
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
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


main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (err: Error) => {
    process.stderr.write(`portico: ${err.message}\n`);
    process.exitCode = 1;
  },
);
