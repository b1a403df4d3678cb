/**
 * Envoy's resources between proto3-JSON (the form Portico's configuration decoder reads and the control plane's
 * translation writes) and protobuf binary (the form xDS carries them in, inside `google.protobuf.Any`).
 * protobufjs does the binary encoding; this module maps the well-known types that proto3-JSON writes
 * differently (Duration `"1.5s"`, Timestamp RFC 3339, wrappers as bare scalars, Struct as a JSON object, Any
 * with `@type`) and resolves the type of every nested Any, loading its protos on first use.
 */
import protobuf from 'protobufjs';
import { formatDuration } from '../config/proto/encode.js';
import { fromStruct, fromValue, lookupEnvoyType, toStruct, toValue } from './envoy-protos.js';

const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: String, bytes: Buffer, defaults: false, arrays: false, objects: false, oneofs: false };

type Json = Record<string, unknown>;

/** An `Any` holding the proto3-JSON `json` (with its `@type`), encoded. Throws, naming the field, on what is not one. */
export function anyFromJson(json: Json, path = ''): { type_url: string; value: Buffer } {
  const typeUrl = json['@type'];
  if (typeof typeUrl !== 'string') throw new Error(`${path || 'resource'}: an Any needs "@type"`);
  const type = typeOfUrl(typeUrl, path);
  const { '@type': _, ...fields } = json;
  const object = WELL_KNOWN_FROM_JSON[type.fullName] !== undefined ? fromJson(type, fields.value, path) : fromJson(type, fields, path);
  return { type_url: typeUrl, value: Buffer.from(type.encode(type.fromObject(object as Json)).finish()) };
}

/** The proto3-JSON (with `@type`) of an encoded `Any`. Throws on bytes that are not its type. */
export function anyToJson(any: { type_url?: string; value?: Uint8Array }, path = ''): Json {
  const typeUrl = any.type_url ?? '';
  const type = typeOfUrl(typeUrl, path);
  const object = type.toObject(type.decode(any.value ?? new Uint8Array()), TO_OBJECT);
  const json = toJson(type, object, path);
  return WELL_KNOWN_TO_JSON[type.fullName] !== undefined ? { '@type': typeUrl, value: json } : { '@type': typeUrl, ...(json as Json) };
}

function typeOfUrl(typeUrl: string, path: string): protobuf.Type {
  const name = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
  const type = lookupEnvoyType(name);
  if (type === undefined) throw new Error(`${path || 'resource'}: unknown type "${typeUrl}"`);
  return type;
}

