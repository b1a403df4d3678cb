/**
 * The proto3-JSON decoder every Portico configuration passes through: JSON (usually parsed from YAML) in,
 * a fresh plain object with proto field names out, following Envoy's rules (both key spellings, enums by
 * name case-insensitively, Durations in milliseconds, Any with `@type`, TypedStruct, validate.rules).
 * Every problem found is appended to `errors` with the path of the offending field; decoding never stops at
 * the first one.
 */
import { childPath, type ConfigError, type ConfigErrorCode } from '../errors.js';
import type { AnyMessage } from '../../generated/envoy.js';
import {
  getCompiledEnum,
  getCompiledMessage,
  wellKnownKind,
  wrappedScalarType,
  type CompiledField,
  type CompiledMessage,
  type WellKnownKind,
} from './schema.js';

export interface DecodeOptions {
  /** Skip keys that are not fields of their message instead of reporting `unknown_field`. */
  ignoreUnknownFields?: boolean;
}

interface Ctx {
  errors: ConfigError[];
  ignoreUnknown: boolean;
}

const TYPE_URL_PREFIX = 'type.googleapis.com/';
const TYPED_STRUCT_TYPES = new Set(['xds.type.v3.TypedStruct', 'udpa.type.v1.TypedStruct']);
const DURATION_TYPE = 'google.protobuf.Duration';
const MAX_DURATION_SECONDS = 315576000000;
const DURATION_RE = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/;
const TIMESTAMP_RE = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-](\d{2}):(\d{2}))$/;
const INT_RE = /^-?\d+$/;
const FLOAT_RE = /^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/;
const BASE64_RE = /^[A-Za-z0-9+/\-_]*={0,2}$/;
const MAX_FLOAT = 3.4028234663852886e38;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const MAX_LISTED_ENUM_VALUES = 16;

/** Full message name of a type URL: everything after the last `/`. */
export function typeNameOfUrl(url: string): string {
  const slash = url.lastIndexOf('/');
  return slash >= 0 ? url.slice(slash + 1) : url;
}

/**
 * Decodes `json` as the message `typeName` (an ordinary message or a well-known type, whose decoded form is
 * its plain value: a Duration decodes to milliseconds). Problems are appended to `errors`.
 */
export function decodeMessage<T = Record<string, unknown>>(
  typeName: string,
  json: unknown,
  path: string,
  errors: ConfigError[],
  options?: DecodeOptions,
): T {
  const ctx: Ctx = { errors, ignoreUnknown: options?.ignoreUnknownFields === true };
  const kind = wellKnownKind(typeName);
  if (kind !== undefined) {
    if (kind === 'value' && (json === null || json === undefined)) return null as T;
    return decodeWellKnown(kind, typeName, json, path, ctx) as T;
  }
  const msg = getCompiledMessage(typeName);
  if (msg === undefined) {
    report(ctx, 'unknown_type', path, `unknown message type ${typeName}`);
    return {} as T;
  }
  const decoded = decodeObject(msg, json === null || json === undefined ? {} : json, path, ctx, false);
  return (decoded ?? {}) as T;
}

/** Decodes a bare `google.protobuf.Any` (`{"@type": ..., ...fields}`); undefined when it cannot be. */
export function decodeAny(
  json: unknown,
  path: string,
  errors: ConfigError[],
  options?: DecodeOptions,
): AnyMessage | undefined {
  return decodeAnyValue(json, path, { errors, ignoreUnknown: options?.ignoreUnknownFields === true });
}

// ---- messages -----------------------------------------------------------------------------------------------

function decodeMessageValue(typeName: string, json: unknown, path: string, ctx: Ctx): unknown {
  const kind = wellKnownKind(typeName);
  if (kind !== undefined) return decodeWellKnown(kind, typeName, json, path, ctx);
  return decodeOrdinaryMessage(typeName, json, path, ctx);
}

