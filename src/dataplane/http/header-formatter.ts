/**
 * Envoy's substitution format language (`%COMMAND(SUBCOMMAND):LENGTH%`), compiled once into literal pieces and
 * operator functions. Used for `%...%` in `*_headers_to_add` (missing values → `""`), local reply bodies and
 * access logs (missing values → `-`). Operators live in a registry (`registerFormatOperator`) so that other modules can add
 * their own (DYNAMIC_METADATA, FILTER_STATE, ...).
 *
 * Syntax as Envoy's parser: `%%` is a literal `%`; a command is `[A-Z0-9_]+`, its argument cannot contain `)`,
 * LENGTH is decimal; each operator declares whether it takes an argument and whether LENGTH is allowed, and a
 * wrong use is a config error, as in Envoy (`PROTOCOL does not take any parameters or length`).
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { ConfigError } from '../../config/errors.js';
import { formatResponseFlags } from '../response-flags.js';
import type { StreamInfo } from '../stream-info.js';
import { headerValue } from '../matching/header-matcher.js';

/** Formats one stream. `constant` is set when the output never depends on the stream. */
export type Formatter = ((info: StreamInfo) => string) & { readonly constant?: string };

/** What one operator yields for a stream; undefined is "no value" (printed as the missing text). */
export type FormatValueFn = (info: StreamInfo) => string | undefined;

export interface FormatOptions {
  /** Text for a missing value: `-` (access logs, the default) or `""` (header values). */
  missing?: '-' | '';
}

export interface OperatorContext {
  command: string;
  /** The `(...)` argument, `''` when absent. */
  arg: string;
  /** The `:N` length, when given (truncation is applied by the caller, not the operator). */
  maxLength: number | undefined;
  path: string;
  errors: ConfigError[];
  options: Required<FormatOptions>;
}

export interface FormatOperator {
  /** `none`: no argument allowed; `optional`; `required`. */
  params: 'none' | 'optional' | 'required';
  /** Whether `:N` is allowed (Envoy's LENGTH_ALLOWED). */
  length?: boolean;
  /** The value is an integer, written as a JSON number in typed (`json_format`) output (no `:N` then). */
  numeric?: boolean;
  /**
   * Builds the value function. Return `{ constant }` for a value known at config time (undefined = missing), or
   * undefined after pushing an error.
   */
  create(ctx: OperatorContext): FormatValueFn | { constant: string | undefined } | undefined;
}

const operators = new Map<string, FormatOperator>();

/** Registers (or replaces) a `%COMMAND%` operator. */
export function registerFormatOperator(command: string, op: FormatOperator): void {
  operators.set(command, op);
}

function constantFormatter(text: string): Formatter {
  const f = (() => text) as (info: StreamInfo) => string;
  return Object.assign(f, { constant: text });
}

const COMMAND = /^%([A-Z0-9_]+)(?:\(([^)]*)\))?(?::([0-9]+))?%/;

/**
 * Compiles a format string. Problems are pushed into `errors` (code `invalid_value`, at `path`) and the
 * formatter returned prints the template's literal text only.
 */
export function compileFormat(
  template: string,
  path: string,
  errors: ConfigError[],
  options: FormatOptions = {},
): Formatter {
  const opts: Required<FormatOptions> = { missing: options.missing ?? '-' };
  const missing = opts.missing;
  const pieces: Array<string | FormatValueFn> = [];
  let literal = '';
  const problems = reporter(template, path, errors);

  for (let pos = 0; pos < template.length; ) {
    const c = template[pos];
    if (c !== '%') {
      const next = template.indexOf('%', pos);
      const stop = next < 0 ? template.length : next;
      literal += template.substring(pos, stop);
      pos = stop;
      continue;
    }
    if (template[pos + 1] === '%') {
      literal += '%';
      pos += 2;
      continue;
    }
    const m = COMMAND.exec(template.substring(pos));
    if (m === null) {
      problems.fail(`no valid command operator at position ${pos} (an unterminated '%'? write '%%' for a literal '%')`);
      break;
    }
    pos += m[0].length;
    const created = instantiate(m, path, errors, opts, problems.fail);
    if (created === undefined) continue;
    if ('constant' in created) {
      literal += created.constant ?? missing;
      continue;
    }
    if (literal) pieces.push(literal);
    literal = '';
    pieces.push(created.fn);
  }
  if (literal) pieces.push(literal);
  if (problems.failed) return constantFormatter(pieces.filter((p) => typeof p === 'string').join(''));
  return assemble(pieces, missing);
}

