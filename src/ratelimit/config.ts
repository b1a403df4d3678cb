/**
 * The configuration of `portico ratelimit`, in the format of envoyproxy/ratelimit, read unmodified: one YAML
 * document per domain (a file, or every `.yaml`/`.yml` file of a directory), each a tree of descriptors with
 * `key`, optional `value`, an optional `rate_limit` and nested `descriptors`. A request descriptor's entries walk
 * the tree in order, each matching `key` + `value` first, then `key` alone (the default for any value); the node
 * its last entry reaches holds the limit.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { parseAllDocuments } from 'yaml';

export type Unit = 'SECOND' | 'MINUTE' | 'HOUR' | 'DAY';
export const UNIT_SECONDS: Record<Unit, number> = { SECOND: 1, MINUTE: 60, HOUR: 3600, DAY: 86_400 };

export interface Limit {
  readonly requestsPerUnit: number;
  readonly unit: Unit;
  readonly name: string | undefined;
  readonly unlimited: boolean;
  readonly shadowMode: boolean;
  /** Stats under the request's own values, not the configuration's keys. */
  readonly detailedMetric: boolean;
  /** `<domain>.<key>_<value>.<key>` of the node: the name of its stats. */
  readonly statKey: string;
}

interface DescriptorNode {
  readonly limit: Limit | undefined;
  /** Children by `key_value`, and by `key` for those without a value. */
  readonly children: ReadonlyMap<string, DescriptorNode>;
}

export interface RateLimitConfig {
  /** Domain → its descriptor tree's first level. */
  readonly domains: ReadonlyMap<string, ReadonlyMap<string, DescriptorNode>>;
}

export interface ConfigProblem {
  path: string;
  message: string;
}

/** Reads `path` (a file or a directory of YAML files); every problem is reported with its place. */
export function loadRateLimitConfig(path: string): { config: RateLimitConfig | undefined; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const documents: { path: string; value: unknown }[] = [];
  let files: string[];
  try {
    files = statSync(path).isDirectory()
      ? readdirSync(path)
          .filter((f) => ['.yaml', '.yml'].includes(extname(f)))
          .sort()
          .map((f) => join(path, f))
      : [path];
  } catch (err) {
    return { config: undefined, problems: [{ path, message: (err as Error).message }] };
  }
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      problems.push({ path: file, message: (err as Error).message });
      continue;
    }
    parseAllDocuments(text).forEach((doc, i) => {
      const where = `${file}#${i}`;
      if (doc.errors.length > 0) {
        for (const error of doc.errors) problems.push({ path: where, message: error.message });
        return;
      }
      const value: unknown = doc.toJS();
      if (value === null || value === undefined) return;
      documents.push({ path: where, value });
    });
  }
  const compiled = compileRateLimitConfig(documents);
  problems.push(...compiled.problems);
  return { config: problems.length === 0 ? compiled.config : undefined, problems };
}

/**
 * Compiles domain documents already parsed: those of the files, or those the control plane translates its
 * `RateLimit` resources into (src/controlplane/rate-limits.ts), so both are held to the same rules.
 */
export function compileRateLimitConfig(documents: readonly { path: string; value: unknown }[]): { config: RateLimitConfig | undefined; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const domains = new Map<string, Map<string, DescriptorNode>>();
  for (const { path, value } of documents) compileDomain(value, path, domains, problems);
  return { config: problems.length === 0 ? { domains } : undefined, problems };
}

