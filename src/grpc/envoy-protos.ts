/**
 * Envoy's service protos (ext_authz's `Authorization`, the rate limit service, xDS), loaded at run time from the
 * copy of envoyproxy/data-plane-api that ships in `@grpc/grpc-js-xds` (`deps/`), the first time a part of Portico
 * needs one. Messages are plain objects with the protos' own field names (snake_case), 64-bit integers as numbers,
 * enums by name, bytes as Buffers, `Timestamp` and `Duration` as `{seconds, nanos}` and `Struct` as `{fields}`
 * (see `toStruct` / `fromStruct`; protobufjs's own copies of the well-known types name their fields in camelCase).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);

/** A unary or streaming method of a loaded service: its HTTP/2 path and message types. */
export interface ProtoMethod {
  /** `/package.Service/Method` */
  readonly path: string;
  readonly requestType: protobuf.Type;
  readonly responseType: protobuf.Type;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
}

export const TO_OBJECT_OPTIONS: protobuf.IConversionOptions = { longs: Number, enums: String, bytes: Buffer, defaults: false, arrays: true };

let root: protobuf.Root | undefined;
const loaded = new Set<string>();

function includeDirs(): string[] {
  const deps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
  return ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(deps, d));
}

function protoRoot(): protobuf.Root {
  if (root !== undefined) return root;
  const dirs = includeDirs();
  const protobufjsDir = dirname(require.resolve('protobufjs/package.json'));
  const builtIn = new Set(Object.keys(protobuf.common).filter((k) => k.endsWith('.proto')));
  root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    if (builtIn.has(target)) return target;
    for (const dir of [...dirs, protobufjsDir]) {
      const candidate = join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    return target;
  };
  return root;
}

/** Loads `file` (a path under envoy-api, e.g. `envoy/service/auth/v3/external_auth.proto`) once. */
export function loadEnvoyProto(file: string): protobuf.Root {
  const r = protoRoot();
  if (!loaded.has(file)) {
    r.loadSync(file, { keepCase: true });
    r.resolveAll();
    loaded.add(file);
  }
  return r;
}

/** The method `service.method` (`envoy.service.auth.v3.Authorization`, `Check`) from `file`. */
export function envoyMethod(file: string, service: string, method: string): ProtoMethod {
  const svc = loadEnvoyProto(file).lookupService(service);
  const m = svc.methods[method];
  if (m === undefined) throw new Error(`${service} has no method ${method}`);
  m.resolve();
  return {
    path: `/${service}/${method}`,
    requestType: m.resolvedRequestType!,
    responseType: m.resolvedResponseType!,
    requestStream: m.requestStream === true,
    responseStream: m.responseStream === true,
  };
}

/** Encodes a message (a plain object as described above) of `type`. */
export function encodeMessage(type: protobuf.Type, message: object): Buffer {
  return Buffer.from(type.encode(type.fromObject(message)).finish());
}

/** Decodes a message of `type` into a plain object. Throws on bytes that are not one. */
export function decodeMessage<T = Record<string, unknown>>(type: protobuf.Type, bytes: Uint8Array): T {
  return type.toObject(type.decode(bytes), TO_OBJECT_OPTIONS) as T;
}

/** A JSON-like value as a `google.protobuf.Value` object. */
export function toValue(value: unknown): Record<string, unknown> {
  if (value === null || value === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof value === 'number') return { numberValue: value };
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  return { structValue: toStruct(value as Record<string, unknown>) };
}

/** A plain object as a `google.protobuf.Struct` object. */
export function toStruct(object: Record<string, unknown>): { fields: Record<string, unknown> } {
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(object)) fields[key] = toValue(value);
  return { fields };
}

/** A decoded `google.protobuf.Value` as the JSON value it carries. */
export function fromValue(value: Record<string, unknown> | undefined): unknown {
  if (value === undefined) return null;
  if ('numberValue' in value) return value.numberValue;
  if ('stringValue' in value) return value.stringValue;
  if ('boolValue' in value) return value.boolValue;
  if ('structValue' in value) return fromStruct(value.structValue as { fields?: Record<string, Record<string, unknown>> });
  if ('listValue' in value) return ((value.listValue as { values?: Record<string, unknown>[] }).values ?? []).map(fromValue);
  return null;
}

/** A decoded `google.protobuf.Struct` as a plain object. */
export function fromStruct(struct: { fields?: Record<string, Record<string, unknown>> } | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(struct?.fields ?? {})) out[key] = fromValue(value);
  return out;
}
