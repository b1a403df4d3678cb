import type { envoy } from '../../generated/envoy.js';
import { childPath, type ConfigError } from '../../config/errors.js';
import { compilePerFilterConfigs, type HttpFilterChain, type PerFilterConfigs } from '../http/filter-chain.js';
import { compileHeaderMatchers } from '../matching/header-matcher.js';
import { compileQueryParameterMatchers, parseQuery, type QueryParams } from '../matching/query-matcher.js';
import { compileRe2, type Re2 } from '../matching/regex.js';
import type { Runtime } from '../runtime/runtime.js';
import type { RequestHead } from '../stream-info.js';
import { chainMutations, compileLevelMutations, type LevelMutations, type MutationChains } from './header-mutation.js';
import { ActionKind, type CompiledAction, compileRouteAction, DEFAULT_MAX_DIRECT_RESPONSE_BODY, type VirtualHostRouteDefaults } from './route-action.js';
import { compileRetryPolicy } from './retry-policy.js';
import { RouteMatcher } from './route-matcher.js';
import { compileMirrorPolicies, type MirrorPolicy } from './request-mirror.js';
import { compileRateLimitPolicy, type RateLimitPolicy } from './rate-limit-policy.js';
import { isGrpcContentType } from '../grpc.js';

type RouteConfiguration = envoy.config.route.v3.RouteConfiguration;
type VirtualHostConfig = envoy.config.route.v3.VirtualHost;
type RouteConfig = envoy.config.route.v3.Route;

const enum PathKind {
  Prefix,
  Exact,
  Regex,
  SeparatedPrefix,
}

/** What a route match needs from the request beyond its head, computed at most once per request. */
export interface MatchContext {
  head: RequestHead;
  /** Path without the query string. */
  pathOnly: string;
  /** Parsed query, filled on first use. */
  query: QueryParams | undefined;
  /** Uniform random value in [0, 1) drawn once per request, for runtime fractions and weighted clusters. */
  random: number;
}

export function newMatchContext(head: RequestHead): MatchContext {
  const q = head.path.indexOf('?');
  return { head, pathOnly: q < 0 ? head.path : head.path.slice(0, q), query: undefined, random: Math.random() };
}

/**
 * A compiled RouteMatch: path (prefix, exact, regex, separated prefix), headers, query parameters, gRPC and a
 * runtime fraction. The base of a route, and what filters with their own request rules (jwt_authn) match with.
 */
export class RouteMatchConditions {
  readonly pathKind: PathKind;
  /** Prefix or exact path; lower-cased when the match is case-insensitive. */
  readonly pathValue: string;
  readonly regex: Re2 | undefined;
  readonly caseSensitive: boolean;
  readonly headers: ((head: RequestHead) => boolean) | undefined;
  readonly query: ((query: QueryParams) => boolean) | undefined;
  readonly runtimeKey: string | undefined;
  readonly runtimeDefault: envoy.type.v3.FractionalPercent | undefined;
  readonly grpcOnly: boolean;