function decodeOrdinaryMessage(typeName: string, json: unknown, path: string, ctx: Ctx): unknown {
  const msg = getCompiledMessage(typeName);
  if (msg === undefined) {
    report(ctx, 'unknown_type', path, `unknown message type ${typeName}`);
    return undefined;
  }
  return decodeObject(msg, json, path, ctx, false);
}

function decodeObject(
  msg: CompiledMessage,
  json: unknown,
  path: string,
  ctx: Ctx,
  inAny: boolean,
): Record<string, unknown> | undefined {
  if (!isPlainObject(json)) {
    report(ctx, 'wrong_type', path, `expected an object (${msg.name}), got ${describe(json)}`);
    return undefined;
  }
  const out: Record<string, unknown> = {};
  let oneofSet: Map<string, string> | undefined;
  const keys = Object.keys(json);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    if (inAny && key === '@type') continue;
    const field = msg.byKey.get(key);
    if (field === undefined) {
      if (!ctx.ignoreUnknown) {
        report(ctx, 'unknown_field', childPath(path, key), `unknown field "${key}" in ${msg.name}`);
      }
      continue;
    }
    const fieldName = field.name;
    if (field.spellings.length > 1) {
      // The same field under two spellings: the first spelling (proto name first) wins, the other is reported.
      const first = firstGivenSpelling(field, json);
      if (first !== key) {
        report(ctx, 'invalid_value', childPath(path, key),
          `field ${fieldName} of ${msg.name} is given twice (as "${first}" and "${key}")`);
        continue;
      }
    }
    const raw = json[key];
    if (raw === null || raw === undefined) continue;
    const fieldPath = childPath(path, key);
    let conflict = false;
    if (field.oneof !== undefined) {
      if (oneofSet === undefined) oneofSet = new Map();
      const other = oneofSet.get(field.oneof);
      if (other !== undefined) {
        conflict = true;
        report(ctx, 'oneof_conflict', fieldPath,
          `"${other}" and "${key}" are both set, but only one field of oneof ${field.oneof} in ${msg.name} may be`);
      } else {
        oneofSet.set(field.oneof, key);
      }
    }
    const value = decodeField(field, raw, fieldPath, ctx);
    if (value !== undefined && !conflict) out[fieldName] = value;
  }

  for (let i = 0; i < msg.required.length; i++) {
    const name = msg.required[i]!;
    if (out[name] === undefined && !isGiven(msg, json, name)) {
      report(ctx, 'missing_required', childPath(path, name), `missing required field ${name} in ${msg.name}`);
    }
  }
  for (let i = 0; i < msg.minItems.length; i++) {
    const name = msg.minItems[i]!;
    if (out[name] === undefined && !isGiven(msg, json, name)) {
      const min = msg.byName.get(name)!.rules!.minItems!;
      report(ctx, 'missing_required', childPath(path, name),
        `${name} in ${msg.name} needs at least ${min} item${min === 1 ? '' : 's'}`);
    }
  }
  for (let i = 0; i < msg.requiredOneofs.length; i++) {
    const oneof = msg.requiredOneofs[i]!;
    if (oneofSet?.has(oneof)) continue;
    const members = msg.oneofs.get(oneof) ?? [];
    report(ctx, 'missing_required', path,
      `${msg.name} needs one of the fields of oneof ${oneof}: ${members.join(', ')}`);
  }
  return out;
}

function firstGivenSpelling(field: CompiledField, json: Record<string, unknown>): string | undefined {
  const spellings = field.spellings;
  for (let i = 0; i < spellings.length; i++) {
    if (Object.prototype.hasOwnProperty.call(json, spellings[i]!)) return spellings[i];
  }
  return undefined;
}

/** Whether the field is written with a non-null value under any of its spellings. */
function isGiven(msg: CompiledMessage, json: Record<string, unknown>, fieldName: string): boolean {
  const spellings = msg.byName.get(fieldName)?.spellings ?? [fieldName];
  for (const spelling of spellings) {
    if (Object.prototype.hasOwnProperty.call(json, spelling)) {
      const v = json[spelling];
      if (v !== null && v !== undefined) return true;
    }
  }
  return false;
}