/** proto3-JSON → the plain object protobufjs's `fromObject` takes. */
function fromJson(type: protobuf.Type, json: unknown, path: string): unknown {
  const wellKnown = WELL_KNOWN_FROM_JSON[type.fullName];
  if (wellKnown !== undefined) return wellKnown(json, path);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${path}: expected an object for ${type.fullName.slice(1)}`);
  const fields = fieldsByKey(type);
  const out: Json = {};
  for (const [key, value] of Object.entries(json)) {
    if (value === null) continue;
    const field = fields.get(key);
    if (field === undefined) throw new Error(`${path ? `${path}.` : ''}${key}: not a field of ${type.fullName.slice(1)}`);
    const fieldPath = path ? `${path}.${field.name}` : field.name;
    const convert = (item: unknown, itemPath: string) => fieldFromJson(field, item, itemPath);
    if (field.map) {
      out[field.name] = Object.fromEntries(Object.entries(value as Json).map(([k, v]) => [k, convert(v, `${fieldPath}.${k}`)]));
    } else if (field.repeated) {
      if (!Array.isArray(value)) throw new Error(`${fieldPath}: expected a list`);
      out[field.name] = value.map((item, i) => convert(item, `${fieldPath}[${i}]`));
    } else {
      out[field.name] = convert(value, fieldPath);
    }
  }
  return out;
}

function fieldFromJson(field: protobuf.Field, value: unknown, path: string): unknown {
  const resolved = field.resolve().resolvedType;
  if (resolved instanceof protobuf.Type) {
    // Any is encoded here rather than by protobufjs, whose Any wrapper would not map the nested well-known types.
    if (resolved.fullName === '.google.protobuf.Any') return anyFromJson(value as Json, path);
    return fromJson(resolved, value, path);
  }
  if (field.type === 'bytes' && typeof value === 'string') return Buffer.from(value, 'base64');
  return value;
}

/** A plain object from protobufjs's `toObject` → proto3-JSON. */
function toJson(type: protobuf.Type, object: unknown, path: string): unknown {
  const wellKnown = WELL_KNOWN_TO_JSON[type.fullName];
  if (wellKnown !== undefined) return wellKnown(object as Json);
  const out: Json = {};
  for (const [key, value] of Object.entries(object as Json)) {
    const field = type.fields[key];
    if (field === undefined || value === undefined) continue;
    const fieldPath = path ? `${path}.${key}` : key;
    if (field.map) {
      out[key] = Object.fromEntries(Object.entries(value as Json).map(([k, v]) => [k, fieldToJson(field, v, `${fieldPath}.${k}`)]));
    } else if (field.repeated) {
      out[key] = (value as unknown[]).map((item, i) => fieldToJson(field, item, `${fieldPath}[${i}]`));
    } else {
      out[key] = fieldToJson(field, value, fieldPath);
    }
  }
  return out;
}

function fieldToJson(field: protobuf.Field, value: unknown, path: string): unknown {
  const resolved = field.resolve().resolvedType;
  if (resolved instanceof protobuf.Type) {
    if (resolved.fullName === '.google.protobuf.Any') return anyToJson(value as { type_url?: string; value?: Uint8Array }, path);
    return toJson(resolved, value, path);
  }
  if (Buffer.isBuffer(value)) return value.toString('base64');
  return value;
}

const keyMaps = new WeakMap<protobuf.Type, Map<string, protobuf.Field>>();

/** A message's fields by every key proto3-JSON allows: the proto name and the lowerCamelCase JSON name. */
function fieldsByKey(type: protobuf.Type): Map<string, protobuf.Field> {
  let map = keyMaps.get(type);
  if (map === undefined) {
    map = new Map();
    for (const field of type.fieldsArray) {
      map.set(field.name, field);
      map.set(field.name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()), field);
    }
    keyMaps.set(type, map);
  }
  return map;
}

const DURATION = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/;

function durationFromJson(value: unknown, path: string): Json {
  const m = typeof value === 'string' ? DURATION.exec(value) : null;
  if (m === null) throw new Error(`${path}: expected a duration like "1.5s"`);
  const sign = m[1] ? -1 : 1;
  return { seconds: String(sign * Number(m[2])), nanos: sign * Number((m[3] ?? '').padEnd(9, '0')) };
}

function durationToJson(object: Json): string {
  return formatDuration(Number(object.seconds ?? 0) * 1000 + Number(object.nanos ?? 0) / 1e6);
}

function timestampFromJson(value: unknown, path: string): Json {
  const ms = typeof value === 'string' ? Date.parse(value) : NaN;
  if (Number.isNaN(ms)) throw new Error(`${path}: expected an RFC 3339 timestamp`);
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}

const wrapper = (value: unknown): Json => ({ value });
const unwrap = (object: Json): unknown => (Buffer.isBuffer(object.value) ? object.value.toString('base64') : object.value);

const WELL_KNOWN_FROM_JSON: Record<string, (value: unknown, path: string) => unknown> = {
  '.google.protobuf.Duration': durationFromJson,
  '.google.protobuf.Timestamp': timestampFromJson,
  '.google.protobuf.Struct': (value) => toStruct(value as Json),
  '.google.protobuf.Value': (value) => toValue(value),
  '.google.protobuf.ListValue': (value) => ({ values: (value as unknown[]).map(toValue) }),
  '.google.protobuf.Empty': () => ({}),
  '.google.protobuf.FieldMask': (value) => ({ paths: String(value).split(',').filter(Boolean) }),
  '.google.protobuf.BoolValue': wrapper,
  '.google.protobuf.StringValue': wrapper,
  '.google.protobuf.BytesValue': (value) => ({ value: Buffer.from(String(value), 'base64') }),
  '.google.protobuf.DoubleValue': wrapper,
  '.google.protobuf.FloatValue': wrapper,
  '.google.protobuf.Int32Value': wrapper,
  '.google.protobuf.UInt32Value': wrapper,
  '.google.protobuf.Int64Value': (value) => ({ value: String(value) }),
  '.google.protobuf.UInt64Value': (value) => ({ value: String(value) }),
};

const WELL_KNOWN_TO_JSON: Record<string, (object: Json) => unknown> = {
  '.google.protobuf.Duration': durationToJson,
  '.google.protobuf.Timestamp': (object) => new Date(Number(object.seconds ?? 0) * 1000 + Math.floor(Number(object.nanos ?? 0) / 1e6)).toISOString(),
  '.google.protobuf.Struct': (object) => fromStruct(object as { fields?: Record<string, Json> }),
  '.google.protobuf.Value': (object) => fromValue(object),
  '.google.protobuf.ListValue': (object) => ((object.values ?? []) as Json[]).map(fromValue),
  '.google.protobuf.Empty': () => ({}),
  '.google.protobuf.FieldMask': (object) => ((object.paths ?? []) as string[]).join(','),
  '.google.protobuf.BoolValue': (object) => object.value ?? false,
  '.google.protobuf.StringValue': (object) => object.value ?? '',
  '.google.protobuf.BytesValue': (object) => unwrap(object) ?? '',
  '.google.protobuf.DoubleValue': (object) => object.value ?? 0,
  '.google.protobuf.FloatValue': (object) => object.value ?? 0,
  '.google.protobuf.Int32Value': (object) => object.value ?? 0,
  '.google.protobuf.UInt32Value': (object) => object.value ?? 0,
  '.google.protobuf.Int64Value': (object) => object.value ?? '0',
  '.google.protobuf.UInt64Value': (object) => object.value ?? '0',
};
