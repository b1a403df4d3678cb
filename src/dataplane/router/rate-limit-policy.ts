/**
 * Envoy's RateLimitPolicy: the `rate_limits` of a route action and of a virtual host, compiled once with the route
 * table, and what turns a stream into rate limit descriptors. It belongs to no filter: the local and the global
 * rate limit filters both read it (as Envoy's RateLimitPolicyEntry::populateDescriptors is shared by both).
 *
 * A `RateLimit` entry is a list of actions; each action adds one `{key, value}` entry to the entry's descriptor.
 * As in Envoy, an action that cannot produce its value (a missing header without `skip_if_absent`, a
 * `header_value_match` that does not match) drops the whole descriptor; `skip_if_absent` only leaves that one
 * entry out.
 */
import type { envoy } from '../../generated/envoy.js';
import { childPath, type ConfigError } from '../../config/errors.js';
import { compileHeaderMatchers, headerValue, type HeaderMatchFn } from '../matching/header-matcher.js';
import { compileQueryParameterMatchers, parseQuery, type QueryMatchFn, type QueryParams } from '../matching/query-matcher.js';
import type { RequestHead, StreamInfo } from '../stream-info.js';
import { ActionKind } from './route-action.js';
import type { RouteEntry, VirtualHost } from './route-table.js';

type RateLimitConfig = envoy.config.route.v3.RateLimit;
/** The generated types predate the `query_parameters` action (its schema is in src/config/proto/supplement.ts). */
type ActionConfig = envoy.config.route.v3.RateLimit.Action & {
  query_parameters?: { query_parameter_name?: string; descriptor_key?: string; skip_if_absent?: boolean };
};
type MetadataKey = envoy.type.metadata.v3.MetadataKey;
type FilterMetadata = Record<string, Record<string, unknown>> | undefined;

export interface DescriptorEntry {
  key: string;
  value: string;
}

export interface Descriptor {
  entries: DescriptorEntry[];
}

/** What the actions read from a stream. */
export interface RateLimitInput {
  head: RequestHead;
  /** Its `downstreamRemoteAddress` (the trusted client address) and `dynamicMetadata`. */
  info: StreamInfo;
  /** The route's `metadata.filter_metadata`, for `metadata` actions with `source: ROUTE_ENTRY`. */
  routeMetadata: FilterMetadata;
  /** The cluster the request goes to (`destination_cluster`). */
  targetCluster: string;
  /** The local service cluster, `node.cluster` (`source_cluster`). */
  localCluster: string;
  /** Parsed query, filled on first use; start with undefined. */
  query: QueryParams | undefined;
}

/** Envoy's RateLimit.stage is at most 10. */
const MAX_STAGE = 10;

const enum Kind {
  SourceCluster,
  DestinationCluster,
  RequestHeader,
  RemoteAddress,
  GenericKey,
  HeaderValueMatch,
  QueryValueMatch,
  MaskedRemoteAddress,
  Metadata,
  QueryParameter,
}

/**
 * One compiled action. A plain record read by one switch (`populate`), rather than a closure per action, so that
 * the hot path allocates only the entries it produces.
 */
interface Action {
  readonly kind: Kind;
  readonly key: string;
  /** The fixed value (generic_key, header_value_match, query_parameter_value_match) or the metadata default. */
  readonly value: string;
  /** Lower-cased header name. */
  readonly header: string;
  readonly skipIfAbsent: boolean;
  readonly expectMatch: boolean;
  readonly headers: HeaderMatchFn | undefined;
  readonly queries: QueryMatchFn | undefined;
  readonly v4Mask: number;
  readonly v6Mask: number;
  readonly metadataKey: MetadataKey | undefined;
  readonly dynamic: boolean;
}

const ACTION_DEFAULTS: Omit<Action, 'kind' | 'key'> = {
  value: '',
  header: '',
  skipIfAbsent: false,
  expectMatch: true,
  headers: undefined,
  queries: undefined,
  v4Mask: 32,
  v6Mask: 128,
  metadataKey: undefined,
  dynamic: true,
};