  /** `path` is the RouteMatch's own. */
  constructor(
    match: envoy.config.route.v3.RouteMatch,
    path: string,
    errors: ConfigError[],
    private readonly runtime: Runtime,
  ) {
    this.caseSensitive = match.case_sensitive ?? true;
    const fold = (s: string) => (this.caseSensitive ? s : s.toLowerCase());
    if (match.path !== undefined) {
      this.pathKind = PathKind.Exact;
      this.pathValue = fold(match.path);
    } else if (match.safe_regex !== undefined) {
      this.pathKind = PathKind.Regex;
      this.pathValue = '';
      this.regex = compileRe2(match.safe_regex.regex ?? '', `${path}.safe_regex.regex`, errors, !this.caseSensitive);
    } else if (match.path_separated_prefix !== undefined) {
      this.pathKind = PathKind.SeparatedPrefix;
      this.pathValue = fold(match.path_separated_prefix);
      if (/[?#]/.test(match.path_separated_prefix) || match.path_separated_prefix.endsWith('/')) {
        errors.push({
          code: 'invalid_value',
          path: `${path}.path_separated_prefix`,
          message: 'path_separated_prefix must not end with "/" or contain "?" or "#"',
        });
      }
    } else {
      this.pathKind = PathKind.Prefix;
      this.pathValue = fold(match.prefix ?? '');
    }
    this.headers = match.headers?.length ? compileHeaderMatchers(match.headers, `${path}.headers`, errors) : undefined;
    this.query = match.query_parameters?.length ? compileQueryParameterMatchers(match.query_parameters, `${path}.query_parameters`, errors) : undefined;
    this.runtimeKey = match.runtime_fraction?.runtime_key;
    this.runtimeDefault = match.runtime_fraction?.default_value;
    this.grpcOnly = match.grpc !== undefined;
  }

  matches(ctx: MatchContext): boolean {
    if (!this.pathMatches(ctx)) return false;
    if (this.headers !== undefined && !this.headers(ctx.head)) return false;
    if (this.query !== undefined) {
      const query = (ctx.query ??= parseQuery(ctx.head.path));
      if (!this.query(query)) return false;
    }
    if (this.grpcOnly && !isGrpcContentType(ctx.head.headers['content-type'])) return false;
    if (this.runtimeDefault !== undefined && !this.runtime.fractionEnabled(this.runtimeKey, this.runtimeDefault, ctx.random)) {
      return false;
    }
    return true;
  }

  /** Length of the path prefix this route matched, for `prefix_rewrite`. */
  matchedPrefixLength(): number {
    return this.pathKind === PathKind.Prefix || this.pathKind === PathKind.SeparatedPrefix ? this.pathValue.length : -1;
  }

  /** A plain prefix or exact path with no other condition: the route matcher can index it. */
  get indexable(): boolean {
    return (
      (this.pathKind === PathKind.Prefix || this.pathKind === PathKind.Exact) &&
      this.headers === undefined &&
      this.query === undefined &&
      !this.grpcOnly &&
      this.runtimeDefault === undefined
    );
  }

  get isExactPath(): boolean {
    return this.pathKind === PathKind.Exact;
  }

  get isPrefixMatch(): boolean {
    return this.pathKind === PathKind.Prefix || this.pathKind === PathKind.SeparatedPrefix;
  }

  private pathMatches(ctx: MatchContext): boolean {
    const value = this.pathValue;
    switch (this.pathKind) {
      case PathKind.Prefix: {
        // Envoy's PathMatcher drops the query before matching, for prefixes as for exact paths.
        const path = ctx.pathOnly;
        if (this.caseSensitive) return path.startsWith(value);
        return path.length >= value.length && path.slice(0, value.length).toLowerCase() === value;
      }
      case PathKind.Exact:
        return this.caseSensitive ? ctx.pathOnly === value : ctx.pathOnly.toLowerCase() === value;
      case PathKind.Regex:
        return this.regex !== undefined && this.regex.testExact(ctx.pathOnly);
      case PathKind.SeparatedPrefix: {
        const path = this.caseSensitive ? ctx.pathOnly : ctx.pathOnly.toLowerCase();
        return path.startsWith(value) && (path.length === value.length || path.charCodeAt(value.length) === 47 /* / */);
      }
    }
  }
}

/** One compiled route: its match conditions, action, and header mutations. */
export class RouteEntry extends RouteMatchConditions {
  readonly name: string;
  readonly action: CompiledAction;
  /** Header mutations of this route and the levels around it, in the order they apply. */
  readonly mutations: MutationChains;
  /** The same for each weighted cluster (same indexes), whose own mutations come first. */
  readonly weightedMutations: readonly MutationChains[] | undefined;
  /** Per filter of the connection manager's chain (same indexes), this route's resolved per-route config. */
  readonly filterConfigs: readonly unknown[] | undefined;
  /** `metadata.filter_metadata`, which rate limit `metadata` actions read (source ROUTE_ENTRY). */
  readonly metadata: Record<string, Record<string, unknown>> | undefined;
  /** The route action's `rate_limits` (empty for redirects and direct responses). */
  readonly rateLimitPolicy: RateLimitPolicy;
  /** `include_vh_rate_limits`: the virtual host's rate limits apply too, not only when the route has none. */
  readonly includeVhRateLimits: boolean;

