import { runEchoCommand } from '../echo/echo-server.js';
import { VERSION } from '../version.js';
import { runCommand, validateCommand } from './run.js';
import { startCommand } from './start.js';

const USAGE = `portico ${VERSION}: an Envoy-compatible API gateway

Usage:
  portico run -c FILE [options]        serve an Envoy v3 bootstrap (YAML or JSON)
  portico validate -c FILE [options]   check a bootstrap and print every problem; exit 1 if there is one
  portico echo [--port N] [--host H] [--name NAME]
                                       a built-in upstream that echoes requests as JSON
  portico help | --help                this text
  portico version | --version          print the version

Options of run and validate:
  -c, --config-path FILE   the bootstrap file
      --config-yaml YAML   YAML merged over the file (lists append, objects merge), as in Envoy
  -l, --log-level LEVEL    trace, debug, info (default), warning, error, critical, off
      --drain-time-s N     on SIGTERM/SIGINT, seconds in-flight requests get to finish (default 5)
      --mode MODE          serve (default) or validate: "portico run --mode validate" equals "portico validate"
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