/** One `RateLimit` entry of a route or virtual host. */
export class RateLimitPolicyEntry {
  readonly stage: number;
  /** `disable_key`: what it means is the filter's (the global filter reads a runtime key; the local one skips the entry). */
  readonly disableKey: string;
  private readonly actions: readonly Action[];

  constructor(config: RateLimitConfig, path: string, errors: ConfigError[]) {
    this.stage = config.stage ?? 0;
    if (this.stage > MAX_STAGE) errors.push({ code: 'invalid_value', path: childPath(path, 'stage'), message: `stage must be at most ${MAX_STAGE}` });
    this.disableKey = config.disable_key ?? '';
    const actionsPath = childPath(path, 'actions');
    const actions = config.actions ?? [];
    if (actions.length === 0) errors.push({ code: 'missing_required', path: actionsPath, message: 'a rate limit needs at least one action' });
    this.actions = actions.map((action, i) => compileAction(action, childPath(actionsPath, i), errors)).filter((a) => a !== undefined);
  }

  /** This entry's descriptor for a stream, or undefined when an action could not produce its value. */
  populate(input: RateLimitInput): Descriptor | undefined {
    const entries: DescriptorEntry[] = [];
    for (const action of this.actions) if (!populate(action, input, entries)) return undefined;
    return entries.length > 0 ? { entries } : undefined;
  }
}

/** The `rate_limits` of one route action or virtual host, by stage. */
export class RateLimitPolicy {
  /** Entries of each stage (index), in configuration order. */
  private readonly stages: readonly (readonly RateLimitPolicyEntry[])[];
  readonly empty: boolean;

  constructor(configs: readonly RateLimitConfig[] | undefined, path: string, errors: ConfigError[]) {
    const entries = (configs ?? []).map((config, i) => new RateLimitPolicyEntry(config, childPath(path, i), errors));
    this.empty = entries.length === 0;
    this.stages = Array.from({ length: MAX_STAGE + 1 }, (_, stage) => entries.filter((e) => e.stage === stage));
  }

  /** Envoy's getApplicableRateLimit. */
  entriesForStage(stage: number): readonly RateLimitPolicyEntry[] {
    return this.stages[stage] ?? NO_ENTRIES;
  }
}

const NO_ENTRIES: readonly RateLimitPolicyEntry[] = [];
export const EMPTY_RATE_LIMIT_POLICY = new RateLimitPolicy(undefined, '', []);

/** Whether a virtual host's rate limits apply to its routes (Envoy's VhRateLimitsOptions). */
export type VhRateLimits = 'OVERRIDE' | 'INCLUDE' | 'IGNORE';

/** The input of the actions for a stream on `route`; the target cluster as far as it is known before the router. */
export function rateLimitInput(route: RouteEntry, head: RequestHead, info: StreamInfo, localCluster: string): RateLimitInput {
  const action = route.action;
  let targetCluster = info.upstreamCluster;
  if (targetCluster === '' && action.kind === ActionKind.Forward) {
    targetCluster = action.cluster ?? (action.clusterHeader === undefined ? '' : (headerValue(head, action.clusterHeader) ?? ''));
  }
  return { head, info, routeMetadata: route.metadata, targetCluster, localCluster, query: undefined };
}

/**
 * The descriptors a stream's route makes at `stage`: its own `rate_limits`, then its virtual host's as
 * `vhRateLimits` says (OVERRIDE: only when the route has none; a route's `include_vh_rate_limits` means INCLUDE).
 * `include` says which entries count (the local filter skips those with a `disable_key`).
 */
