/** `portico ratelimit`: the rate limit service (src/ratelimit/) until SIGTERM or SIGINT. */
import { parseArgs } from 'node:util';
import { RateLimitService } from '../ratelimit/service.js';
import { createLogger, isLogLevel } from '../util/logger.js';
import { number } from './start.js';

/** What `portico ratelimit --help` prints below its usage line. */
export const RATELIMIT_HELP = `A rate limit service speaking Envoy's RLS protocol (envoy.service.ratelimit.v3.RateLimitService) over gRPC,
configured in envoyproxy/ratelimit's format (a YAML file, or a directory of them, reloaded on change).

Options:
  -c, --config FILE     the configuration file or directory
      --redis-url URL   count in Redis (shared by every service on it; or PORTICO_REDIS_URL); in memory without
      --host H          address of both ports (default 127.0.0.1)
      --grpc-port N     the RLS port (default 8081)
      --admin-port N    /stats, /stats/prometheus and /healthcheck (default 6070)
  -l, --log-level LEVEL trace, debug, info (default), warning, error, critical, off
  -h, --help            this text
`;

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  'redis-url': { type: 'string' },
  host: { type: 'string', default: '127.0.0.1' },
  'grpc-port': { type: 'string', default: '8081' },
  'admin-port': { type: 'string', default: '6070' },
  'log-level': { type: 'string', short: 'l', default: 'info' },
} as const;

export async function ratelimitCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false });
  if (values.config === undefined) throw new Error(`ratelimit needs -c FILE\n\n${RATELIMIT_HELP}`);
  const logLevel = values['log-level'];
  if (!isLogLevel(logLevel)) throw new Error(`invalid --log-level "${logLevel}"`);
  const log = createLogger(logLevel);
  const service = await RateLimitService.start({
    configPath: values.config,
    redisUrl: values['redis-url'] ?? process.env.PORTICO_REDIS_URL,
    host: values.host,
    grpcPort: number(values, 'grpc-port', 0, 65535),
    adminPort: number(values, 'admin-port', 0, 65535),
    log,
  });
  log.info(`rate limit service: RLS on ${values.host}:${service.grpcPort}, admin on ${values.host}:${service.adminPort}, counting ${values['redis-url'] ?? process.env.PORTICO_REDIS_URL ? 'in Redis' : 'in memory'}`);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      void service.close().then(resolve);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  return 0;
}
