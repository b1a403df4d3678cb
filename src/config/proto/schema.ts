/**
 * Access to generated/envoy-schema.json (field tables, enums and validate.rules of the Envoy v3 API), loaded
 * lazily once, plus per-message and per-enum lookup tables that the proto3-JSON decoder builds on first use.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../util/package-root.js';
import { SUPPLEMENTARY_FIELDS, SUPPLEMENTARY_MESSAGES } from './supplement.js';

export type FieldKind = 'scalar' | 'enum' | 'message';

export interface FieldRules {
  required?: boolean;
  minLen?: number;
  maxLen?: number;
  wellKnown?: string;
  minItems?: number;
  maxItems?: number;
  definedOnly?: boolean;
  /** Numeric bounds; for google.protobuf.Duration fields in milliseconds. */
  gt?: number;
  gte?: number;
  lt?: number;
  lte?: number;
}

export interface FieldDescriptor {
  kind: FieldKind;
  /** Scalar name (`string`, `uint32`, ...) or the full name of the enum or message type. */
  type: string;
  /** JSON name, present only when it differs from the lowerCamelCase of the proto name. */
  json?: string;
  repeated?: true;
  /** Key scalar type of a map field. */
  mapKey?: string;
  oneof?: string;
  deprecated?: true;
  rules?: FieldRules;
}

export interface MessageDescriptor {
  fields: Record<string, FieldDescriptor>;
  requiredOneofs?: string[];
}

export interface EnvoySchema {
  source?: string;
  messages: Record<string, MessageDescriptor>;
  enums: Record<string, Record<string, number>>;
}

/** Per-message tables derived from the descriptor. */
export interface CompiledMessage {
  readonly name: string;
  readonly descriptor: MessageDescriptor;
  readonly fields: Record<string, FieldDescriptor>;
  /** Every accepted key spelling (proto name, lowerCamelCase, explicit json name) → proto field name. */
  readonly keys: ReadonlyMap<string, string>;
  /** Every accepted key spelling → the compiled field. */
  readonly byKey: ReadonlyMap<string, CompiledField>;
  /** Proto field name → the compiled field. */
  readonly byName: ReadonlyMap<string, CompiledField>;
  /** Fields (outside oneofs) with `rules.required`. */
  readonly required: readonly string[];
  /** Repeated or map fields with `rules.minItems > 0`. */
  readonly minItems: readonly string[];
  /** Oneof name → member proto field names. */
  readonly oneofs: ReadonlyMap<string, readonly string[]>;
  /** Oneofs of which exactly one member must be set. */
  readonly requiredOneofs: readonly string[];
}

/** A field with its lookups resolved once. */
export interface CompiledField {
  readonly name: string;
  readonly kind: FieldKind;
  readonly type: string;
  readonly repeated: boolean;
  readonly mapKey: string | undefined;
  readonly oneof: string | undefined;
  readonly rules: FieldRules | undefined;
  /** Every accepted key spelling, the proto name first. */
  readonly spellings: readonly string[];
  /** The special JSON mapping of a well-known message type. */
  readonly wellKnown: WellKnownKind | undefined;
}

export interface CompiledEnum {
  readonly name: string;
  readonly values: Readonly<Record<string, number>>;
  /** Value names in declaration order. */
  readonly names: readonly string[];
  /** Upper-cased name → canonical name. */
  readonly byUpperName: ReadonlyMap<string, string>;
  /** Number → first canonical name declared with it. */
  readonly byNumber: ReadonlyMap<number, string>;
}

let schema: EnvoySchema | undefined;
const compiledMessages = new Map<string, CompiledMessage>();
const compiledEnums = new Map<string, CompiledEnum>();

/** Path of the schema file inside the package. */
export const SCHEMA_PATH = join(PACKAGE_ROOT, 'generated', 'envoy-schema.json');

/** The whole schema (read and parsed on first call). */
export function loadSchema(): EnvoySchema {
  if (schema === undefined) {
    const loaded = JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')) as EnvoySchema;
    Object.assign(loaded.messages, SUPPLEMENTARY_MESSAGES);
    for (const [type, fields] of Object.entries(SUPPLEMENTARY_FIELDS)) Object.assign(loaded.messages[type]!.fields, fields);
    schema = loaded;
  }
  return schema;
}

export function getMessageDescriptor(typeName: string): MessageDescriptor | undefined {
  const messages = loadSchema().messages;
  return Object.prototype.hasOwnProperty.call(messages, typeName) ? messages[typeName] : undefined;
}

export function getEnumDescriptor(typeName: string): Record<string, number> | undefined {
  const enums = loadSchema().enums;
  return Object.prototype.hasOwnProperty.call(enums, typeName) ? enums[typeName] : undefined;
}

/** lowerCamelCase JSON name of a proto field name, as protoc derives it. */
export function jsonNameOf(protoName: string): string {
  let out = '';
  let upper = false;
  for (let i = 0; i < protoName.length; i++) {
    const c = protoName[i]!;
    if (c === '_') {
      upper = true;
    } else if (upper) {
      out += c.toUpperCase();
      upper = false;
    } else {
      out += c;
    }
  }
  return out;
}