export function rateLimitDescriptors(
  route: RouteEntry,
  vhost: VirtualHost | undefined,
  stage: number,
  input: RateLimitInput,
  vhRateLimits: VhRateLimits,
  include: (entry: RateLimitPolicyEntry) => boolean,
): Descriptor[] {
  const out: Descriptor[] = [];
  addDescriptors(route.rateLimitPolicy, stage, input, include, out);
  const vh = route.includeVhRateLimits ? 'INCLUDE' : vhRateLimits;
  if (vhost !== undefined && (vh === 'INCLUDE' || (vh === 'OVERRIDE' && route.rateLimitPolicy.empty))) addDescriptors(vhost.rateLimitPolicy, stage, input, include, out);
  return out;
}

function addDescriptors(policy: RateLimitPolicy, stage: number, input: RateLimitInput, include: (entry: RateLimitPolicyEntry) => boolean, out: Descriptor[]): void {
  for (const entry of policy.entriesForStage(stage)) {
    if (!include(entry)) continue;
    const descriptor = entry.populate(input);
    if (descriptor !== undefined) out.push(descriptor);
  }
}

export function compileRateLimitPolicy(configs: readonly RateLimitConfig[] | undefined, path: string, errors: ConfigError[]): RateLimitPolicy {
  return configs === undefined || configs.length === 0 ? EMPTY_RATE_LIMIT_POLICY : new RateLimitPolicy(configs, path, errors);
}

