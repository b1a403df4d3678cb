/**
 * Envoy's service protos (ext_authz's `Authorization`, the rate limit service, xDS), loaded at run time from the
 * copy of envoyproxy/data-plane-api that ships in `@grpc/grpc-js-xds` (`deps/`), the first time a part of Portico
 * needs one. Messages are plain objects with the protos' own field names (snake_case), 64-bit integers as numbers,
 * enums by name, bytes as Buffers, `Timestamp` and `Duration` as `{seconds, nanos}` and `Struct` as `{fields}`
 * (see `toStruct` / `fromStruct`; protobufjs's own copies of the well-known types name their fields in camelCase).
 */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
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
    addNewerMessages(r);
    r.resolveAll();
    loaded.add(file);
  }
  return r;
}

/**
 * The message type `fullName` (`envoy.config.listener.v3.Listener`), loading the protos of its package on first
 * use: a type URL inside an `Any` can name any of Envoy's messages. Undefined when no proto declares it.
 */
export function lookupEnvoyType(fullName: string): protobuf.Type | undefined {
  const r = protoRoot();
  const found = r.lookup(fullName);
  if (found instanceof protobuf.Type) return found;
  const parts = fullName.split('.');
  const firstTypePart = parts.findIndex((part) => /^[A-Z]/.test(part));
  const packageDir = parts.slice(0, firstTypePart < 0 ? parts.length : firstTypePart).join('/');
  if (loadedPackages.has(packageDir)) return undefined;
  loadedPackages.add(packageDir);
  for (const dir of includeDirs()) {
    const candidate = join(dir, packageDir);
    if (!existsSync(candidate)) continue;
    for (const file of readdirSync(candidate).filter((f) => f.endsWith('.proto')).sort()) {
      try {
        loadEnvoyProto(`${packageDir}/${file}`);
      } catch {
        // A few vendored files import v2 protos that are not shipped; their types cannot be used anyway.
      }
    }
  }
  const loadedType = r.lookup(fullName);
  return loadedType instanceof protobuf.Type ? loadedType : undefined;
}

const loadedPackages = new Set<string>();

/**
 * Messages and fields of Envoy's API newer than the vendored protos (the same ones config/proto/supplement.ts adds
 * to the decoder's schema), with their field numbers from Envoy's protos, so that xDS can carry them.
 */
const NEWER_MESSAGES = `
syntax = "proto3";
package envoy.extensions.filters.http.api_key_auth.v3;
message ApiKeyAuth { repeated Credential credentials = 1; repeated KeySource key_sources = 2; Forwarding forwarding = 3; }
message ApiKeyAuthPerRoute { repeated Credential credentials = 1; repeated KeySource key_sources = 2; repeated string allowed_clients = 3; Forwarding forwarding = 4; }
message Credential { string key = 1; string client = 2; }
message KeySource { string header = 1; string query = 2; string cookie = 3; }
message Forwarding { string header = 1; bool hide_credentials = 2; }
`;
let newerMessagesAdded = false;
let queryParametersAdded = false;

function addNewerMessages(r: protobuf.Root): void {
  if (!newerMessagesAdded) {
    protobuf.parse(NEWER_MESSAGES, r, { keepCase: true });
    newerMessagesAdded = true;
  }
  const action = queryParametersAdded ? null : r.lookup('envoy.config.route.v3.RateLimit.Action');
  if (action instanceof protobuf.Type) {
    const queryParameters = new protobuf.Type('QueryParameters')
      .add(new protobuf.Field('query_parameter_name', 1, 'string'))
      .add(new protobuf.Field('descriptor_key', 2, 'string'))
      .add(new protobuf.Field('skip_if_absent', 3, 'bool'));
    action.add(queryParameters);
    const field = new protobuf.Field('query_parameters', 12, 'QueryParameters');
    action.add(field);
    action.oneofs['action_specifier']?.add(field);
    queryParametersAdded = true;
  }
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

/** A grpc-js method definition for `method`, messages as the plain objects of envoy-protos.ts. */
export function grpcDefinition(method: ProtoMethod): grpc.MethodDefinition<object, object> {
  return {
    path: method.path,
    requestStream: method.requestStream,
    responseStream: method.responseStream,
    requestSerialize: (message: object) => encodeMessage(method.requestType, message),
    requestDeserialize: (bytes: Buffer) => decodeMessage(method.requestType, bytes),
    responseSerialize: (message: object) => encodeMessage(method.responseType, message),
    responseDeserialize: (bytes: Buffer) => decodeMessage(method.responseType, bytes),
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
