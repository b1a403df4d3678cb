/** Envoy's log levels, in order. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warning', 'error', 'critical', 'off'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Logger {
  level: LogLevel;
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** A line-per-message logger on stderr: `[2024-01-01T12:00:00.000Z][info] message`. */
export function createLogger(level: LogLevel = 'info', write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const logger: Logger = {
    level,
    debug: (m) => emit('debug', m),
    info: (m) => emit('info', m),
    warn: (m) => emit('warning', m),
    error: (m) => emit('error', m),
  };
  function emit(messageLevel: LogLevel, message: string): void {
    if (LOG_LEVELS.indexOf(messageLevel) < LOG_LEVELS.indexOf(logger.level)) return;
    write(`[${new Date().toISOString()}][${messageLevel}] ${message}\n`);
  }
  return logger;
}

export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}