// ---- fields -------------------------------------------------------------------------------------------------

function decodeField(field: CompiledField, raw: unknown, path: string, ctx: Ctx): unknown {
  if (field.mapKey !== undefined) return decodeMap(field, raw, path, ctx);
  if (field.repeated) {
    // Envoy quirk: a single value where a list is expected is a one-element list.
    const items = Array.isArray(raw) ? raw : [raw];
    const out: unknown[] = [];
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      const itemPath = `${path}[${i}]`;
      if (item === null || item === undefined) {
        if (field.type === 'google.protobuf.Value') out.push(null);
        else report(ctx, 'wrong_type', itemPath, 'null is not allowed as a list element');
        continue;
      }
      const value = decodeSingle(field, item, itemPath, ctx);
      if (value !== undefined) out.push(value);
    }
    if (field.rules !== undefined) checkCount(field, items.length, path, ctx);
    return out;
  }
  const value = decodeSingle(field, raw, path, ctx);
  if (value !== undefined && field.rules !== undefined) checkRules(field, value, path, ctx);
  return value;
}

function decodeSingle(field: CompiledField, raw: unknown, path: string, ctx: Ctx): unknown {
  switch (field.kind) {
    case 'scalar':
      return decodeScalar(field.type, raw, path, ctx);
    case 'enum':
      return decodeEnum(field, raw, path, ctx);
    default:
      if (field.wellKnown !== undefined) return decodeWellKnown(field.wellKnown, field.type, raw, path, ctx);
      return decodeOrdinaryMessage(field.type, raw, path, ctx);
  }
}

function decodeMap(field: CompiledField, raw: unknown, path: string, ctx: Ctx): unknown {
  if (!isPlainObject(raw)) {
    report(ctx, 'wrong_type', path, `expected an object (a map), got ${describe(raw)}`);
    return undefined;
  }
  const out: Record<string, unknown> = {};
  const keys = Object.keys(raw);
  for (let i = 0; i < keys.length; i++) {
    const rawKey = keys[i]!;
    const keyPath = `${path}[${JSON.stringify(rawKey)}]`;
    const key = mapKeyOf(field.mapKey!, rawKey);
    if (key === undefined) {
      report(ctx, 'invalid_value', keyPath, `invalid map key "${rawKey}": expected ${field.mapKey}`);
      continue;
    }
    const item = raw[rawKey];
    if (item === null || item === undefined) {
      if (field.type === 'google.protobuf.Value') setKey(out, key, null);
      else report(ctx, 'wrong_type', keyPath, 'null is not allowed as a map value');
      continue;
    }
    const value = decodeSingle(field, item, keyPath, ctx);
    if (value !== undefined) setKey(out, key, value);
  }
  if (field.rules !== undefined) checkCount(field, keys.length, path, ctx);
  return out;
}

function mapKeyOf(keyType: string, key: string): string | undefined {
  switch (keyType) {
    case 'string':
      return key;
    case 'bool':
      return key === 'true' || key === 'false' ? key : undefined;
    default: {
      if (!INT_RE.test(key)) return undefined;
      const n = BigInt(key);
      const unsigned = keyType.startsWith('u') || keyType.startsWith('fixed');
      const wide = keyType.endsWith('64');
      const min = unsigned ? 0n : wide ? INT64_MIN : -(2n ** 31n);
      const max = unsigned ? (wide ? UINT64_MAX : 2n ** 32n - 1n) : wide ? INT64_MAX : 2n ** 31n - 1n;
      return n < min || n > max ? undefined : n.toString();
    }
  }
}

// ---- validate.rules -----------------------------------------------------------------------------------------

function checkCount(field: CompiledField, count: number, path: string, ctx: Ctx): void {
  const { minItems, maxItems } = field.rules!;
  if (minItems !== undefined && count < minItems) {
    report(ctx, 'invalid_value', path, `needs at least ${minItems} item${minItems === 1 ? '' : 's'}, got ${count}`);
  }
  if (maxItems !== undefined && count > maxItems) {
    report(ctx, 'invalid_value', path, `allows at most ${maxItems} item${maxItems === 1 ? '' : 's'}, got ${count}`);
  }
}

