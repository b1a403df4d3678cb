/**
 * Route and virtual host `rate_limits` (Envoy's RateLimitPolicy): each entry's actions, compiled once, turn a
 * request into one descriptor (a list of key/value entries) for the rate limit filters, global and local, to
 * check. As in Envoy, an action that finds no value drops its whole descriptor (unless it says
 * `skip_if_absent`), and only the entries of the filter's `stage` count.
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { envoy } from '../../generated/envoy.js';
import type { ConfigError } from '../../config/errors.js';
import { compileHeaderMatchers, headerValue } from '../matching/header-matcher.js';
import { compileQueryParameterMatchers, parseQuery } from '../matching/query-matcher.js';
import type { RequestHead, StreamInfo } from '../stream-info.js';
import { ActionKind } from './route-action.js';
import type { RouteEntry, VirtualHost } from './route-table.js';

type RateLimitConfig = envoy.config.route.v3.RateLimit;
/** The generated types predate the `query_parameters` action (its schema is in src/config/proto/supplement.ts). */
type ActionConfig = envoy.config.route.v3.RateLimit.Action & {
  query_parameters?: { query_parameter_name?: string; descriptor_key?: string; skip_if_absent?: boolean };
};

export interface DescriptorEntry {
  key: string;
  value: string;
}

/** One descriptor, as the RLS protocol and the local rate limit filter's `descriptors` spell it. */
export interface RateLimitDescriptor {
  entries: DescriptorEntry[];
}

/** What an action reads a request from. */
export interface DescriptorSource {
  readonly head: RequestHead;
  readonly info: StreamInfo;
}

/** The request's value for one action: an entry, SKIP (no entry, the descriptor stays) or undefined (drop it). */
type ActionFn = (source: DescriptorSource, route: RouteEntry, localCluster: string) => DescriptorEntry | typeof SKIP | undefined;
const SKIP = 0;

/** One compiled `rate_limits` entry. */
export interface RateLimitEntry {
  readonly stage: number;
  readonly actions: readonly ActionFn[];
}

/** `rate_limits` of a route or virtual host; undefined when it has none. */
export function compileRateLimits(configs: readonly RateLimitConfig[] | undefined, path: string, errors: ConfigError[]): readonly RateLimitEntry[] | undefined {
  if (configs === undefined || configs.length === 0) return undefined;
  return configs.map((config, i) => {
    const entryPath = `${path}[${i}]`;
    if (config.limit !== undefined) {
      errors.push({ code: 'unsupported_field', path: `${entryPath}.limit`, message: 'rate_limits limit (a dynamic override of the limit) is not supported' });
    }
    const actions = (config.actions ?? []).map((action, j) => compileAction(action, `${entryPath}.actions[${j}]`, errors));
    if (actions.length === 0) errors.push({ code: 'missing_required', path: `${entryPath}.actions`, message: 'a rate limit needs at least one action' });
    return { stage: config.stage ?? 0, actions };
  });
}

function compileAction(config: ActionConfig, path: string, errors: ConfigError[]): ActionFn {
  if (config.source_cluster !== undefined) return (_s, _r, localCluster) => ({ key: 'source_cluster', value: localCluster });
  if (config.destination_cluster !== undefined) {
    return (source, route) => {
      const cluster = destinationCluster(source, route);
      return cluster === undefined ? undefined : { key: 'destination_cluster', value: cluster };
    };
  }
  if (config.request_headers !== undefined) {
    const { header_name: header = '', descriptor_key: key = '', skip_if_absent: skip = false } = config.request_headers;
    const name = header.toLowerCase();
    return (source) => {
      const value = headerValue(source.head, name);
      return value === undefined ? (skip ? SKIP : undefined) : { key, value };
    };
  }
  if (config.remote_address !== undefined) {
    return (source) => (source.info.downstreamRemoteAddress ? { key: 'remote_address', value: source.info.downstreamRemoteAddress } : undefined);
  }
  if (config.generic_key !== undefined) {
    const entry = { key: config.generic_key.descriptor_key || 'generic_key', value: config.generic_key.descriptor_value ?? '' };
    return () => entry;
  }
  if (config.header_value_match !== undefined) {
    const match = config.header_value_match;
    const matches = compileHeaderMatchers(match.headers, `${path}.header_value_match.headers`, errors);
    const expect = match.expect_match ?? true;
    const entry = { key: match.descriptor_key || 'header_match', value: match.descriptor_value ?? '' };
    return (source) => (matches(source.head) === expect ? entry : undefined);
  }
  if (config.query_parameters !== undefined) {
    const { query_parameter_name: name = '', descriptor_key: key = '', skip_if_absent: skip = false } = config.query_parameters;
    return (source) => {
      const value = parseQuery(source.head.path).get(name);
      return value === undefined ? (skip ? SKIP : undefined) : { key, value };
    };
  }
  if (config.query_parameter_value_match !== undefined) {
    const match = config.query_parameter_value_match;
    const matches = compileQueryParameterMatchers(match.query_parameters ?? [], `${path}.query_parameter_value_match.query_parameters`, errors);
    const expect = match.expect_match ?? true;
    const entry = { key: match.descriptor_key || 'query_match', value: match.descriptor_value ?? '' };
    return (source) => (matches(parseQuery(source.head.path)) === expect ? entry : undefined);
  }
  if (config.masked_remote_address !== undefined) {
    const v4 = config.masked_remote_address.v4_prefix_mask_len ?? 32;
    const v6 = config.masked_remote_address.v6_prefix_mask_len ?? 128;
    return (source) => {
      const masked = maskAddress(source.info.downstreamRemoteAddress, v4, v6);
      return masked === undefined ? undefined : { key: 'masked_remote_address', value: masked };
    };
  }
  if (config.metadata !== undefined) return compileMetadataAction(config.metadata, path, errors);
  const set = Object.keys(config).filter((k) => (config as Record<string, unknown>)[k] !== undefined);
  errors.push({ code: 'unsupported_field', path: `${path}${set[0] ? `.${set[0]}` : ''}`, message: `rate limit action ${set[0] ?? '(empty)'} is not supported` });
  return () => undefined;
}

