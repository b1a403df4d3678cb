import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import type { envoy } from '../generated/envoy.js';
import type { ConfigError } from './errors.js';
import { decodeMessage } from './proto/decode.js';
import { checkSupport } from './support.js';
import { validateBootstrap } from './validate.js';

export type Bootstrap = envoy.config.bootstrap.v3.Bootstrap;

/**
 * Parses YAML or JSON text. JSON is read as YAML 1.2, so both go through one parser, but a document that is
 * valid JSON takes the much faster JSON parser first (a 10,000-route bootstrap: 10 ms instead of a second).
 */
export function parseDocument(text: string, path: string, errors: ConfigError[]): unknown {
  if (/^\s*\{/.test(text)) {
    try {
      return JSON.parse(text);
    } catch {
      // Not strict JSON (comments, YAML flow style...): the YAML parser reads it or reports where it fails.
    }
  }
  const doc = YAML.parseDocument(text, { prettyErrors: false, uniqueKeys: true, merge: true });
  for (const e of doc.errors) {
    errors.push({ code: 'parse_error', path, message: `${e.message.split('\n')[0]} (line ${e.linePos?.[0].line ?? '?'})` });
  }
  if (doc.errors.length) return undefined;
  return doc.toJS({ maxAliasCount: 1000 });
}

/**
 * Decodes and validates a bootstrap document. Returns the decoded bootstrap and every problem found: decode
 * errors (unknown fields, wrong types, validate.rules), unsupported extensions and fields, and cross-reference
 * errors. Callers must not use the bootstrap when `errors` is non-empty.
 */
export function checkBootstrap(json: unknown): { bootstrap: Bootstrap; errors: ConfigError[] } {
  const errors: ConfigError[] = [];
  const bootstrap = decodeMessage<Bootstrap>('envoy.config.bootstrap.v3.Bootstrap', json ?? {}, '', errors);
  // The decoder drops values it cannot decode, so the later passes see a well-typed tree and can report
  // their problems in the same run.
  checkSupport('envoy.config.bootstrap.v3.Bootstrap', bootstrap, '', errors);
  validateBootstrap(bootstrap, errors);
  return { bootstrap, errors };
}

/** Reads `--config-path` and merges `--config-yaml` over it (as Envoy does), then checks it. */
export function loadBootstrap(options: { configPath?: string; configYaml?: string; serviceCluster?: string }): {
  bootstrap: Bootstrap;
  errors: ConfigError[];
  /** The merged document before decoding: what worker processes are given. */
  document: unknown;
} {
  const errors: ConfigError[] = [];
  let json: Record<string, unknown> = {};
  if (options.configPath !== undefined) {
    let text: string;
    try {
      text = readFileSync(options.configPath, 'utf8');
    } catch (err) {
      errors.push({ code: 'io_error', path: options.configPath, message: (err as Error).message });
      return { bootstrap: {}, errors, document: undefined };
    }
    json = asObject(parseDocument(text, options.configPath, errors), options.configPath, errors);
  }
  if (options.configYaml !== undefined) {
    const overlay = asObject(parseDocument(options.configYaml, '--config-yaml', errors), '--config-yaml', errors);
    json = mergeProtoJson(json, overlay);
  }
  // `--service-cluster` overrides `node.cluster`, as Envoy's.
  if (options.serviceCluster !== undefined) json = mergeProtoJson(json, { node: { cluster: options.serviceCluster } });
  if (errors.length) return { bootstrap: {}, errors, document: json };
  return { ...checkBootstrap(json), document: json };
}

function asObject(value: unknown, path: string, errors: ConfigError[]): Record<string, unknown> {
  if (value === undefined || value === null) return {};
  if (typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  errors.push({ code: 'wrong_type', path, message: 'a bootstrap must be a mapping' });
  return {};
}

/** Protobuf MergeFrom on JSON: objects merge, lists concatenate, scalars replace. */
function mergeProtoJson(base: Record<string, unknown>, overlay: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(overlay)) {
    const existing = out[key];
    if (Array.isArray(existing) && Array.isArray(value)) out[key] = [...existing, ...value];
    else if (isPlainObject(existing) && isPlainObject(value)) out[key] = mergeProtoJson(existing, value);
    else out[key] = value;
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