/** Lookup tables of a message type, built on first use; undefined for a type not in the schema. */
export function getCompiledMessage(typeName: string): CompiledMessage | undefined {
  const cached = compiledMessages.get(typeName);
  if (cached !== undefined) return cached;
  const descriptor = getMessageDescriptor(typeName);
  if (descriptor === undefined) return undefined;
  const keys = new Map<string, string>();
  const byKey = new Map<string, CompiledField>();
  const byName = new Map<string, CompiledField>();
  const required: string[] = [];
  const minItems: string[] = [];
  const oneofs = new Map<string, string[]>();
  for (const [name, field] of Object.entries(descriptor.fields)) {
    const spellings = [name];
    const camel = jsonNameOf(name);
    if (camel !== name) spellings.push(camel);
    if (field.json !== undefined && !spellings.includes(field.json)) spellings.push(field.json);
    const compiledField: CompiledField = {
      name,
      kind: field.kind,
      type: field.type,
      repeated: field.repeated === true,
      mapKey: field.mapKey,
      oneof: field.oneof,
      rules: field.rules,
      spellings,
      wellKnown: field.kind === 'message' ? WELL_KNOWN.get(field.type) : undefined,
    };
    byName.set(name, compiledField);
    for (const spelling of spellings) {
      keys.set(spelling, name);
      byKey.set(spelling, compiledField);
    }
    // PGV checks a oneof member only when it is the one set, so `required` on a member never fires on absence.
    if (field.rules?.required && field.oneof === undefined) required.push(name);
    // A proto3 scalar that is absent reads as "" or 0, which fails `min_len` and positive bounds in Envoy too.
    else if (field.oneof === undefined && absentScalarFails(field)) required.push(name);
    if ((field.repeated || field.mapKey !== undefined) && (field.rules?.minItems ?? 0) > 0) minItems.push(name);
    if (field.oneof !== undefined) {
      let members = oneofs.get(field.oneof);
      if (members === undefined) oneofs.set(field.oneof, (members = []));
      members.push(name);
    }
  }
  const compiled: CompiledMessage = {
    name: typeName,
    descriptor,
    fields: descriptor.fields,
    keys,
    byKey,
    byName,
    required,
    minItems,
    oneofs,
    requiredOneofs: descriptor.requiredOneofs ?? [],
  };
  compiledMessages.set(typeName, compiled);
  return compiled;
}

/** Spelling → proto field name map of a message type (every accepted key spelling). */
export function getFieldKeyMap(typeName: string): ReadonlyMap<string, string> | undefined {
  return getCompiledMessage(typeName)?.keys;
}

/** Lookup tables of an enum type, built on first use; undefined for a type not in the schema. */
export function getCompiledEnum(typeName: string): CompiledEnum | undefined {
  const cached = compiledEnums.get(typeName);
  if (cached !== undefined) return cached;
  const values = getEnumDescriptor(typeName);
  if (values === undefined) return undefined;
  const names = Object.keys(values);
  const byUpperName = new Map<string, string>();
  const byNumber = new Map<number, string>();
  for (const name of names) {
    const upper = name.toUpperCase();
    if (!byUpperName.has(upper)) byUpperName.set(upper, name);
    const number = values[name]!;
    if (!byNumber.has(number)) byNumber.set(number, name);
  }
  const compiled: CompiledEnum = { name: typeName, values, names, byUpperName, byNumber };
  compiledEnums.set(typeName, compiled);
  return compiled;
}

/** How the decoder and encoder treat a google.protobuf type with a special JSON mapping. */
export type WellKnownKind =
  | 'any'
  | 'duration'
  | 'timestamp'
  | 'struct'
  | 'value'
  | 'list'
  | 'empty'
  | 'fieldmask'
  | 'wrapper';

const WELL_KNOWN = new Map<string, WellKnownKind>([
  ['google.protobuf.Any', 'any'],
  ['google.protobuf.Duration', 'duration'],
  ['google.protobuf.Timestamp', 'timestamp'],
  ['google.protobuf.Struct', 'struct'],
  ['google.protobuf.Value', 'value'],
  ['google.protobuf.ListValue', 'list'],
  ['google.protobuf.Empty', 'empty'],
  ['google.protobuf.FieldMask', 'fieldmask'],
  ['google.protobuf.DoubleValue', 'wrapper'],
  ['google.protobuf.FloatValue', 'wrapper'],
  ['google.protobuf.Int64Value', 'wrapper'],
  ['google.protobuf.UInt64Value', 'wrapper'],
  ['google.protobuf.Int32Value', 'wrapper'],
  ['google.protobuf.UInt32Value', 'wrapper'],
  ['google.protobuf.BoolValue', 'wrapper'],
  ['google.protobuf.StringValue', 'wrapper'],
  ['google.protobuf.BytesValue', 'wrapper'],
]);

const WRAPPED_SCALAR = new Map<string, string>([
  ['google.protobuf.DoubleValue', 'double'],
  ['google.protobuf.FloatValue', 'float'],
  ['google.protobuf.Int64Value', 'int64'],
  ['google.protobuf.UInt64Value', 'uint64'],
  ['google.protobuf.Int32Value', 'int32'],
  ['google.protobuf.UInt32Value', 'uint32'],
  ['google.protobuf.BoolValue', 'bool'],
  ['google.protobuf.StringValue', 'string'],
  ['google.protobuf.BytesValue', 'bytes'],
]);

/** The special JSON mapping of a well-known type, or undefined for an ordinary message. */
export function wellKnownKind(typeName: string): WellKnownKind | undefined {
  return WELL_KNOWN.get(typeName);
}

/** The scalar type carried by a wrapper message (`google.protobuf.UInt32Value` → `uint32`). */
export function wrappedScalarType(typeName: string): string | undefined {
  return WRAPPED_SCALAR.get(typeName);
}

function absentScalarFails(field: FieldDescriptor): boolean {
  if (field.kind !== 'scalar' || field.repeated || field.mapKey !== undefined) return false;
  const rules = field.rules;
  if (rules === undefined) return false;
  return (rules.minLen ?? 0) > 0 || (rules.gt !== undefined && rules.gt >= 0) || (rules.gte !== undefined && rules.gte > 0);
}
