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
  const object = fromJson(type, infoOf(type).fromWellKnown !== undefined ? fields.value : fields, path);
  return { type_url: typeUrl, value: Buffer.from(type.encode(type.fromObject(object as Json)).finish()) };
}

/** The proto3-JSON (with `@type`) of an encoded `Any`. Throws on bytes that are not its type. */
export function anyToJson(any: { type_url?: string; value?: Uint8Array }, path = ''): Json {
  const typeUrl = any.type_url ?? '';
  const type = typeOfUrl(typeUrl, path);
  const object = type.toObject(type.decode(any.value ?? new Uint8Array()), TO_OBJECT);
  const json = toJson(type, object, path);
  return infoOf(type).toWellKnown !== undefined ? { '@type': typeUrl, value: json } : { '@type': typeUrl, ...(json as Json) };
}

function typeOfUrl(typeUrl: string, path: string): protobuf.Type {
  const name = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
  const type = lookupEnvoyType(name);
  if (type === undefined) throw new Error(`${path || 'resource'}: unknown type "${typeUrl}"`);
  return type;
}

/** What the conversions need of a field, resolved once. */
interface FieldInfo {
  readonly name: string;
  readonly map: boolean;
  readonly repeated: boolean;
  readonly bytes: boolean;
  /** The field's message type, `Any` included; undefined for scalars and enums. */
  readonly message: protobuf.Type | undefined;
  readonly any: boolean;
}

/** What the conversions need of a message type, resolved once (protobufjs computes `fullName` on every read). */
interface TypeInfo {
  readonly fromWellKnown: ((value: unknown, path: string) => unknown) | undefined;
  readonly toWellKnown: ((object: Json) => unknown) | undefined;
  /** By proto name and by lowerCamelCase JSON name, as proto3-JSON allows both. */
  readonly byKey: Map<string, FieldInfo>;
  /** By proto name: the keys protobufjs's toObject gives. */
  readonly byName: Map<string, FieldInfo>;
}

const infos = new WeakMap<protobuf.Type, TypeInfo>();

function infoOf(type: protobuf.Type): TypeInfo {
  let info = infos.get(type);
  if (info !== undefined) return info;
  const fullName = type.fullName;
  const byKey = new Map<string, FieldInfo>();
  const byName = new Map<string, FieldInfo>();
  for (const field of type.fieldsArray) {
    const resolved = field.resolve().resolvedType;
    const message = resolved instanceof protobuf.Type ? resolved : undefined;
    const fieldInfo: FieldInfo = {
      name: field.name,
      map: field.map,
      repeated: field.repeated,
      bytes: field.type === 'bytes',
      message,
      any: message?.fullName === '.google.protobuf.Any',
    };
    byName.set(field.name, fieldInfo);
    byKey.set(field.name, fieldInfo);
    byKey.set(field.name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()), fieldInfo);
  }
  info = { fromWellKnown: WELL_KNOWN_FROM_JSON[fullName], toWellKnown: WELL_KNOWN_TO_JSON[fullName], byKey, byName };
  infos.set(type, info);
  return info;
}

/** proto3-JSON → the plain object protobufjs's `fromObject` takes. */
function fromJson(type: protobuf.Type, json: unknown, path: string): unknown {
  const info = infoOf(type);
  if (info.fromWellKnown !== undefined) return info.fromWellKnown(json, path);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${path}: expected an object for ${type.name}`);
  const out: Json = {};
  for (const key in json) {
    const value = (json as Json)[key];
    if (value === null || value === undefined) continue;
    const field = info.byKey.get(key);
    if (field === undefined) throw new Error(`${path ? `${path}.` : ''}${key}: not a field of ${type.name}`);
    const fieldPath = path ? `${path}.${field.name}` : field.name;
    if (field.map) {
      const entries: Json = {};
      for (const k in value as Json) entries[k] = fieldFromJson(field, (value as Json)[k], `${fieldPath}.${k}`);
      out[field.name] = entries;
    } else if (field.repeated) {
      if (!Array.isArray(value)) throw new Error(`${fieldPath}: expected a list`);
      out[field.name] = value.map((item, i) => fieldFromJson(field, item, `${fieldPath}[${i}]`));
    } else {
      out[field.name] = fieldFromJson(field, value, fieldPath);
    }
  }
  return out;
}

function fieldFromJson(field: FieldInfo, value: unknown, path: string): unknown {
  // Any is encoded here rather than by protobufjs, whose Any wrapper would not map the nested well-known types.
  if (field.any) return anyFromJson(value as Json, path);
  if (field.message !== undefined) return fromJson(field.message, value, path);
  if (field.bytes && typeof value === 'string') return Buffer.from(value, 'base64');
  return value;
}

/** A plain object from protobufjs's `toObject` → proto3-JSON. */
function toJson(type: protobuf.Type, object: unknown, path: string): unknown {
  const info = infoOf(type);
  if (info.toWellKnown !== undefined) return info.toWellKnown(object as Json);
  const out: Json = {};
  for (const key in object as Json) {
    const value = (object as Json)[key];
    const field = info.byName.get(key);
    if (field === undefined || value === undefined) continue;
    const fieldPath = path ? `${path}.${key}` : key;
    if (field.map) {
      const entries: Json = {};
      for (const k in value as Json) entries[k] = fieldToJson(field, (value as Json)[k], `${fieldPath}.${k}`);
      out[key] = entries;
    } else if (field.repeated) {
      out[key] = (value as unknown[]).map((item, i) => fieldToJson(field, item, `${fieldPath}[${i}]`));
    } else {
      out[key] = fieldToJson(field, value, fieldPath);
    }
  }
  return out;
}

function fieldToJson(field: FieldInfo, value: unknown, path: string): unknown {
  if (field.any) return anyToJson(value as { type_url?: string; value?: Uint8Array }, path);
  if (field.message !== undefined) return toJson(field.message, value, path);
  if (Buffer.isBuffer(value)) return value.toString('base64');
  return value;
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