/** A node's name in its level and in stats: `key_value`, or `key` for the node that takes any value. */
export function descriptorName(key: string, value: string | undefined): string {
  return value === undefined ? key : `${key}_${value}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function compileDomain(value: unknown, path: string, domains: Map<string, Map<string, DescriptorNode>>, problems: ConfigProblem[]): void {
  if (!isObject(value)) {
    problems.push({ path, message: 'a rate limit configuration is a mapping with domain and descriptors' });
    return;
  }
  for (const key of Object.keys(value)) if (key !== 'domain' && key !== 'descriptors') problems.push({ path: `${path}.${key}`, message: `unknown field "${key}"` });
  const domain = value.domain;
  if (typeof domain !== 'string' || domain === '') {
    problems.push({ path: `${path}.domain`, message: 'domain must be a non-empty string' });
    return;
  }
  if (domains.has(domain)) {
    problems.push({ path: `${path}.domain`, message: `domain "${domain}" is configured twice` });
    return;
  }
  domains.set(domain, compileLevel(value.descriptors, `${path}.descriptors`, domain, problems));
}

const DESCRIPTOR_FIELDS = new Set(['key', 'value', 'rate_limit', 'descriptors', 'shadow_mode', 'detailed_metric']);
const LIMIT_FIELDS = new Set(['unit', 'requests_per_unit', 'name', 'unlimited']);

function compileLevel(value: unknown, path: string, statPrefix: string, problems: ConfigProblem[]): Map<string, DescriptorNode> {
  const level = new Map<string, DescriptorNode>();
  if (value === undefined || value === null) return level;
  if (!Array.isArray(value)) {
    problems.push({ path, message: 'descriptors must be a list' });
    return level;
  }
  value.forEach((item, i) => {
    const at = `${path}[${i}]`;
    if (!isObject(item)) {
      problems.push({ path: at, message: 'a descriptor is a mapping with key, value, rate_limit, descriptors' });
      return;
    }
    for (const field of Object.keys(item)) if (!DESCRIPTOR_FIELDS.has(field)) problems.push({ path: `${at}.${field}`, message: `unknown field "${field}"` });
    const key = item.key;
    if (typeof key !== 'string' || key === '') {
      problems.push({ path: `${at}.key`, message: 'key must be a non-empty string' });
      return;
    }
    const hasValue = item.value !== undefined && item.value !== null && item.value !== '';
    if (hasValue && typeof item.value !== 'string' && typeof item.value !== 'number') problems.push({ path: `${at}.value`, message: 'value must be a string' });
    const mapKey = descriptorName(key, hasValue ? String(item.value) : undefined);
    if (level.has(mapKey)) {
      problems.push({ path: at, message: `duplicate descriptor "${mapKey}"` });
      return;
    }
    const statKey = `${statPrefix}.${mapKey}`;
    level.set(mapKey, {
      limit: compileLimit(item, at, statKey, problems),
      children: compileLevel(item.descriptors, `${at}.descriptors`, statKey, problems),
    });
  });
  return level;
}

function compileLimit(item: Record<string, unknown>, path: string, statKey: string, problems: ConfigProblem[]): Limit | undefined {
  const shadowMode = item.shadow_mode ?? false;
  const detailedMetric = item.detailed_metric ?? false;
  if (typeof shadowMode !== 'boolean') problems.push({ path: `${path}.shadow_mode`, message: 'shadow_mode must be true or false' });
  if (typeof detailedMetric !== 'boolean') problems.push({ path: `${path}.detailed_metric`, message: 'detailed_metric must be true or false' });
  const limit = item.rate_limit;
  if (limit === undefined || limit === null) return undefined;
  const at = `${path}.rate_limit`;
  if (!isObject(limit)) {
    problems.push({ path: at, message: 'rate_limit is a mapping with unit and requests_per_unit' });
    return undefined;
  }
  for (const field of Object.keys(limit)) if (!LIMIT_FIELDS.has(field)) problems.push({ path: `${at}.${field}`, message: `unknown field "${field}"` });
  const unlimited = limit.unlimited ?? false;
  if (typeof unlimited !== 'boolean') problems.push({ path: `${at}.unlimited`, message: 'unlimited must be true or false' });
  const unit = typeof limit.unit === 'string' ? (limit.unit.toUpperCase() as Unit) : undefined;
  const requestsPerUnit = limit.requests_per_unit;
  if (unlimited !== true) {
    if (unit === undefined || !(unit in UNIT_SECONDS)) problems.push({ path: `${at}.unit`, message: 'unit must be second, minute, hour or day' });
    if (typeof requestsPerUnit !== 'number' || !Number.isInteger(requestsPerUnit) || requestsPerUnit < 0) {
      problems.push({ path: `${at}.requests_per_unit`, message: 'requests_per_unit must be a whole number' });
    }
  }
  if (limit.name !== undefined && typeof limit.name !== 'string') problems.push({ path: `${at}.name`, message: 'name must be a string' });
  return {
    requestsPerUnit: typeof requestsPerUnit === 'number' ? requestsPerUnit : 0,
    unit: unit !== undefined && unit in UNIT_SECONDS ? unit : 'SECOND',
    name: typeof limit.name === 'string' ? limit.name : undefined,
    unlimited: unlimited === true,
    shadowMode: shadowMode === true,
    detailedMetric: detailedMetric === true,
    statKey,
  };
}

export interface DescriptorEntry {
  key: string;
  value: string;
}

/** The limit for one request descriptor of `domain`; undefined when no node matches its entries. */
export function findLimit(config: RateLimitConfig, domain: string, entries: readonly DescriptorEntry[]): Limit | undefined {
  let level = config.domains.get(domain);
  let node: DescriptorNode | undefined;
  for (const entry of entries) {
    if (level === undefined) return undefined;
    node = level.get(descriptorName(entry.key, entry.value)) ?? level.get(entry.key);
    if (node === undefined) return undefined;
    level = node.children;
  }
  return node?.limit;
}
