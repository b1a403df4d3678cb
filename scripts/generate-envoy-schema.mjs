// Generates Portico's view of the Envoy v3 API from the .proto files vendored in @grpc/grpc-js-xds:
//   generated/envoy-schema.json  field tables, enums and validate.rules used by the proto3-JSON decoder
//   src/generated/envoy.ts      TypeScript types of the decoded configuration
// Run with `npm run generate:envoy`; both outputs are committed so builds need neither protobufjs nor the protos.
import protobuf from 'protobufjs';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const deps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
const includeDirs = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(deps, d));
const builtIn = new Set(Object.keys(protobuf.common).filter((k) => k.endsWith('.proto')));
const protobufjsDir = dirname(require.resolve('protobufjs/package.json'));

function locate(target) {
  if (builtIn.has(target)) return target;
  for (const dir of [...includeDirs, protobufjsDir]) {
    const candidate = join(dir, target);
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

// Some vendored files import v2 protos that are not shipped; leave those (and their dependents) out.
const loadable = new Map();
function isLoadable(target) {
  if (loadable.has(target)) return loadable.get(target);
  loadable.set(target, true);
  const file = locate(target);
  let ok = file !== null;
  if (ok && !builtIn.has(target)) {
    const imports = [...readFileSync(file, 'utf8').matchAll(/^import (?:public |weak )?"([^"]+)";/gm)];
    ok = imports.every((m) => isLoadable(m[1]));
  }
  loadable.set(target, ok);
  return ok;
}

function listProtos(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return listProtos(path);
    return entry.name.endsWith('.proto') ? [path] : [];
  });
}

const apiRoot = join(deps, 'envoy-api');
const files = listProtos(join(apiRoot, 'envoy'))
  .map((file) => relative(apiRoot, file))
  .filter((file) => !/\/v2(alpha\d*)?\/|\/api\/v2\//.test(file))
  .filter(isLoadable)
  .sort();

const root = new protobuf.Root();
root.resolvePath = (_origin, target) => locate(target) ?? target;
root.loadSync(files, { keepCase: true });
root.resolveAll();

const SCALARS = new Set(['double', 'float', 'int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64',
  'fixed32', 'fixed64', 'sfixed32', 'sfixed64', 'bool', 'string', 'bytes']);

// Turns the flattened `(validate.rules).<kind>.<rule>` options into the few rules the decoder enforces.
function rulesOf(field) {
  const options = field.options ?? {};
  const rules = {};
  for (const [key, value] of Object.entries(options)) {
    const m = /^\(validate\.rules\)\.(\w+)\.(\w+)$/.exec(key);
    if (!m) continue;
    const [, kind, rule] = m;
    if ((kind === 'message' || kind === 'any') && rule === 'required' && value) rules.required = true;
    else if (kind === 'string' && (rule === 'min_len' || rule === 'min_bytes')) rules.minLen = Number(value);
    else if (kind === 'string' && (rule === 'max_len' || rule === 'max_bytes')) rules.maxLen = Number(value);
    else if (kind === 'string' && rule === 'well_known_regex') rules.wellKnown = value;
    else if (kind === 'repeated' && rule === 'min_items') rules.minItems = Number(value);
    else if (kind === 'repeated' && rule === 'max_items') rules.maxItems = Number(value);
    else if (kind === 'map' && rule === 'min_pairs') rules.minItems = Number(value);
    else if (kind === 'enum' && rule === 'defined_only' && value) rules.definedOnly = true;
    else if (['gt', 'gte', 'lt', 'lte'].includes(rule) && kind !== 'duration' && kind !== 'timestamp') rules[rule] = Number(value);
  }
  // Duration bounds: an empty bound (`gt: {}`, meaning > 0) survives only in parsedOptions.
  const parsed = (field.parsedOptions ?? []).find((o) => o['(validate.rules)'])?.['(validate.rules)'];
  for (const rule of ['gt', 'gte', 'lt', 'lte']) {
    const bound = parsed?.duration?.[rule];
    if (bound !== undefined) rules[rule] = Number(bound.seconds ?? 0) * 1000 + Number(bound.nanos ?? 0) / 1e6;
  }
  // `strict: false` header rules only refuse NUL, CR and LF, like HTTP_HEADER_VALUE.
  if (rules.wellKnown && options['(validate.rules).string.strict'] === false) rules.wellKnown = 'HTTP_HEADER_VALUE';
  if (options['(validate.rules).duration.required']) rules.required = true;
  return Object.keys(rules).length ? rules : undefined;
}

const messages = {};
const enums = {};
function visit(ns) {
  for (const child of ns.nestedArray) {
    const fullName = child.fullName.slice(1);
    if (child instanceof protobuf.Type) {
      const fields = {};
      for (const field of child.fieldsArray) {
        const entry = {};
        const resolved = field.resolvedType;
        if (resolved instanceof protobuf.Enum) { entry.kind = 'enum'; entry.type = resolved.fullName.slice(1); }
        else if (resolved instanceof protobuf.Type) { entry.kind = 'message'; entry.type = resolved.fullName.slice(1); }
        else if (SCALARS.has(field.type)) { entry.kind = 'scalar'; entry.type = field.type; }
        else throw new Error(`unresolved type ${field.type} of ${fullName}.${field.name}`);
        if (field.json_name && field.json_name !== camel(field.name)) entry.json = field.json_name;
        if (field.repeated) entry.repeated = true;
        if (field.map) entry.mapKey = field.keyType;
        if (field.partOf) entry.oneof = field.partOf.name;
        if (field.options?.deprecated) entry.deprecated = true;
        const rules = rulesOf(field);
        if (rules) entry.rules = rules;
        fields[field.name] = entry;
      }
      const requiredOneofs = child.oneofsArray
        .filter((o) => o.options?.['(validate.required)'])
        .map((o) => o.name);
      messages[fullName] = requiredOneofs.length ? { fields, requiredOneofs } : { fields };
    } else if (child instanceof protobuf.Enum) {
      enums[fullName] = child.values;
    }
    if (child.nestedArray) visit(child);
  }
}
function camel(name) { return name.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase()); }
visit(root);