  constructor(
    config: RouteConfig,
    path: string,
    errors: ConfigError[],
    runtime: Runtime,
    maxDirectResponseBody: number,
    /** The virtual host's and route configuration's mutations. */
    outer: readonly LevelMutations[],
    mostSpecificMutationsWin: boolean,
    vhostDefaults: VirtualHostRouteDefaults,
    filters: RouteFilterContext = NO_FILTERS,
  ) {
    super(config.match ?? {}, `${path}.match`, errors, runtime);
    this.name = config.name ?? '';
    this.action = compileRouteAction(config, path, errors, maxDirectResponseBody, vhostDefaults);
    this.metadata = config.metadata?.filter_metadata as Record<string, Record<string, unknown>> | undefined;
    this.rateLimitPolicy = compileRateLimitPolicy(config.route?.rate_limits, `${path}.route.rate_limits`, errors);
    this.includeVhRateLimits = config.route?.include_vh_rate_limits ?? false;
    const own = compileLevelMutations(config, path, errors);
    this.mutations = chainMutations([own, ...outer], mostSpecificMutationsWin);
    const weighted = this.action.kind === ActionKind.Forward ? this.action.weightedClusters : undefined;
    this.weightedMutations = weighted?.map((entry) => chainMutations([entry.mutations, own, ...outer], mostSpecificMutationsWin));
    const chain = filters.chain;
    if (chain !== undefined) {
      const levels = [compilePerFilterConfigs(config.typed_per_filter_config, chain.registry, runtime, path, errors), ...filters.outerLevels];
      const deprecated = [chain.compileDeprecatedLevel(config.route, runtime, childPath(path, 'route'), errors), ...filters.outerDeprecated];
      this.filterConfigs = chain.resolveRouteConfigs(levels, deprecated, this);
    }
  }
}

/** What a route inherits for the HTTP filters from the levels around it. */
interface RouteFilterContext {
  /** Undefined only where routes are compiled on their own (tests of route matching). */
  readonly chain: HttpFilterChain | undefined;
  /** The virtual host's and route configuration's `typed_per_filter_config`. */
  readonly outerLevels: readonly (PerFilterConfigs | undefined)[];
  /** The virtual host's deprecated per-filter fields (`cors`), if any. */
  readonly outerDeprecated: readonly (PerFilterConfigs | undefined)[];
}

const NO_FILTERS: RouteFilterContext = { chain: undefined, outerLevels: [], outerDeprecated: [] };

export interface VirtualHost {
  readonly name: string;
  readonly routes: RouteMatcher;
  readonly requireTls: 'NONE' | 'EXTERNAL_ONLY' | 'ALL';
  readonly includeAttemptCount: boolean;
  readonly includeAttemptCountInResponse: boolean;
  /** The virtual host's `rate_limits`. */
  readonly rateLimitPolicy: RateLimitPolicy;
}

/**
 * A compiled RouteConfiguration: virtual host selection by `:authority` (exact, then `*.suffix` and `prefix.*`
 * wildcards longest first, then `*`) and first-match routes within the host.
 */
export class RouteTable {
  readonly name: string;
  readonly internalOnlyHeaders: readonly string[];
  readonly ignorePortInHostMatching: boolean;
  private readonly exact = new Map<string, VirtualHost>();
  private readonly suffixes: [string, VirtualHost][] = [];
  private readonly prefixes: [string, VirtualHost][] = [];
  private readonly fallback: VirtualHost | undefined;

  /** `filters`: the connection manager's HTTP filters, for which routes resolve their per-route configs. */
  constructor(config: RouteConfiguration, path: string, errors: ConfigError[], runtime: Runtime, filters: HttpFilterChain) {
    this.name = config.name ?? '';
    this.internalOnlyHeaders = (config.internal_only_headers ?? []).map((h) => h.toLowerCase());
    this.ignorePortInHostMatching = config.ignore_port_in_host_matching ?? false;
    const tableMutations = compileLevelMutations(config, path, errors);
    const mostSpecificWins = config.most_specific_header_mutations_wins ?? false;
    const maxDirectResponseBody = config.max_direct_response_body_size_bytes ?? DEFAULT_MAX_DIRECT_RESPONSE_BODY;
    const tableMirrors = compileMirrorPolicies(config.request_mirror_policies, `${path}.request_mirror_policies`, errors);
    const tableFilterConfigs = compilePerFilterConfigs(config.typed_per_filter_config, filters.registry, runtime, path, errors);
    let fallback: VirtualHost | undefined;
    (config.virtual_hosts ?? []).forEach((vhostConfig, i) => {
      const vhostPath = `${path}.virtual_hosts[${i}]`;
      const vhost = compileVirtualHost(vhostConfig, vhostPath, errors, runtime, maxDirectResponseBody, tableMutations, mostSpecificWins, tableMirrors, {
        chain: filters,
        outerLevels: [tableFilterConfigs],
        outerDeprecated: [],
      });
      for (const rawDomain of vhostConfig.domains ?? []) {
        const domain = rawDomain.toLowerCase();
        if (domain === '*') fallback = vhost;
        else if (domain.startsWith('*')) this.suffixes.push([domain.slice(1), vhost]);
        else if (domain.endsWith('*')) this.prefixes.push([domain.slice(0, -1), vhost]);
        else this.exact.set(domain, vhost);
      }
    });
    this.suffixes.sort((a, b) => b[0].length - a[0].length);
    this.prefixes.sort((a, b) => b[0].length - a[0].length);
    this.fallback = fallback;
  }