function checkRules(field: CompiledField, value: unknown, path: string, ctx: Ctx): void {
  const rules = field.rules!;
  if (typeof value === 'string') {
    if (rules.minLen !== undefined && value.length < rules.minLen) {
      report(ctx, 'invalid_value', path,
        rules.minLen === 1 ? 'must not be empty' : `must be at least ${rules.minLen} characters long`);
    }
    if (rules.maxLen !== undefined && value.length > rules.maxLen) {
      report(ctx, 'invalid_value', path, `must be at most ${rules.maxLen} characters long`);
    }
    if (rules.wellKnown === 'HTTP_HEADER_NAME') {
      const problem = headerNameProblem(value);
      if (problem !== undefined) report(ctx, 'invalid_value', path, `invalid header name ${JSON.stringify(value)}: ${problem}`);
    } else if (rules.wellKnown === 'HTTP_HEADER_VALUE') {
      if (/[\0\r\n]/.test(value)) {
        report(ctx, 'invalid_value', path, `invalid header value ${JSON.stringify(value)}: contains NUL, CR or LF`);
      }
    }
  } else if (typeof value === 'number') {
    const unit = field.type === DURATION_TYPE ? 'ms' : '';
    if (rules.gt !== undefined && !(value > rules.gt)) {
      report(ctx, 'invalid_value', path, `must be greater than ${rules.gt}${unit}, got ${value}${unit}`);
    }
    if (rules.gte !== undefined && !(value >= rules.gte)) {
      report(ctx, 'invalid_value', path, `must be at least ${rules.gte}${unit}, got ${value}${unit}`);
    }
    if (rules.lt !== undefined && !(value < rules.lt)) {
      report(ctx, 'invalid_value', path, `must be less than ${rules.lt}${unit}, got ${value}${unit}`);
    }
    if (rules.lte !== undefined && !(value <= rules.lte)) {
      report(ctx, 'invalid_value', path, `must be at most ${rules.lte}${unit}, got ${value}${unit}`);
    }
  }
}

function headerNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'must not be empty';
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 0 || c === 10 || c === 13) return 'contains NUL, CR or LF';
    if (c === 32 || c === 9 || c === 11 || c === 12) return 'contains whitespace';
    if (c === 58 /* : */ && i !== 0) return "':' is only allowed as the first character (pseudo-headers)";
  }
  if (name === ':') return 'empty pseudo-header name';
  return undefined;
}

// ---- scalars ------------------------------------------------------------------------------------------------

function decodeScalar(type: string, raw: unknown, path: string, ctx: Ctx): unknown {
  switch (type) {
    case 'string':
      if (typeof raw === 'string') return raw;
      // Envoy's YAML→JSON conversion turns plain scalars into strings where a string is expected.
      if (typeof raw === 'number' || typeof raw === 'boolean' || typeof raw === 'bigint') return String(raw);
      report(ctx, 'wrong_type', path, `expected a string, got ${describe(raw)}`);
      return undefined;
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      report(ctx, 'wrong_type', path, `expected a boolean (true or false), got ${describe(raw)}`);
      return undefined;
    case 'int32':
    case 'sint32':
    case 'sfixed32':
      return decodeInt32(raw, -2147483648, 2147483647, type, path, ctx);
    case 'uint32':
    case 'fixed32':
      return decodeInt32(raw, 0, 4294967295, type, path, ctx);
    case 'int64':
    case 'sint64':
    case 'sfixed64':
      return decodeInt64(raw, false, type, path, ctx);
    case 'uint64':
    case 'fixed64':
      return decodeInt64(raw, true, type, path, ctx);
    case 'double':
    case 'float':
      return decodeFloat(raw, type === 'float', path, ctx);
    case 'bytes':
      return decodeBytes(raw, path, ctx);
    default:
      report(ctx, 'unknown_type', path, `unknown scalar type ${type}`);
      return undefined;
  }
}

