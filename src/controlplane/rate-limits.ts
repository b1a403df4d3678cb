/**
 * `RateLimit` resources → the configuration of the rate limit service `portico start` runs in its own process:
 * envoyproxy/ratelimit's descriptor tree (src/ratelimit/config.ts), one node per pattern entry, the limit on the
 * node of the last entry. The gateway's ratelimit filter sends one domain, so all RateLimits share one.
 */
import { compileRateLimitConfig, descriptorName, type RateLimitConfig } from '../ratelimit/config.js';
import { DEFAULTS, type RateLimit, type RateLimitLimit, type RateLimitService, resourceKey } from './resources.js';
import type { ResourceError } from './translate.js';

/** One limit of one RateLimit, as the API and the dashboard show it. */
export interface LimitInfo {
  /** `RateLimit/name` */
  resource: string;
  /** Its index in `spec.limits`. */
  index: number;
  name: string | undefined;
  domain: string;
  pattern: Record<string, string>[];
  rate: number;
  unit: RateLimitLimit['unit'];
  action: 'Enforce' | 'LogOnly';
  /** The name of its stats in the service (`<domain>.<key>_<value>.<key>`). */
  statKey: string;
}

export interface RateLimitTable {
  /** The domain the filter sends; undefined when Portico's own service is not used. */
  domain: string | undefined;
  /** The RateLimits behind it, by name. */
  resources: RateLimit[];
  config: RateLimitConfig;
  limits: LimitInfo[];
}

interface Node {
  key: string;
  value: string | undefined;
  children: Map<string, Node>;
  limit?: { owner: string; limit: RateLimitLimit };
}

/** An entry's value of "" or "*" is "any value, each counted on its own": the node without a value. */
function entryOf(entry: Record<string, string>): { key: string; value: string | undefined } {
  const [key, value] = Object.entries(entry)[0]!;
  return { key, value: value === '' || value === '*' ? undefined : value };
}

/**
 * Compiles the RateLimits (validated, sorted by name). With a RateLimitService they are refused: the filter then
 * calls that service, and they would configure one nobody asks.
 */
export function compileRateLimits(
  rateLimits: readonly RateLimit[],
  rls: RateLimitService | undefined,
  port: number | undefined,
  errors: ResourceError[],
): RateLimitTable {
  const empty: RateLimitTable = { domain: undefined, resources: [], config: { domains: new Map() }, limits: [] };
  if (rateLimits.length === 0) return empty;
  const refusal = rls
    ? `RateLimits configure Portico's own rate limit service, which is not called while ${resourceKey(rls)} is in use; delete one or the other`
    : port === undefined
      ? "RateLimits need Portico's own rate limit service, which only portico start runs"
      : undefined;
  if (refusal !== undefined) {
    for (const r of rateLimits) errors.push({ resource: resourceKey(r), code: 'oneof_conflict', path: 'spec', message: refusal });
    return empty;
  }
  const first = rateLimits[0]!;
  const domain = first.spec.domain ?? DEFAULTS.rateLimitDomain;
  const root = new Map<string, Node>();
  const limits: LimitInfo[] = [];
  const before = errors.length;
  for (const r of rateLimits) {
    const resource = resourceKey(r);
    const own = r.spec.domain ?? DEFAULTS.rateLimitDomain;
    if (own !== domain) {
      errors.push({ resource, code: 'invalid_value', path: 'spec.domain', message: `the gateway sends one domain, "${domain}" of ${resourceKey(first)}; "${own}" would never be asked` });
      continue;
    }
    r.spec.limits.forEach((limit, index) => {
      const owner = `${resource} spec.limits[${index}]`;
      let level = root;
      let node: Node | undefined;
      const names: string[] = [];
      for (const entry of limit.pattern) {
        const { key, value } = entryOf(entry);
        const name = descriptorName(key, value);
        names.push(name);
        node = level.get(name);
        if (node === undefined) level.set(name, (node = { key, value, children: new Map() }));
        level = node.children;
      }
      if (node!.limit !== undefined) {
        errors.push({ resource, code: 'invalid_value', path: `spec.limits[${index}].pattern`, message: `the same pattern as ${node!.limit.owner}: a request can have one limit per descriptor` });
        return;
      }
      node!.limit = { owner, limit };
      limits.push({
        resource,
        index,
        name: limit.name,
        domain,
        pattern: limit.pattern,
        rate: limit.rate,
        unit: limit.unit,
        action: limit.action ?? 'Enforce',
        statKey: [domain, ...names].join('.'),
      });
    });
  }
  if (errors.length > before) return empty;
  const { config, problems } = compileRateLimitConfig([{ path: 'RateLimits', value: { domain, descriptors: descriptors(root) } }]);
  // Everything the compiler checks was checked above; a problem here is a bug of this translation.
  if (config === undefined) throw new Error(`RateLimits translated to an invalid configuration: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`);
  return { domain, resources: [...rateLimits], config, limits };
}

/** A tree level in envoyproxy/ratelimit's YAML shape. */
function descriptors(level: Map<string, Node>): object[] {
  return [...level.values()].map((node) => {
    const out: Record<string, unknown> = { key: node.key };
    if (node.value !== undefined) out.value = node.value;
    const limit = node.limit?.limit;
    if (limit !== undefined) {
      out.rate_limit = { unit: limit.unit, requests_per_unit: limit.rate, ...(limit.name !== undefined ? { name: limit.name } : {}) };
      if (limit.action === 'LogOnly') out.shadow_mode = true;
    }
    if (node.children.size > 0) out.descriptors = descriptors(node.children);
    return out;
  });
}