/** Reports problems of one template as `format '<template>': <message>`, remembering that there was one. */
function reporter(template: string, path: string, errors: ConfigError[]): { failed: boolean; fail: (message?: string) => void } {
  const r = {
    failed: false,
    fail(message?: string): void {
      if (message !== undefined) errors.push({ code: 'invalid_value', path, message: `format '${template}': ${message}` });
      r.failed = true;
    },
  };
  return r;
}

/** An operator's value: a function of the stream, or a constant known at config time (undefined = missing). */
export type OperatorValue = { fn: FormatValueFn; numeric: boolean } | { constant: string | undefined };

/** Builds the operator a COMMAND match names, truncation included; undefined after reporting a problem. */
function instantiate(
  m: RegExpExecArray,
  path: string,
  errors: ConfigError[],
  options: Required<FormatOptions>,
  /** Reports a problem (or, without a message, notes one already reported). */
  fail: (message?: string) => void,
): OperatorValue | undefined {
  const command = m[1]!;
  const hasArg = m[2] !== undefined && m[2] !== '';
  const arg = m[2] ?? '';
  const maxLength = m[3] === undefined ? undefined : Number(m[3]);
  const op = operators.get(command);
  if (op === undefined) {
    fail(`unknown command operator %${command}%`);
    return undefined;
  }
  if (op.params === 'none' && (hasArg || (maxLength !== undefined && !op.length))) {
    fail(`${command} does not take any parameters or length`);
    return undefined;
  }
  if (op.params === 'required' && !hasArg) {
    fail(`${command} requires parameters`);
    return undefined;
  }
  if (maxLength !== undefined && !op.length) {
    fail(`${command} does not allow length to be specified`);
    return undefined;
  }
  const before = errors.length;
  const created = op.create({ command, arg, maxLength, path, errors, options });
  if (created === undefined || errors.length > before) {
    fail(); // the operator reported the problem
    return undefined;
  }
  if (typeof created !== 'function') {
    const v = created.constant;
    return { constant: v === undefined ? undefined : truncate(v, maxLength) };
  }
  return { fn: maxLength === undefined ? created : truncated(created, maxLength), numeric: op.numeric === true };
}

/**
 * For typed (`json_format`) output, where a value that is exactly one operator keeps its type: the operator's
 * value, or undefined when `template` is not a single operator (then it is text, compiled with compileFormat).
 * Problems are reported as compileFormat reports them.
 */
export function compileTypedValue(template: string, path: string, errors: ConfigError[]): OperatorValue | undefined {
  const m = COMMAND.exec(template);
  if (m === null || m[0].length !== template.length) return undefined;
  const created = instantiate(m, path, errors, { missing: '-' }, reporter(template, path, errors).fail);
  return created ?? { constant: undefined };
}

function truncate(v: string, max: number | undefined): string {
  return max !== undefined && v.length > max ? v.substring(0, max) : v;
}

function truncated(fn: FormatValueFn, max: number): FormatValueFn {
  return (info) => {
    const v = fn(info);
    return v !== undefined && v.length > max ? v.substring(0, max) : v;
  };
}

function assemble(pieces: Array<string | FormatValueFn>, missing: string): Formatter {
  if (pieces.length === 0) return constantFormatter('');
  if (pieces.length === 1) {
    const p = pieces[0]!;
    if (typeof p === 'string') return constantFormatter(p);
    return (info) => {
      const v = p(info);
      return v === undefined ? missing : v;
    };
  }
  const n = pieces.length;
  return (info) => {
    let out = '';
    for (let i = 0; i < n; i++) {
      const p = pieces[i]!;
      if (typeof p === 'string') {
        out += p;
      } else {
        const v = p(info);
        out += v === undefined ? missing : v;
      }
    }
    return out;
  };
}

// ---------------------------------------------------------------------------------------------------------
// Built-in operators.

const WHITESPACE = /[ \t\f\v\n\r]/g;
const SPACES = / /g;
const TRAILING_ZEROS = /0+$/;
const simple = (fn: FormatValueFn): FormatOperator => ({ params: 'none', create: () => fn });
const numeric = (fn: FormatValueFn): FormatOperator => ({ params: 'none', numeric: true, create: () => fn });
const nonEmpty = (v: string): string | undefined => (v === '' ? undefined : v);
const integer = (n: number): string => String(Math.trunc(n));

