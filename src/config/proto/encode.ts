/**
 * The reverse of decode.ts, for the admin /config_dump: a decoded configuration back to proto3-JSON as Envoy
 * prints it (proto field names, Durations as "0.250s", Any with "@type", 64-bit integers as strings, bytes as
 * base64, enums by name). Absent fields are omitted. decode(encode(decode(x))) deep-equals decode(x).
 */
import {
  getCompiledEnum,
  getCompiledMessage,
  wellKnownKind,
  wrappedScalarType,
  type CompiledField,
  type WellKnownKind,
} from './schema.js';
import { cloneJson, typeNameOfUrl } from './decode.js';

/** Encodes a decoded value of message type `typeName` (ordinary or well-known) as proto3-JSON. */
export function encodeMessage(typeName: string, value: unknown): unknown {
  if (value === undefined) return undefined;
  const kind = wellKnownKind(typeName);
  if (kind !== undefined) return encodeWellKnown(kind, typeName, value);
  const msg = getCompiledMessage(typeName);
  if (msg === undefined || !isPlainObject(value)) return cloneJson(value);
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    const field = msg.byKey.get(key);
    if (field === undefined) continue;
    const encoded = encodeField(field, value[key]);
    if (encoded !== undefined) out[field.name] = encoded;
  }
  return out;
}

/** Formats milliseconds as a proto3-JSON Duration: `5s`, `0.250s`, `1.000340012s`, `-1.500s`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return ms > 0 ? `${315576000000}s` : ms < 0 ? `-${315576000000}s` : '0s';
  const negative = ms < 0;
  const abs = Math.abs(ms);
  let seconds = Math.trunc(abs / 1000);
  let nanos = Math.round((abs - seconds * 1000) * 1e6);
  if (nanos >= 1e9) {
    seconds += 1;
    nanos -= 1e9;
  }
  let text = String(seconds);
  if (nanos !== 0) {
    let fraction = String(nanos).padStart(9, '0');
    if (nanos % 1e6 === 0) fraction = fraction.slice(0, 3);
    else if (nanos % 1e3 === 0) fraction = fraction.slice(0, 6);
    text += '.' + fraction;
  }
  return (negative && (seconds !== 0 || nanos !== 0) ? '-' : '') + text + 's';
}

function encodeField(field: CompiledField, value: unknown): unknown {
  if (value === undefined || value === null) return undefined;
  if (field.mapKey !== undefined) {
    if (!isPlainObject(value)) return undefined;
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value)) {
      const encoded = encodeSingle(field, value[key]);
      if (encoded === undefined) continue;
      if (key === '__proto__') {
        Object.defineProperty(out, key, { value: encoded, enumerable: true, writable: true, configurable: true });
      } else {
        out[key] = encoded;
      }
    }
    return out;
  }
  if (field.repeated) {
    const items = Array.isArray(value) ? value : [value];
    const out: unknown[] = [];
    for (const item of items) {
      const encoded = encodeSingle(field, item);
      if (encoded !== undefined) out.push(encoded);
    }
    return out;
  }
  return encodeSingle(field, value);
}

function encodeSingle(field: CompiledField, value: unknown): unknown {
  if (value === undefined) return undefined;
  if (value === null) return field.type === 'google.protobuf.Value' ? null : undefined;
  switch (field.kind) {
    case 'scalar':
      return encodeScalar(field.type, value);
    case 'enum': {
      if (typeof value !== 'number') return value;
      return getCompiledEnum(field.type)?.byNumber.get(value) ?? value;
    }
    default:
      if (field.wellKnown !== undefined) return encodeWellKnown(field.wellKnown, field.type, value);
      return encodeMessage(field.type, value);
  }
}

function encodeScalar(type: string, value: unknown): unknown {
  switch (type) {
    case 'int64':
    case 'sint64':
    case 'sfixed64':
    case 'uint64':
    case 'fixed64':
      if (typeof value === 'number') return int64String(value);
      if (typeof value === 'bigint') return value.toString();
      return value;
    case 'double':
    case 'float':
      if (typeof value === 'number' && !Number.isFinite(value)) {
        return Number.isNaN(value) ? 'NaN' : value > 0 ? 'Infinity' : '-Infinity';
      }
      return value;
    case 'bytes':
      if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
      return value;
    default:
      return value;
  }
}

function int64String(n: number): string {
  if (!Number.isInteger(n)) return String(Math.trunc(n));
  return Math.abs(n) < 1e21 ? String(n === 0 ? 0 : n) : BigInt(n).toString();
}

function encodeWellKnown(kind: WellKnownKind, typeName: string, value: unknown): unknown {
  switch (kind) {
    case 'duration':
      return typeof value === 'number' ? formatDuration(value) : value;
    case 'any':
      return encodeAny(value);
    case 'empty':
      return {};
    case 'wrapper':
      return encodeScalar(wrappedScalarType(typeName)!, value);
    case 'struct':
    case 'value':
    case 'list':
      return cloneJson(value);
    case 'timestamp':
    case 'fieldmask':
      return value;
  }
}

function encodeAny(value: unknown): unknown {
  if (!isPlainObject(value) || typeof value.type_url !== 'string') return cloneJson(value);
  const url = value.type_url;
  const typeName = typeNameOfUrl(url);
  const payload = value.value;
  if (wellKnownKind(typeName) !== undefined) {
    const encoded = encodeMessage(typeName, payload);
    return encoded === undefined ? { '@type': url } : { '@type': url, value: encoded };
  }
  const encoded = getCompiledMessage(typeName) !== undefined ? encodeMessage(typeName, payload) : cloneJson(payload);
  return isPlainObject(encoded) ? { '@type': url, ...encoded } : { '@type': url };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}