function compileAction(config: ActionConfig, path: string, errors: ConfigError[]): Action | undefined {
  const set = Object.keys(config).filter((k) => (config as Record<string, unknown>)[k] !== undefined);
  if (set.length !== 1) {
    errors.push({ code: set.length === 0 ? 'missing_required' : 'oneof_conflict', path, message: 'a rate limit action needs exactly one action type' });
    return undefined;
  }
  if (config.source_cluster !== undefined) return { ...ACTION_DEFAULTS, kind: Kind.SourceCluster, key: 'source_cluster' };
  if (config.destination_cluster !== undefined) return { ...ACTION_DEFAULTS, kind: Kind.DestinationCluster, key: 'destination_cluster' };
  if (config.remote_address !== undefined) return { ...ACTION_DEFAULTS, kind: Kind.RemoteAddress, key: 'remote_address' };
  if (config.request_headers !== undefined) {
    const c = config.request_headers;
    if (!c.header_name || !c.descriptor_key) {
      errors.push({ code: 'missing_required', path: childPath(path, 'request_headers'), message: 'request_headers needs header_name and descriptor_key' });
    }
    return { ...ACTION_DEFAULTS, kind: Kind.RequestHeader, key: c.descriptor_key ?? '', header: (c.header_name ?? '').toLowerCase(), skipIfAbsent: c.skip_if_absent ?? false };
  }
  if (config.generic_key !== undefined) {
    const c = config.generic_key;
    if (!c.descriptor_value) errors.push({ code: 'missing_required', path: childPath(path, 'generic_key.descriptor_value'), message: 'generic_key needs descriptor_value' });
    return { ...ACTION_DEFAULTS, kind: Kind.GenericKey, key: c.descriptor_key || 'generic_key', value: c.descriptor_value ?? '' };
  }
  if (config.header_value_match !== undefined) {
    const c = config.header_value_match;
    const at = childPath(path, 'header_value_match');
    if (!c.descriptor_value) errors.push({ code: 'missing_required', path: childPath(at, 'descriptor_value'), message: 'header_value_match needs descriptor_value' });
    return {
      ...ACTION_DEFAULTS,
      kind: Kind.HeaderValueMatch,
      key: c.descriptor_key || 'header_match',
      value: c.descriptor_value ?? '',
      expectMatch: c.expect_match ?? true,
      headers: compileHeaderMatchers(c.headers, childPath(at, 'headers'), errors),
    };
  }
  if (config.query_parameters !== undefined) {
    const c = config.query_parameters;
    if (!c.query_parameter_name || !c.descriptor_key) {
      errors.push({ code: 'missing_required', path: childPath(path, 'query_parameters'), message: 'query_parameters needs query_parameter_name and descriptor_key' });
    }
    // `header` holds the parameter's name.
    return { ...ACTION_DEFAULTS, kind: Kind.QueryParameter, key: c.descriptor_key ?? '', header: c.query_parameter_name ?? '', skipIfAbsent: c.skip_if_absent ?? false };
  }
  if (config.query_parameter_value_match !== undefined) {
    const c = config.query_parameter_value_match;
    const at = childPath(path, 'query_parameter_value_match');
    if (!c.descriptor_value) errors.push({ code: 'missing_required', path: childPath(at, 'descriptor_value'), message: 'query_parameter_value_match needs descriptor_value' });
    return {
      ...ACTION_DEFAULTS,
      kind: Kind.QueryValueMatch,
      key: c.descriptor_key || 'query_match',
      value: c.descriptor_value ?? '',
      expectMatch: c.expect_match ?? true,
      queries: compileQueryParameterMatchers(c.query_parameters, childPath(at, 'query_parameters'), errors),
    };
  }
  if (config.masked_remote_address !== undefined) {
    const c = config.masked_remote_address;
    const v4Mask = c.v4_prefix_mask_len ?? 32;
    const v6Mask = c.v6_prefix_mask_len ?? 128;
    const at = childPath(path, 'masked_remote_address');
    if (v4Mask > 32) errors.push({ code: 'invalid_value', path: childPath(at, 'v4_prefix_mask_len'), message: 'v4_prefix_mask_len must be at most 32' });
    if (v6Mask > 128) errors.push({ code: 'invalid_value', path: childPath(at, 'v6_prefix_mask_len'), message: 'v6_prefix_mask_len must be at most 128' });
    return { ...ACTION_DEFAULTS, kind: Kind.MaskedRemoteAddress, key: 'masked_remote_address', v4Mask, v6Mask };
  }
  // `dynamic_metadata` is the deprecated form of `metadata` with source DYNAMIC.
  const metadata: envoy.config.route.v3.RateLimit.Action.MetaData | undefined = config.metadata ?? config.dynamic_metadata;
  if (metadata !== undefined) {
    const at = childPath(path, config.metadata !== undefined ? 'metadata' : 'dynamic_metadata');
    if (!metadata.descriptor_key) errors.push({ code: 'missing_required', path: childPath(at, 'descriptor_key'), message: 'metadata needs descriptor_key' });
    if (!metadata.metadata_key?.key) errors.push({ code: 'missing_required', path: childPath(at, 'metadata_key.key'), message: 'metadata needs metadata_key' });
    return {
      ...ACTION_DEFAULTS,
      kind: Kind.Metadata,
      key: metadata.descriptor_key ?? '',
      value: metadata.default_value ?? '',
      skipIfAbsent: metadata.skip_if_absent ?? false,
      metadataKey: metadata.metadata_key,
      dynamic: metadata.source !== 'ROUTE_ENTRY',
    };
  }
  // `extension` (CEL and other descriptor extensions).
  errors.push({ code: 'unsupported_field', path: childPath(path, set[0]!), message: `rate limit action ${set[0]} is not supported` });
  return undefined;
}