function decodeInt32(raw: unknown, min: number, max: number, type: string, path: string, ctx: Ctx): number | undefined {
  let n: number;
  if (typeof raw === 'number') {
    n = raw;
  } else if (typeof raw === 'string' && FLOAT_RE.test(raw)) {
    n = Number(raw);
  } else if (typeof raw === 'bigint') {
    n = Number(raw);
  } else {
    report(ctx, 'wrong_type', path, `expected an integer (${type}), got ${describe(raw)}`);
    return undefined;
  }
  if (!Number.isInteger(n)) {
    report(ctx, 'invalid_value', path, `expected an integer (${type}), got ${String(raw)}`);
    return undefined;
  }
  if (n < min || n > max) {
    report(ctx, 'invalid_value', path,
      min === 0 && n < 0 ? `${type} must not be negative, got ${String(raw)}` : `${String(raw)} is out of range for ${type}`);
    return undefined;
  }
  return n === 0 ? 0 : n;
}

function decodeInt64(raw: unknown, unsigned: boolean, type: string, path: string, ctx: Ctx): number | undefined {
  let big: bigint;
  if (typeof raw === 'number') {
    if (!Number.isInteger(raw)) {
      report(ctx, 'invalid_value', path, `expected an integer (${type}), got ${raw}`);
      return undefined;
    }
    if (Number.isSafeInteger(raw)) {
      if (unsigned && raw < 0) {
        report(ctx, 'invalid_value', path, `${type} must not be negative, got ${raw}`);
        return undefined;
      }
      return raw === 0 ? 0 : raw;
    }
    big = BigInt(raw);
  } else if (typeof raw === 'string' && INT_RE.test(raw)) {
    big = BigInt(raw);
  } else if (typeof raw === 'bigint') {
    big = raw;
  } else {
    report(ctx, 'wrong_type', path, `expected an integer or a decimal string (${type}), got ${describe(raw)}`);
    return undefined;
  }
  if (unsigned && big < 0n) {
    report(ctx, 'invalid_value', path, `${type} must not be negative, got ${String(raw)}`);
    return undefined;
  }
  if (big < INT64_MIN || big > (unsigned ? UINT64_MAX : INT64_MAX)) {
    report(ctx, 'invalid_value', path, `${String(raw)} is out of range for ${type}`);
    return undefined;
  }
  const n = Number(big);
  return n === 0 ? 0 : n;
}

function decodeFloat(raw: unknown, single: boolean, path: string, ctx: Ctx): number | undefined {
  let n: number;
  if (typeof raw === 'number') {
    n = raw;
  } else if (typeof raw === 'string') {
    if (raw === 'NaN') return NaN;
    if (raw === 'Infinity') return Infinity;
    if (raw === '-Infinity') return -Infinity;
    if (!FLOAT_RE.test(raw)) {
      report(ctx, 'wrong_type', path, `expected a number, got ${describe(raw)}`);
      return undefined;
    }
    n = Number(raw);
  } else {
    report(ctx, 'wrong_type', path, `expected a number, got ${describe(raw)}`);
    return undefined;
  }
  if (single && Number.isFinite(n) && Math.abs(n) > MAX_FLOAT) {
    report(ctx, 'invalid_value', path, `${String(raw)} is out of range for float`);
    return undefined;
  }
  return n;
}