function compileMetadataAction(config: envoy.config.route.v3.RateLimit.Action.MetaData, path: string, errors: ConfigError[]): ActionFn {
  const key = config.descriptor_key ?? '';
  const namespace = config.metadata_key?.key ?? '';
  const steps = (config.metadata_key?.path ?? []).map((segment) => segment.key ?? '');
  const fallback = config.default_value || undefined;
  const skip = config.skip_if_absent ?? false;
  if (config.source === 'ROUTE_ENTRY') {
    errors.push({ code: 'unsupported_field', path: `${path}.metadata.source`, message: 'metadata source ROUTE_ENTRY is not supported (route metadata is not kept)' });
  }
  return (source) => {
    let value: unknown = source.info.dynamicMetadata?.[namespace];
    for (const step of steps) value = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[step] : undefined;
    // Envoy takes string values only.
    const text = typeof value === 'string' && value !== '' ? value : fallback;
    if (text === undefined) return skip ? SKIP : undefined;
    return { key, value: text };
  };
}

/**
 * The route's target cluster as far as it is known before the router runs: a fixed cluster, or the one
 * `cluster_header` names. A weighted choice is made by the router, later: undefined then.
 */
export function destinationCluster(source: DescriptorSource, route: RouteEntry): string | undefined {
  const action = route.action;
  if (action.kind !== ActionKind.Forward) return undefined;
  if (action.cluster !== undefined) return action.cluster;
  if (action.clusterHeader !== undefined) return headerValue(source.head, action.clusterHeader);
  return undefined;
}

/** `10.1.2.3` with 16 → `10.1.0.0/16`, as Envoy's masked_remote_address spells it. */
function maskAddress(address: string, v4: number, v6: number): string | undefined {
  if (isIPv4(address)) {
    const parts = address.split('.').map(Number);
    const value = ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
    const masked = v4 === 0 ? 0 : (value & (0xffffffff << (32 - v4))) >>> 0;
    return `${masked >>> 24}.${(masked >>> 16) & 255}.${(masked >>> 8) & 255}.${masked & 255}/${v4}`;
  }
  if (isIPv6(address)) {
    const groups = expandIPv6(address);
    let bits = v6;
    const out = groups.map((group) => {
      const keep = Math.max(0, Math.min(16, bits));
      bits -= 16;
      return keep === 0 ? 0 : group & ((0xffff << (16 - keep)) & 0xffff);
    });
    return `${compressIPv6(out)}/${v6}`;
  }
  return undefined;
}

function expandIPv6(address: string): number[] {
  const [head = '', tail = ''] = address.includes('::') ? address.split('::') : [address, ''];
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const fill = new Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...(address.includes('::') ? fill : []), ...right].map((g) => parseInt(g, 16) || 0);
}

/** RFC 5952 text: the longest run of zero groups (two or more) as `::`. */
function compressIPv6(groups: number[]): string {
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/** Whether a virtual host's rate limits apply to its routes (Envoy's VhRateLimitsOptions). */
export type VhRateLimits = 'OVERRIDE' | 'INCLUDE' | 'IGNORE';

/**
 * The descriptors `route` makes for a request at `stage`: its own `rate_limits`, then its virtual host's as
 * `vhRateLimits` says: OVERRIDE (the default) only when the route has none of its own, INCLUDE always (also
 * what a route's `include_vh_rate_limits` asks), IGNORE never. Empty when there are none.
 */
export function rateLimitDescriptors(
  route: RouteEntry,
  vhost: VirtualHost | undefined,
  stage: number,
  source: DescriptorSource,
  localCluster: string,
  vhRateLimits: VhRateLimits = 'OVERRIDE',
): RateLimitDescriptor[] {
  const out: RateLimitDescriptor[] = [];
  const own = route.rateLimits;
  if (own !== undefined) collect(own, stage, source, route, localCluster, out);
  const outer = vhost?.rateLimits;
  const include = route.includeVhRateLimits ? 'INCLUDE' : vhRateLimits;
  if (outer !== undefined && (include === 'INCLUDE' || (include === 'OVERRIDE' && own === undefined))) collect(outer, stage, source, route, localCluster, out);
  return out;
}

function collect(entries: readonly RateLimitEntry[], stage: number, source: DescriptorSource, route: RouteEntry, localCluster: string, out: RateLimitDescriptor[]): void {
  for (const entry of entries) {
    if (entry.stage !== stage) continue;
    const descriptor: DescriptorEntry[] = [];
    let dropped = false;
    for (const action of entry.actions) {
      const result = action(source, route, localCluster);
      if (result === undefined) {
        dropped = true;
        break;
      }
      if (result !== SKIP) descriptor.push(result);
    }
    if (!dropped && descriptor.length > 0) out.push({ entries: descriptor });
  }
}