  /**
   * The virtual host for an authority that is already lower-case and port-stripped as the connection manager is
   * configured to (`strip_matching_host_port`, `strip_any_host_port`). As in Envoy's
   * RouteMatcher::findVirtualHost, the port is otherwise part of the lookup (`example.com:8080` does not select
   * `example.com`) unless `ignore_port_in_host_matching` is set.
   */
  selectVirtualHost(authority: string): VirtualHost | undefined {
    let host = authority;
    if (this.ignorePortInHostMatching) host = stripPort(host);
    const exact = this.exact.get(host);
    if (exact !== undefined) return exact;
    for (const [suffix, vhost] of this.suffixes) {
      if (host.length > suffix.length && host.endsWith(suffix)) return vhost;
    }
    for (const [prefix, vhost] of this.prefixes) {
      if (host.length > prefix.length && host.startsWith(prefix)) return vhost;
    }
    return this.fallback;
  }
}

/** `host:port` → `host`, leaving IPv6 literals (`[::1]:80` → `[::1]`) intact. */
export function stripPort(authority: string): string {
  const colon = authority.lastIndexOf(':');
  if (colon < 0) return authority;
  if (authority.charCodeAt(0) === 91 /* [ */) {
    const close = authority.indexOf(']');
    return close > 0 && close < colon ? authority.slice(0, close + 1) : authority;
  }
  return authority.indexOf(':') === colon ? authority.slice(0, colon) : authority;
}

function compileVirtualHost(
  config: VirtualHostConfig,
  path: string,
  errors: ConfigError[],
  runtime: Runtime,
  maxDirectResponseBody: number,
  tableMutations: LevelMutations,
  mostSpecificWins: boolean,
  tableMirrors: readonly MirrorPolicy[] | undefined,
  tableFilters: RouteFilterContext,
): VirtualHost {
  const outer = [compileLevelMutations(config, path, errors), tableMutations];
  const defaults: VirtualHostRouteDefaults = {
    retryPolicy: config.retry_policy ? compileRetryPolicy(config.retry_policy, `${path}.retry_policy`, errors) : undefined,
    bufferLimit: config.per_request_buffer_limit_bytes,
    mirrorPolicies: compileMirrorPolicies(config.request_mirror_policies, `${path}.request_mirror_policies`, errors) ?? tableMirrors,
  };
  const filters: RouteFilterContext = {
    chain: tableFilters.chain,
    outerLevels: [compilePerFilterConfigs(config.typed_per_filter_config, tableFilters.chain!.registry, runtime, path, errors), ...tableFilters.outerLevels],
    outerDeprecated: [tableFilters.chain!.compileDeprecatedLevel(config, runtime, path, errors)],
  };
  return {
    name: config.name ?? '',
    routes: new RouteMatcher(
      (config.routes ?? []).map(
        (route, i) =>
          new RouteEntry(route, `${path}.routes[${i}]`, errors, runtime, maxDirectResponseBody, outer, mostSpecificWins, defaults, filters),
      ),
    ),
    requireTls: config.require_tls ?? 'NONE',
    includeAttemptCount: config.include_request_attempt_count ?? false,
    includeAttemptCountInResponse: config.include_attempt_count_in_response ?? false,
    rateLimitPolicy: compileRateLimitPolicy(config.rate_limits, `${path}.rate_limits`, errors),
  };
}