function decodeBytes(raw: unknown, path: string, ctx: Ctx): Buffer | undefined {
  if (raw instanceof Uint8Array) return Buffer.from(raw);
  if (typeof raw !== 'string') {
    report(ctx, 'wrong_type', path, `expected a base64 string, got ${describe(raw)}`);
    return undefined;
  }
  const text = raw.replace(/\s+/g, '');
  const unpadded = text.replace(/=+$/, '');
  if (!BASE64_RE.test(text) || unpadded.length % 4 === 1 || (text.length !== unpadded.length && text.length % 4 !== 0)) {
    report(ctx, 'invalid_value', path, 'invalid base64');
    return undefined;
  }
  return Buffer.from(unpadded.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

// ---- enums --------------------------------------------------------------------------------------------------

function decodeEnum(field: CompiledField, raw: unknown, path: string, ctx: Ctx): string | number | undefined {
  const info = getCompiledEnum(field.type);
  if (info === undefined) {
    report(ctx, 'unknown_type', path, `unknown enum type ${field.type}`);
    return undefined;
  }
  if (typeof raw === 'string') {
    const name = info.byUpperName.get(raw.toUpperCase());
    if (name !== undefined) return name;
    const listed = info.names.length <= MAX_LISTED_ENUM_VALUES ? `; expected one of ${info.names.join(', ')}` : '';
    report(ctx, 'invalid_value', path, `unknown value "${raw}" for enum ${field.type}${listed}`);
    return undefined;
  }
  if (typeof raw === 'number') {
    if (!Number.isInteger(raw) || raw < -2147483648 || raw > 2147483647) {
      report(ctx, 'invalid_value', path, `invalid enum number ${raw} for ${field.type}`);
      return undefined;
    }
    const name = info.byNumber.get(raw);
    if (name !== undefined) return name;
    if (field.rules?.definedOnly) {
      report(ctx, 'invalid_value', path, `${raw} is not a defined value of enum ${field.type}`);
      return undefined;
    }
    return raw;
  }
  report(ctx, 'wrong_type', path, `expected an enum name or number (${field.type}), got ${describe(raw)}`);
  return undefined;
}

// ---- well-known types ---------------------------------------------------------------------------------------

function decodeWellKnown(kind: WellKnownKind, typeName: string, raw: unknown, path: string, ctx: Ctx): unknown {
  switch (kind) {
    case 'any':
      return decodeAnyValue(raw, path, ctx);
    case 'duration':
      return decodeDuration(raw, path, ctx);
    case 'timestamp':
      return decodeTimestamp(raw, path, ctx);
    case 'struct':
      if (isPlainObject(raw)) return cloneJson(raw);
      report(ctx, 'wrong_type', path, `expected an object (google.protobuf.Struct), got ${describe(raw)}`);
      return undefined;
    case 'value':
      return raw === undefined ? null : cloneJson(raw);
    case 'list':
      if (Array.isArray(raw)) return cloneJson(raw);
      report(ctx, 'wrong_type', path, `expected a list (google.protobuf.ListValue), got ${describe(raw)}`);
      return undefined;
    case 'empty':
      if (!isPlainObject(raw)) {
        report(ctx, 'wrong_type', path, `expected an empty object (google.protobuf.Empty), got ${describe(raw)}`);
        return undefined;
      }
      if (!ctx.ignoreUnknown) {
        for (const key of Object.keys(raw)) {
          report(ctx, 'unknown_field', childPath(path, key), `unknown field "${key}" in google.protobuf.Empty`);
        }
      }
      return {};
    case 'fieldmask':
      if (typeof raw === 'string') return raw;
      if (isPlainObject(raw) && Array.isArray(raw.paths) && raw.paths.every((p) => typeof p === 'string')) {
        return raw.paths.join(',');
      }
      report(ctx, 'wrong_type', path, `expected a string (google.protobuf.FieldMask), got ${describe(raw)}`);
      return undefined;
    case 'wrapper':
      return decodeScalar(wrappedScalarType(typeName)!, raw, path, ctx);
  }
}

function decodeDuration(raw: unknown, path: string, ctx: Ctx): number | undefined {
  if (typeof raw === 'string') {
    const m = DURATION_RE.exec(raw);
    if (m === null) {
      report(ctx, 'invalid_value', path,
        `invalid duration "${raw}": expected seconds with an "s" suffix and up to 9 fractional digits, such as "5s" or "0.25s"`);
      return undefined;
    }
    const seconds = Number(m[2]);
    const nanos = m[3] === undefined ? 0 : Number(m[3].padEnd(9, '0'));
    if (seconds > MAX_DURATION_SECONDS) {
      report(ctx, 'invalid_value', path, `duration "${raw}" is out of range`);
      return undefined;
    }
    return m[1] === undefined ? durationMs(seconds, nanos) : -durationMs(seconds, nanos);
  }
  if (isPlainObject(raw)) {
    const msg = getCompiledMessage(DURATION_TYPE);
    if (msg === undefined) return undefined;
    const before = ctx.errors.length;
    const parts = decodeObject(msg, raw, path, ctx, false);
    if (parts === undefined || ctx.errors.length !== before) return undefined;
    const seconds = (parts.seconds as number | undefined) ?? 0;
    const nanos = (parts.nanos as number | undefined) ?? 0;
    if (Math.abs(seconds) > MAX_DURATION_SECONDS || Math.abs(nanos) > 999999999
      || (seconds > 0 && nanos < 0) || (seconds < 0 && nanos > 0)) {
      report(ctx, 'invalid_value', path, `duration {seconds: ${seconds}, nanos: ${nanos}} is out of range`);
      return undefined;
    }
    return seconds < 0 || nanos < 0 ? -durationMs(-seconds, -nanos) : durationMs(seconds, nanos);
  }
  report(ctx, 'wrong_type', path, `expected a duration string such as "5s" or "0.25s", got ${describe(raw)}`);
  return undefined;
}

/** Milliseconds of a non-negative duration; the encoder inverts exactly this formula. */
function durationMs(seconds: number, nanos: number): number {
  return seconds * 1000 + nanos / 1e6;
}

function decodeTimestamp(raw: unknown, path: string, ctx: Ctx): string | undefined {
  if (typeof raw !== 'string') {
    report(ctx, 'wrong_type', path, `expected an RFC 3339 timestamp string, got ${describe(raw)}`);
    return undefined;
  }
  const m = TIMESTAMP_RE.exec(raw);
  let ok = m !== null;
  if (m !== null) {
    const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as
      [number, number, number, number, number, number];
    const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
    ok = year >= 1 && month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth && hour <= 23 && minute <= 59
      && second <= 60 && (m[9] === undefined || (Number(m[9]) <= 23 && Number(m[10]) <= 59));
  }
  if (!ok) {
    report(ctx, 'invalid_value', path, `invalid timestamp "${raw}": expected RFC 3339, such as "2024-01-02T03:04:05Z"`);
    return undefined;
  }
  return raw;
}

function decodeAnyValue(raw: unknown, path: string, ctx: Ctx): AnyMessage | undefined {
  if (!isPlainObject(raw)) {
    report(ctx, 'wrong_type', path, `expected an object with "@type" (google.protobuf.Any), got ${describe(raw)}`);
    return undefined;
  }
  const url = raw['@type'];
  if (url === undefined || url === null) {
    report(ctx, 'missing_required', childPath(path, '@type'), 'missing "@type" in google.protobuf.Any');
    return undefined;
  }
  if (typeof url !== 'string') {
    report(ctx, 'wrong_type', childPath(path, '@type'), `expected a type URL string, got ${describe(url)}`);
    return undefined;
  }
  const typeName = typeNameOfUrl(url);
  if (TYPED_STRUCT_TYPES.has(typeName)) return decodeTypedStruct(raw, typeName, path, ctx);
  const kind = wellKnownKind(typeName);
  if (kind !== undefined) {
    // Well-known types carry their JSON form under "value".
    for (const key of Object.keys(raw)) {
      if (key !== '@type' && key !== 'value' && !ctx.ignoreUnknown) {
        report(ctx, 'unknown_field', childPath(path, key), `unknown field "${key}" in Any of type ${typeName}`);
      }
    }
    const payload = raw.value;
    const value = payload === undefined || payload === null
      ? defaultWellKnown(kind, typeName)
      : decodeWellKnown(kind, typeName, payload, childPath(path, 'value'), ctx);
    return { type_url: TYPE_URL_PREFIX + typeName, value };
  }
  const msg = getCompiledMessage(typeName);
  if (msg === undefined) {
    report(ctx, 'unknown_type', path, `unknown type "${url}": ${typeName} is not a message of the Envoy API`);
    return { type_url: TYPE_URL_PREFIX + typeName, value: undefined };
  }
  return { type_url: TYPE_URL_PREFIX + typeName, value: decodeObject(msg, raw, path, ctx, true) ?? {} };
}

function decodeTypedStruct(raw: Record<string, unknown>, wrapper: string, path: string, ctx: Ctx): AnyMessage | undefined {
  let innerUrl: unknown;
  let payload: unknown;
  for (const key of Object.keys(raw)) {
    if (key === '@type') continue;
    if (key === 'type_url' || key === 'typeUrl') innerUrl = raw[key];
    else if (key === 'value') payload = raw[key];
    else if (!ctx.ignoreUnknown) report(ctx, 'unknown_field', childPath(path, key), `unknown field "${key}" in ${wrapper}`);
  }
  const urlPath = childPath(path, 'type_url');
  if (innerUrl === undefined || innerUrl === null || innerUrl === '') {
    report(ctx, 'missing_required', urlPath, `missing type_url in ${wrapper}`);
    return undefined;
  }
  if (typeof innerUrl !== 'string') {
    report(ctx, 'wrong_type', urlPath, `expected a type URL string, got ${describe(innerUrl)}`);
    return undefined;
  }
  const typeName = typeNameOfUrl(innerUrl);
  const valuePath = childPath(path, 'value');
  if (payload === undefined || payload === null) payload = {};
  if (!isPlainObject(payload)) {
    report(ctx, 'wrong_type', valuePath, `expected an object (google.protobuf.Struct), got ${describe(payload)}`);
    return undefined;
  }
  if (wellKnownKind(typeName) === undefined && getCompiledMessage(typeName) === undefined) {
    report(ctx, 'unknown_type', urlPath, `unknown type "${innerUrl}": ${typeName} is not a message of the Envoy API`);
    return { type_url: TYPE_URL_PREFIX + typeName, value: undefined };
  }
  return { type_url: TYPE_URL_PREFIX + typeName, value: decodeMessageValue(typeName, payload, valuePath, ctx) };
}

function defaultWellKnown(kind: WellKnownKind, typeName: string): unknown {
  switch (kind) {
    case 'duration':
      return 0;
    case 'timestamp':
      return '1970-01-01T00:00:00Z';
    case 'struct':
    case 'empty':
      return {};
    case 'list':
      return [];
    case 'value':
      return null;
    case 'fieldmask':
      return '';
    case 'any':
      return undefined;
    case 'wrapper': {
      const scalar = wrappedScalarType(typeName);
      if (scalar === 'string') return '';
      if (scalar === 'bool') return false;
      if (scalar === 'bytes') return Buffer.alloc(0);
      return 0;
    }
  }
}

// ---- helpers ------------------------------------------------------------------------------------------------

function report(ctx: Ctx, code: ConfigErrorCode, path: string, message: string): void {
  ctx.errors.push({ code, path, message });
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  switch (typeof value) {
    case 'string':
      return `the string ${JSON.stringify(value.length > 60 ? value.slice(0, 57) + '...' : value)}`;
    case 'number':
    case 'bigint':
      return `the number ${String(value)}`;
    case 'boolean':
      return `the boolean ${String(value)}`;
    case 'object':
      return 'an object';
    default:
      return typeof value;
  }
}

/** Sets a key on a plain object, including `__proto__` as an own property. */
function setKey(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') {
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    target[key] = value;
  }
}

/** A deep copy of JSON-like data (objects and arrays are copied, everything else is kept). */
export function cloneJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(cloneJson);
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value)) setKey(out, key, cloneJson(value[key]));
    return out;
  }
  return value;
}