const sortKeys = (obj) => Object.fromEntries(Object.entries(obj).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
const schema = { source: '@grpc/grpc-js-xds deps (Envoy v3 API)', messages: sortKeys(messages), enums: sortKeys(enums) };
mkdirSync('generated', { recursive: true });
writeFileSync('generated/envoy-schema.json', JSON.stringify(schema) + '\n');

// ---- TypeScript types -------------------------------------------------------------------------------------
const WELL_KNOWN_TS = {
  'google.protobuf.Duration': 'number',
  'google.protobuf.Timestamp': 'string',
  'google.protobuf.Any': 'AnyMessage',
  'google.protobuf.Struct': 'Record<string, unknown>',
  'google.protobuf.Value': 'unknown',
  'google.protobuf.ListValue': 'unknown[]',
  'google.protobuf.Empty': 'Record<string, never>',
  'google.protobuf.FieldMask': 'string',
  'google.protobuf.DoubleValue': 'number', 'google.protobuf.FloatValue': 'number',
  'google.protobuf.Int64Value': 'number', 'google.protobuf.UInt64Value': 'number',
  'google.protobuf.Int32Value': 'number', 'google.protobuf.UInt32Value': 'number',
  'google.protobuf.BoolValue': 'boolean', 'google.protobuf.StringValue': 'string',
  'google.protobuf.BytesValue': 'Uint8Array',
  'google.protobuf.NullValue': 'null',
};
function scalarTs(type) {
  if (type === 'bool') return 'boolean';
  if (type === 'string') return 'string';
  if (type === 'bytes') return 'Uint8Array';
  return 'number';
}
function typeRef(entry) {
  if (entry.kind === 'scalar') return scalarTs(entry.type);
  if (WELL_KNOWN_TS[entry.type]) return WELL_KNOWN_TS[entry.type];
  return entry.type;
}

// Build a tree of namespaces so nested messages and packages nest in TypeScript too.
const tree = { children: new Map(), decls: [] };
function nodeFor(path) {
  let node = tree;
  for (const part of path) {
    if (!node.children.has(part)) node.children.set(part, { children: new Map(), decls: [] });
    node = node.children.get(part);
  }
  return node;
}
const prop = (name) => (/^[A-Za-z_$][\w$]*$/.test(name) ? name : JSON.stringify(name));
for (const [name, message] of Object.entries(schema.messages)) {
  if (name.startsWith('google.protobuf.')) continue;
  const parts = name.split('.');
  const lines = Object.entries(message.fields).map(([fieldName, entry]) => {
    let t = typeRef(entry);
    if (entry.mapKey) t = `Record<string, ${t}>`;
    else if (entry.repeated) t = `${t}[]`;
    return `  ${prop(fieldName)}?: ${t};${entry.deprecated ? ' // deprecated' : ''}`;
  });
  nodeFor(parts.slice(0, -1)).decls.push(`interface ${parts.at(-1)} {\n${lines.join('\n')}\n}`);
}
for (const [name, values] of Object.entries(schema.enums)) {
  if (name.startsWith('google.protobuf.')) continue;
  const parts = name.split('.');
  const union = Object.keys(values).map((v) => JSON.stringify(v)).join(' | ') || 'never';
  nodeFor(parts.slice(0, -1)).decls.push(`type ${parts.at(-1)} = ${union};`);
}
function render(node, indent) {
  const out = [];
  for (const decl of node.decls) out.push(decl.split('\n').map((l) => indent + l).join('\n'));
  for (const [name, child] of [...node.children].sort(([a], [b]) => (a < b ? -1 : 1))) {
    out.push(`${indent}namespace ${name} {\n${render(child, indent + '  ')}\n${indent}}`);
  }
  return out.join('\n');
}
const header = `// Generated by scripts/generate-envoy-schema.mjs from the Envoy v3 protos in @grpc/grpc-js-xds. Do not edit.
// Decoded configuration shape: proto field names, Durations in milliseconds, wrappers as plain scalars,
// enums by name, 64-bit integers as numbers, google.protobuf.Any as {type_url, value} with the decoded message.
/* eslint-disable */
export interface AnyMessage { type_url: string; value: unknown }
`;
const body = [...tree.children].sort(([a], [b]) => (a < b ? -1 : 1))
  .map(([name, child]) => `export declare namespace ${name} {\n${render(child, '  ')}\n}`).join('\n');
mkdirSync('src/generated', { recursive: true });
writeFileSync('src/generated/envoy.ts', header + body + '\n');
console.log(`${files.length} proto files, ${Object.keys(messages).length} messages, ${Object.keys(enums).length} enums`);