function withPort(ip: string, port: number): string | undefined {
  if (ip === '') return undefined;
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** A duration from `from` to the `end` marker, in whole ms; undefined while the end marker is 0. */
function duration(end: number, from: number): string | undefined {
  if (end === 0) return undefined;
  return integer(Math.max(0, end - from));
}

function firstValue(v: number | string | readonly string[] | undefined): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  return v[0];
}

/** `%REQ(a?b)%`-style argument: lower-cased main and alternative header names. */
function parseHeaderArg(ctx: OperatorContext): [string, string | undefined] | undefined {
  const parts = ctx.arg.split('?');
  if (parts.length > 2) {
    ctx.errors.push({
      code: 'invalid_value',
      path: ctx.path,
      message: `${ctx.command}(${ctx.arg}): more than 1 alternative header specified`,
    });
    return undefined;
  }
  if (parts.some((p) => p === '')) {
    ctx.errors.push({ code: 'invalid_value', path: ctx.path, message: `${ctx.command}(${ctx.arg}): empty header name` });
    return undefined;
  }
  return [parts[0]!.toLowerCase(), parts[1]?.toLowerCase()];
}

/** `%REQ(a?b)%`-style operators: the value of header `a`, else of `b`, read by `get`. */
function headerOperator(get: (info: StreamInfo, name: string) => string | undefined): FormatOperator {
  return {
    params: 'required',
    length: true,
    create(ctx) {
      const names = parseHeaderArg(ctx);
      if (names === undefined) return undefined;
      const [main, alt] = names;
      if (alt === undefined) return (info) => get(info, main);
      return (info) => get(info, main) ?? get(info, alt);
    },
  };
}

function responseHeader(info: StreamInfo, name: string): string | undefined {
  if (name === ':status') return info.responseCode === 0 ? undefined : String(info.responseCode);
  const headers = info.responseHeaders;
  return headers === undefined ? undefined : firstValue(headers[name]);
}

// The long names are Envoy 1.3x's spelling of the same operators.
const requestHeader = headerOperator((info, name) => headerValue(info.request, name));
const responseHeaderOp = headerOperator(responseHeader);
const responseTrailer = headerOperator((info, name) => info.responseTrailers?.[name]);
registerFormatOperator('REQ', requestHeader);
registerFormatOperator('REQUEST_HEADER', requestHeader);
registerFormatOperator('RESP', responseHeaderOp);
registerFormatOperator('RESPONSE_HEADER', responseHeaderOp);
registerFormatOperator('TRAILER', responseTrailer);
registerFormatOperator('RESPONSE_TRAILER', responseTrailer);

registerFormatOperator('START_TIME', {
  params: 'optional',
  create(ctx) {
    if (ctx.arg === '') {
      let lastTime = NaN;
      let lastText = '';
      return (info) => {
        if (info.startTime !== lastTime) {
          lastTime = info.startTime;
          lastText = new Date(info.startTime).toISOString();
        }
        return lastText;
      };
    }
    return compileTimeFormat(ctx);
  },
});

