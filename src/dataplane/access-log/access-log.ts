/**
 * Envoy's access loggers `envoy.access_loggers.file`, `envoy.access_loggers.stdout` and
 * `envoy.access_loggers.stderr`: a filter, a format and a sink each, compiled once. The connection manager logs
 * each stream when it completes; a listener logs each connection when it closes.
 */
import type { Socket } from 'node:net';
import type { envoy } from '../../generated/envoy.js';
import type { ConfigError } from '../../config/errors.js';
import { typeNameFromUrl } from '../../config/extensions.js';
import { compileFormat } from '../http/header-formatter.js';
import { plainAddress } from '../http/forwarded.js';
import { compileJsonFormat, compileSubstitutionFormat } from '../http/substitution-format.js';
import type { Logger } from '../../util/logger.js';
import type { Runtime } from '../runtime/runtime.js';
import { newStreamInfo, type RequestHead, type StreamInfo } from '../stream-info.js';
import { compileStreamFilter, type StreamPredicate } from './filter.js';
import type { AccessLogSink, AccessLogSinks } from './sinks.js';

type AccessLogConfig = envoy.config.accesslog.v3.AccessLog;
type FileAccessLog = envoy.extensions.access_loggers.file.v3.FileAccessLog;
type StdoutAccessLog = envoy.extensions.access_loggers.stream.v3.StdoutAccessLog;
type SubstitutionFormatString = envoy.config.core.v3.SubstitutionFormatString;

/** Envoy's default access log format (`substitution_format_utility.cc`). */
export const DEFAULT_FORMAT =
  '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% ' +
  '%BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" ' +
  '"%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"\n';

export interface AccessLogger {
  filter: StreamPredicate | undefined;
  format: (info: StreamInfo) => string;
  sink: AccessLogSink;
  log: Logger;
}

/** What compiling access logs needs from the data plane. */
export interface AccessLogContext {
  runtime: Runtime;
  accessLogSinks: AccessLogSinks;
  log: Logger;
}

/** Compiles an `access_log` list; undefined when there is none, so callers skip logging with one check. */
export function compileAccessLogs(
  configs: readonly AccessLogConfig[] | undefined,
  path: string,
  errors: ConfigError[],
  context: AccessLogContext,
): readonly AccessLogger[] | undefined {
  if (configs === undefined || configs.length === 0) return undefined;
  const loggers: AccessLogger[] = [];
  configs.forEach((config, i) => {
    const logger = compileAccessLog(config, `${path}[${i}]`, errors, context);
    if (logger !== undefined) loggers.push(logger);
  });
  return loggers.length > 0 ? loggers : undefined;
}

function compileAccessLog(config: AccessLogConfig, path: string, errors: ConfigError[], context: AccessLogContext): AccessLogger | undefined {
  const filter = config.filter ? compileStreamFilter(config.filter, `${path}.filter`, errors, context.runtime) : undefined;
  const typed = config.typed_config;
  if (typed === undefined) {
    errors.push({ code: 'missing_required', path: `${path}.typed_config`, message: 'an access log needs a typed_config naming its logger' });
    return undefined;
  }
  const configPath = `${path}.typed_config`;
  const typeName = typeNameFromUrl(typed.type_url);
  switch (typeName) {
    case 'envoy.extensions.access_loggers.file.v3.FileAccessLog': {
      const file = typed.value as FileAccessLog;
      const sink = context.accessLogSinks.file(file.path ?? '', `${configPath}.path`);
      return { filter, format: compileFileFormat(file, configPath, errors), sink, log: context.log };
    }
    case 'envoy.extensions.access_loggers.stream.v3.StdoutAccessLog':
    case 'envoy.extensions.access_loggers.stream.v3.StderrAccessLog': {
      const stream = typed.value as StdoutAccessLog;
      const sink = typeName.endsWith('StdoutAccessLog') ? context.accessLogSinks.stdout() : context.accessLogSinks.stderr();
      return { filter, format: compileLogFormat(stream.log_format, `${configPath}.log_format`, errors), sink, log: context.log };
    }
    default:
      // The support check refuses other loggers before compilation; this keeps a direct caller honest.
      errors.push({ code: 'unsupported_extension', path, message: `unsupported access logger ${typeName}` });
      return undefined;
  }
}

/** FileAccessLog's format: `log_format`, or one of its deprecated forerunners, or the default. */
function compileFileFormat(config: FileAccessLog, path: string, errors: ConfigError[]): (info: StreamInfo) => string {
  if (config.format) return compileFormat(config.format, `${path}.format`, errors);
  // The deprecated `json_format` renders every value as a string; `typed_json_format` keeps types.
  if (config.json_format) return compileJsonFormat(config.json_format, `${path}.json_format`, errors, { typed: false, omitEmpty: false });
  if (config.typed_json_format) {
    return compileJsonFormat(config.typed_json_format, `${path}.typed_json_format`, errors, { typed: true, omitEmpty: false });
  }
  return compileLogFormat(config.log_format, `${path}.log_format`, errors);
}

function compileLogFormat(format: SubstitutionFormatString | undefined, path: string, errors: ConfigError[]): (info: StreamInfo) => string {
  if (format === undefined) return compileFormat(DEFAULT_FORMAT, path, errors);
  return compileSubstitutionFormat(format, path, errors).render;
}

/** Formats and writes a stream to every logger whose filter passes it. */
export function emitAccessLogs(loggers: readonly AccessLogger[], info: StreamInfo): void {
  for (let i = 0; i < loggers.length; i++) {
    const logger = loggers[i]!;
    try {
      if (logger.filter === undefined || logger.filter(info)) logger.sink.write(logger.format(info));
    } catch (err) {
      // A bug in a filter or an operator costs one line, never the process.
      logger.log.error(`bug while writing an access log line: ${(err as Error).stack ?? err}`);
    }
  }
}

/** A connection has no request: every request operator is missing (`-`), as in Envoy's listener logs. */
const NO_REQUEST: RequestHead = Object.freeze({ method: '', path: '', authority: '', scheme: '', headers: Object.freeze({}) });

/** The StreamInfo of a downstream connection (listener logs, requests the HTTP parser refused). */
export function connectionStreamInfo(socket: Socket, protocol: string): StreamInfo {
  const info = newStreamInfo(NO_REQUEST, 0);
  info.protocol = protocol;
  info.downstreamDirectRemoteAddress = info.downstreamRemoteAddress = plainAddress(socket.remoteAddress);
  info.downstreamDirectRemotePort = info.downstreamRemotePort = socket.remotePort ?? 0;
  info.downstreamLocalAddress = plainAddress(socket.localAddress);
  info.downstreamLocalPort = socket.localPort ?? 0;
  return info;
}