/** Adds the action's entry; false when the descriptor must be dropped. */
function populate(action: Action, input: RateLimitInput, entries: DescriptorEntry[]): boolean {
  switch (action.kind) {
    case Kind.SourceCluster:
      entries.push({ key: action.key, value: input.localCluster });
      return true;
    case Kind.DestinationCluster:
      entries.push({ key: action.key, value: input.targetCluster });
      return true;
    case Kind.RequestHeader: {
      const value = headerValue(input.head, action.header);
      if (value === undefined) return action.skipIfAbsent;
      entries.push({ key: action.key, value });
      return true;
    }
    case Kind.RemoteAddress: {
      const address = input.info.downstreamRemoteAddress;
      // Envoy produces no value for a client that has no IP address (a pipe).
      if (address === '') return false;
      entries.push({ key: action.key, value: address });
      return true;
    }
    case Kind.GenericKey:
      entries.push({ key: action.key, value: action.value });
      return true;
    case Kind.HeaderValueMatch:
      if (action.headers!(input.head) !== action.expectMatch) return false;
      entries.push({ key: action.key, value: action.value });
      return true;
    case Kind.QueryParameter: {
      const value = (input.query ??= parseQuery(input.head.path)).get(action.header);
      if (value === undefined) return action.skipIfAbsent;
      entries.push({ key: action.key, value });
      return true;
    }
    case Kind.QueryValueMatch:
      if (action.queries!((input.query ??= parseQuery(input.head.path))) !== action.expectMatch) return false;
      entries.push({ key: action.key, value: action.value });
      return true;
    case Kind.MaskedRemoteAddress: {
      const masked = maskAddress(input.info.downstreamRemoteAddress, action.v4Mask, action.v6Mask);
      if (masked === undefined) return false;
      entries.push({ key: action.key, value: masked });
      return true;
    }
    case Kind.Metadata: {
      const value = metadataString(action.dynamic ? input.info.dynamicMetadata : input.routeMetadata, action.metadataKey!);
      if (value !== '') entries.push({ key: action.key, value });
      else if (action.value !== '') entries.push({ key: action.key, value: action.value });
      else return action.skipIfAbsent;
      return true;
    }
  }
}

/**
 * The value at a MetadataKey (a filter namespace, then a path of struct keys) as a string: strings as they are,
 * other values as JSON, as Envoy renders a non-string metadata value; '' when absent.
 */
function metadataString(metadata: FilterMetadata, key: MetadataKey): string {
  let value: unknown = metadata?.[key.key ?? ''];
  for (const segment of key.path ?? []) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return '';
    value = (value as Record<string, unknown>)[segment.key ?? ''];
  }
  if (value === undefined || value === null) return '';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** `10.1.2.3` with 24 → `10.1.2.0/24`; IPv6 in its canonical compressed form. Undefined for a non-IP address. */
export function maskAddress(address: string, v4Mask: number, v6Mask: number): string | undefined {
  const v4 = parseIpv4(address);
  if (v4 !== undefined) {
    const mask = v4Mask === 0 ? 0 : (0xffffffff << (32 - v4Mask)) >>> 0;
    const n = (v4 & mask) >>> 0;
    return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}/${v4Mask}`;
  }
  const groups = parseIpv6(address);
  if (groups === undefined) return undefined;
  for (let i = 0; i < 8; i++) {
    const bits = Math.min(16, Math.max(0, v6Mask - i * 16));
    groups[i] = groups[i]! & (bits === 0 ? 0 : (0xffff << (16 - bits)) & 0xffff);
  }
  return `${formatIpv6(groups)}/${v6Mask}`;
}

function parseIpv4(s: string): number | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
    n = n * 256 + Number(p);
  }
  return n;
}

function parseIpv6(s: string): number[] | undefined {
  if (!s.includes(':')) return undefined;
  let text = s;
  const tail: number[] = [];
  // An IPv4 tail (`::ffff:10.0.0.1`) is the last two groups.
  const lastColon = text.lastIndexOf(':');
  const v4 = parseIpv4(text.slice(lastColon + 1));
  if (v4 !== undefined) {
    tail.push(v4 >>> 16, v4 & 0xffff);
    text = text.slice(0, lastColon);
    if (text.endsWith(':')) text += ':';
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const parse = (h: string) => (h === '' ? [] : h.split(':').map((g) => (/^[0-9a-fA-F]{1,4}$/.test(g) ? parseInt(g, 16) : NaN)));
  const head = parse(halves[0]!);
  const rest = halves.length === 2 ? parse(halves[1]!) : [];
  const known = head.length + rest.length + tail.length;
  if (head.some(Number.isNaN) || rest.some(Number.isNaN)) return undefined;
  if (halves.length === 1 ? known !== 8 : known > 7) return undefined;
  return [...head, ...new Array<number>(8 - known).fill(0), ...rest, ...tail];
}

/** RFC 5952: lower-case hex, the longest run of two or more zero groups (the first of equals) as `::`. */
function formatIpv6(groups: readonly number[]): string {
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}