registerFormatOperator('PROTOCOL', simple((info) => nonEmpty(info.protocol)));
registerFormatOperator('RESPONSE_CODE', numeric((info) => integer(info.responseCode)));
registerFormatOperator('RESPONSE_CODE_DETAILS', {
  params: 'optional',
  create(ctx) {
    if (ctx.arg === 'ALLOW_WHITESPACES') return (info) => nonEmpty(info.responseCodeDetails);
    return (info) => nonEmpty(info.responseCodeDetails.replace(WHITESPACE, '_'));
  },
});
registerFormatOperator('RESPONSE_FLAGS', simple((info) => formatResponseFlags(info.responseFlags)));
registerFormatOperator('RESPONSE_FLAGS_LONG', simple((info) => formatResponseFlags(info.responseFlags, true)));
registerFormatOperator('BYTES_RECEIVED', numeric((info) => integer(info.bytesReceived)));
registerFormatOperator('BYTES_SENT', numeric((info) => integer(info.bytesSent)));
registerFormatOperator('DURATION', numeric((info) => duration(info.lastResponseByteMonotonic, info.startMonotonic)));
registerFormatOperator('REQUEST_DURATION', numeric((info) => duration(info.lastRequestByteMonotonic, info.startMonotonic)));
registerFormatOperator('RESPONSE_DURATION', numeric((info) => duration(info.firstResponseByteMonotonic, info.startMonotonic)));
registerFormatOperator(
  'RESPONSE_TX_DURATION',
  numeric((info) =>
    info.firstResponseByteMonotonic === 0 ? undefined : duration(info.lastResponseByteMonotonic, info.firstResponseByteMonotonic),
  ),
);
registerFormatOperator('UPSTREAM_HOST', simple((info) => nonEmpty(info.upstreamHost)));
registerFormatOperator('UPSTREAM_REMOTE_ADDRESS', simple((info) => nonEmpty(info.upstreamHost)));
registerFormatOperator('UPSTREAM_CLUSTER', simple((info) => nonEmpty(info.upstreamCluster)));
registerFormatOperator('UPSTREAM_LOCAL_ADDRESS', simple((info) => nonEmpty(info.upstreamLocalAddress)));
registerFormatOperator(
  'UPSTREAM_TRANSPORT_FAILURE_REASON',
  simple((info) => nonEmpty(info.upstreamTransportFailureReason.replace(SPACES, '_'))),
);
registerFormatOperator('UPSTREAM_REQUEST_ATTEMPT_COUNT', numeric((info) => integer(info.upstreamRequestAttemptCount)));
// `<NAME>_ADDRESS` (ip:port), `<NAME>_ADDRESS_WITHOUT_PORT` and `<NAME>_PORT` for each downstream address.
const DOWNSTREAM_ADDRESSES = [
  ['DOWNSTREAM_REMOTE', 'downstreamRemoteAddress', 'downstreamRemotePort'],
  ['DOWNSTREAM_DIRECT_REMOTE', 'downstreamDirectRemoteAddress', 'downstreamDirectRemotePort'],
  ['DOWNSTREAM_LOCAL', 'downstreamLocalAddress', 'downstreamLocalPort'],
] as const;
for (const [name, address, port] of DOWNSTREAM_ADDRESSES) {
  registerFormatOperator(`${name}_ADDRESS`, simple((info) => withPort(info[address], info[port])));
  registerFormatOperator(`${name}_ADDRESS_WITHOUT_PORT`, simple((info) => nonEmpty(info[address])));
  registerFormatOperator(`${name}_PORT`, numeric((info) => (info[address] === '' ? undefined : integer(info[port]))));
}
registerFormatOperator('REQUESTED_SERVER_NAME', simple((info) => nonEmpty(info.requestedServerName)));
registerFormatOperator('ROUTE_NAME', simple((info) => nonEmpty(info.routeName)));
// The body of the local reply being rendered (`local_reply_config` formats). Envoy's LocalReplyBodyFormatter
// always yields a value: an empty body is `""`, never the missing-value text.
registerFormatOperator('LOCAL_REPLY_BODY', simple((info) => info.localReplyBody));
registerFormatOperator('CONNECTION_ID', numeric((info) => integer(info.connectionId)));
registerFormatOperator('STREAM_ID', simple((info) => nonEmpty(info.requestId)));
// A fresh UUID each time it is formatted, as Envoy's UNIQUE_ID.
registerFormatOperator('UNIQUE_ID', simple(() => randomUUID()));
registerFormatOperator('HOSTNAME', {
  params: 'none',
  create: () => ({ constant: nonEmpty(hostname()) }),
});
registerFormatOperator('ENVIRONMENT', {
  params: 'required',
  length: true,
  // Read once, at config time, as Envoy does.
  create: (ctx) => ({ constant: process.env[ctx.arg] }),
});

// ---------------------------------------------------------------------------------------------------------
// START_TIME(format): absl::FormatTime-style specifiers, in UTC, plus Envoy's %s and %f / %1f..%9f.

interface TimeParts {
  ms: number;
  date: Date;
}
type TimePiece = string | ((t: TimeParts) => string);

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = [
  'January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December',
];
const pad = (n: number, width = 2, fill = '0'): string => String(n).padStart(width, fill);

/** Nanoseconds within the second, as 9 digits. */
function nanos(ms: number): string {
  const withinSecond = ms - Math.floor(ms / 1000) * 1000;
  return pad(Math.floor(withinSecond * 1e6), 9);
}

function dayOfYear(d: Date): number {
  return Math.floor((d.getTime() - Date.UTC(d.getUTCFullYear(), 0, 1)) / 86400000) + 1;
}

const TIME_SPECIFIERS: Record<string, (t: TimeParts) => string> = {
  Y: (t) => String(t.date.getUTCFullYear()),
  y: (t) => pad(t.date.getUTCFullYear() % 100),
  m: (t) => pad(t.date.getUTCMonth() + 1),
  d: (t) => pad(t.date.getUTCDate()),
  e: (t) => pad(t.date.getUTCDate(), 2, ' '),
  j: (t) => pad(dayOfYear(t.date), 3),
  H: (t) => pad(t.date.getUTCHours()),
  I: (t) => pad(t.date.getUTCHours() % 12 || 12),
  M: (t) => pad(t.date.getUTCMinutes()),
  S: (t) => pad(t.date.getUTCSeconds()),
  p: (t) => (t.date.getUTCHours() < 12 ? 'AM' : 'PM'),
  s: (t) => String(Math.floor(t.ms / 1000)),
  z: () => '+0000',
  Z: () => 'UTC',
  a: (t) => DAYS[t.date.getUTCDay()]!.slice(0, 3),
  A: (t) => DAYS[t.date.getUTCDay()]!,
  b: (t) => MONTHS[t.date.getUTCMonth()]!.slice(0, 3),
  h: (t) => MONTHS[t.date.getUTCMonth()]!.slice(0, 3),
  B: (t) => MONTHS[t.date.getUTCMonth()]!,
  F: (t) => `${t.date.getUTCFullYear()}-${pad(t.date.getUTCMonth() + 1)}-${pad(t.date.getUTCDate())}`,
  T: (t) => `${pad(t.date.getUTCHours())}:${pad(t.date.getUTCMinutes())}:${pad(t.date.getUTCSeconds())}`,
  R: (t) => `${pad(t.date.getUTCHours())}:${pad(t.date.getUTCMinutes())}`,
  D: (t) => `${pad(t.date.getUTCMonth() + 1)}/${pad(t.date.getUTCDate())}/${pad(t.date.getUTCFullYear() % 100)}`,
  f: (t) => nanos(t.ms),
  n: () => '\n',
  t: () => '\t',
  '%': () => '%',
};

function compileTimeFormat(ctx: OperatorContext): FormatValueFn | undefined {
  const fmt = ctx.arg;
  const pieces: TimePiece[] = [];
  let literal = '';
  for (let k = 0; k < fmt.length; k++) {
    const c = fmt[k]!;
    if (c !== '%') {
      literal += c;
      continue;
    }
    const rest = fmt.substring(k + 1);
    let piece: ((t: TimeParts) => string) | undefined;
    let used = 1;
    let m: RegExpExecArray | null;
    if ((m = /^([1-9])f/.exec(rest))) {
      const digits = Number(m[1]);
      piece = (t) => nanos(t.ms).substring(0, digits);
      used = 2;
    } else if ((m = /^E([1-9])S/.exec(rest))) {
      const digits = Number(m[1]);
      piece = (t) => `${pad(t.date.getUTCSeconds())}.${nanos(t.ms).substring(0, digits)}`;
      used = 3;
    } else if (rest.startsWith('E*S')) {
      piece = (t) => `${pad(t.date.getUTCSeconds())}.${nanos(t.ms).replace(TRAILING_ZEROS, '') || '0'}`;
      used = 3;
    } else if (rest.startsWith('Ez')) {
      piece = () => '+00:00';
      used = 2;
    } else {
      piece = TIME_SPECIFIERS[rest[0] ?? ''];
    }
    if (piece === undefined) {
      ctx.errors.push({
        code: 'invalid_value',
        path: ctx.path,
        message: `START_TIME(${fmt}): unsupported time format specifier '%${rest[0] ?? ''}'`,
      });
      return undefined;
    }
    if (literal) pieces.push(literal);
    literal = '';
    pieces.push(piece);
    k += used;
  }
  if (literal) pieces.push(literal);
  let lastTime = NaN;
  let lastText = '';
  return (info) => {
    if (info.startTime !== lastTime) {
      const parts: TimeParts = { ms: info.startTime, date: new Date(info.startTime) };
      let out = '';
      for (const p of pieces) out += typeof p === 'string' ? p : p(parts);
      lastTime = info.startTime;
      lastText = out;
    }
    return lastText;
  };
}
