import { readFileSync } from 'node:fs';
import type { envoy } from '../../generated/envoy.js';
import type { ConfigError } from '../../config/errors.js';
import { compileRegexRewrite } from '../matching/regex.js';
import { compileHashPolicy, type HashPolicy } from './hash-policy.js';
import { compileLevelMutations, type LevelMutations } from './header-mutation.js';
import { DEFAULT_RETRY_BUFFER_LIMIT } from './request-body.js';
import { compileRetryPolicy, type RetryPolicy } from './retry-policy.js';
import { compileMirrorPolicies, type MirrorPolicy } from './request-mirror.js';
import { compileUpgradeConfigs, type UpgradeMap } from '../http/upgrade.js';

type RouteConfig = envoy.config.route.v3.Route;
type RouteActionConfig = envoy.config.route.v3.RouteAction;

export const enum ActionKind {
  Forward,
  Redirect,
  DirectResponse,
}

export interface WeightedClusterEntry {
  /** Cluster name, or empty when `clusterHeader` names it. */
  readonly name: string;
  readonly clusterHeader: string | undefined;
  /** Running total of weights up to and including this entry. */
  readonly cumulativeWeight: number;
  readonly mutations: LevelMutations;
  readonly hostRewriteLiteral: string | undefined;
}

export interface ForwardAction {
  readonly kind: ActionKind.Forward;
  readonly cluster: string | undefined;
  readonly clusterHeader: string | undefined;
  readonly weightedClusters: readonly WeightedClusterEntry[] | undefined;
  readonly totalWeight: number;
  /** Header whose value (an integer) picks the weighted cluster instead of a random draw. */
  readonly weightHeader: string | undefined;
  readonly clusterNotFoundStatus: number;
  readonly prefixRewrite: string | undefined;
  readonly regexRewrite: ((path: string) => string) | undefined;
  readonly hostRewriteLiteral: string | undefined;
  readonly autoHostRewrite: boolean;
  readonly hostRewriteHeader: string | undefined;
  readonly hostRewritePathRegex: ((path: string) => string) | undefined;
  readonly appendXForwardedHost: boolean;
  /** Route timeout in ms; 0 disables it. */
  readonly timeoutMs: number;
  /**
   * `max_stream_duration.grpc_timeout_header_max`: set, a gRPC request's `grpc-timeout` sets the route timeout,
   * capped by it unless 0; undefined ignores the header.
   */
  readonly grpcTimeoutHeaderMaxMs: number | undefined;
  readonly grpcTimeoutHeaderOffsetMs: number;
  /** Per-route stream idle timeout, overriding the connection manager's; undefined keeps that one. */
  readonly idleTimeoutMs: number | undefined;
  /** `hash_policy`, for RING_HASH and MAGLEV clusters. */
  readonly hashPolicy: HashPolicy | undefined;
  /** The route's `retry_policy`, else its virtual host's; undefined when there is none. */
  readonly retryPolicy: RetryPolicy | undefined;
  /** `priority: HIGH`: the cluster's HIGH circuit breakers apply. */
  readonly highPriority: boolean;
  /** How much request body is kept for retries (`per_request_buffer_limit_bytes`); beyond it there is no retry. */
  readonly retryBufferLimit: number;
  /** `request_mirror_policies` of the route, else of its virtual host, else of its route configuration. */
  readonly mirrorPolicies: readonly MirrorPolicy[] | undefined;
  /** The route's `upgrade_configs`, which override the connection manager's per upgrade type. */
  readonly upgrades: UpgradeMap | undefined;
}

/** What a virtual host gives the routes that do not set it themselves. */
export interface VirtualHostRouteDefaults {
  readonly retryPolicy: RetryPolicy | undefined;
  readonly bufferLimit: number | undefined;
  /** The virtual host's (or else the route configuration's) mirror policies, for a route without its own. */
  readonly mirrorPolicies: readonly MirrorPolicy[] | undefined;
}

export interface RedirectActionCompiled {
  readonly kind: ActionKind.Redirect;
  readonly scheme: string | undefined;
  readonly host: string | undefined;
  readonly port: number | undefined;
  readonly path: string | undefined;
  readonly prefixRewrite: string | undefined;
  readonly regexRewrite: ((path: string) => string) | undefined;
  readonly status: number;
  readonly stripQuery: boolean;
}

export interface DirectResponseCompiled {
  readonly kind: ActionKind.DirectResponse;
  readonly status: number;
  readonly body: Buffer | undefined;
}

export type CompiledAction = ForwardAction | RedirectActionCompiled | DirectResponseCompiled;

const REDIRECT_CODES: Record<string, number> = {
  MOVED_PERMANENTLY: 301,
  FOUND: 302,
  SEE_OTHER: 303,
  TEMPORARY_REDIRECT: 307,
  PERMANENT_REDIRECT: 308,
};

const NOT_FOUND_CODES: Record<string, number> = { SERVICE_UNAVAILABLE: 503, NOT_FOUND: 404, INTERNAL_SERVER_ERROR: 500 };

/** Envoy's default limit for direct response bodies read from files. */
export const DEFAULT_MAX_DIRECT_RESPONSE_BODY = 4096;

export function compileRouteAction(
  route: RouteConfig,
  path: string,
  errors: ConfigError[],
  maxDirectResponseBody: number,
  vhostDefaults: VirtualHostRouteDefaults,
): CompiledAction {
  if (route.redirect !== undefined) return compileRedirect(route.redirect, `${path}.redirect`, errors);
  if (route.direct_response !== undefined) {
    return compileDirectResponse(route.direct_response, `${path}.direct_response`, errors, maxDirectResponseBody);
  }
  if (route.route !== undefined) {
    const bufferLimit = route.per_request_buffer_limit_bytes ?? vhostDefaults.bufferLimit ?? DEFAULT_RETRY_BUFFER_LIMIT;
    return compileForward(route.route, `${path}.route`, errors, vhostDefaults.retryPolicy, bufferLimit, vhostDefaults.mirrorPolicies);
  }
  errors.push({ code: 'missing_required', path, message: 'a route needs one of route, redirect or direct_response' });
  return { kind: ActionKind.DirectResponse, status: 500, body: undefined };
}

function compileForward(
  action: RouteActionConfig,
  path: string,
  errors: ConfigError[],
  vhostRetryPolicy: RetryPolicy | undefined,
  retryBufferLimit: number,
  outerMirrorPolicies: readonly MirrorPolicy[] | undefined,
): ForwardAction {
  let total = 0;
  const weighted = action.weighted_clusters?.clusters?.map((entry, i): WeightedClusterEntry => {
    const entryPath = `${path}.weighted_clusters.clusters[${i}]`;
    total += entry.weight ?? 0;
    if (entry.name === undefined && entry.cluster_header === undefined) {
      errors.push({ code: 'missing_required', path: entryPath, message: 'a weighted cluster needs name or cluster_header' });
    }
    return {
      name: entry.name ?? '',
      clusterHeader: entry.cluster_header?.toLowerCase(),
      cumulativeWeight: total,
      mutations: compileLevelMutations(entry, entryPath, errors),
      hostRewriteLiteral: entry.host_rewrite_literal,
    };
  });
  if (weighted !== undefined && total === 0) {
    errors.push({ code: 'invalid_value', path: `${path}.weighted_clusters`, message: 'the weights of weighted_clusters add up to 0' });
  }
  const hostRegex = action.host_rewrite_path_regex;
  return {
    kind: ActionKind.Forward,
    cluster: action.cluster,
    clusterHeader: action.cluster_header?.toLowerCase(),
    weightedClusters: weighted,
    totalWeight: total,
    weightHeader: action.weighted_clusters?.header_name?.toLowerCase(),
    clusterNotFoundStatus: NOT_FOUND_CODES[action.cluster_not_found_response_code ?? 'SERVICE_UNAVAILABLE'] ?? 503,
    prefixRewrite: action.prefix_rewrite,
    regexRewrite: action.regex_rewrite ? compileRegexRewrite(action.regex_rewrite, `${path}.regex_rewrite`, errors) : undefined,
    hostRewriteLiteral: action.host_rewrite_literal,
    autoHostRewrite: action.auto_host_rewrite ?? false,
    hostRewriteHeader: action.host_rewrite_header?.toLowerCase(),
    hostRewritePathRegex: hostRegex ? compileRegexRewrite(hostRegex, `${path}.host_rewrite_path_regex`, errors) : undefined,
    appendXForwardedHost: action.append_x_forwarded_host ?? false,
    timeoutMs: action.timeout ?? 15_000,
    grpcTimeoutHeaderMaxMs: action.max_stream_duration?.grpc_timeout_header_max,
    grpcTimeoutHeaderOffsetMs: action.max_stream_duration?.grpc_timeout_header_offset ?? 0,
    idleTimeoutMs: action.idle_timeout,
    hashPolicy: compileHashPolicy(action.hash_policy, `${path}.hash_policy`, errors),
    // As Envoy, a route's policy replaces its virtual host's entirely.
    retryPolicy: action.retry_policy ? compileRetryPolicy(action.retry_policy, `${path}.retry_policy`, errors) : vhostRetryPolicy,
    highPriority: action.priority === 'HIGH',
    retryBufferLimit,
    // Envoy does not merge levels: the most specific non-empty list applies.
    mirrorPolicies:
      compileMirrorPolicies(action.request_mirror_policies, `${path}.request_mirror_policies`, errors) ?? outerMirrorPolicies,
    upgrades: compileUpgradeConfigs(action.upgrade_configs, `${path}.upgrade_configs`, errors),
  };
}

function compileRedirect(redirect: envoy.config.route.v3.RedirectAction, path: string, errors: ConfigError[]): RedirectActionCompiled {
  return {
    kind: ActionKind.Redirect,
    scheme: redirect.https_redirect ? 'https' : redirect.scheme_redirect?.toLowerCase(),
    host: redirect.host_redirect,
    port: redirect.port_redirect,
    path: redirect.path_redirect,
    prefixRewrite: redirect.prefix_rewrite,
    regexRewrite: redirect.regex_rewrite ? compileRegexRewrite(redirect.regex_rewrite, `${path}.regex_rewrite`, errors) : undefined,
    status: REDIRECT_CODES[redirect.response_code ?? 'MOVED_PERMANENTLY'] ?? 301,
    stripQuery: redirect.strip_query ?? false,
  };
}

function compileDirectResponse(
  direct: envoy.config.route.v3.DirectResponseAction,
  path: string,
  errors: ConfigError[],
  maxBody: number,
): DirectResponseCompiled {
  const status = direct.status ?? 200;
  const body = direct.body ? readDataSource(direct.body, `${path}.body`, errors) : undefined;
  if (body !== undefined && direct.body?.filename !== undefined && body.length > maxBody) {
    errors.push({
      code: 'invalid_value',
      path: `${path}.body`,
      message: `response body from ${direct.body.filename} is ${body.length} bytes, above the ${maxBody}-byte limit (max_direct_response_body_size_bytes)`,
    });
  }
  return { kind: ActionKind.DirectResponse, status, body: body?.length ? body : undefined };
}

/** Reads an Envoy DataSource (file, inline string or bytes, environment variable). */
export function readDataSource(source: envoy.config.core.v3.DataSource, path: string, errors: ConfigError[]): Buffer | undefined {
  if (source.inline_string !== undefined) return Buffer.from(source.inline_string);
  if (source.inline_bytes !== undefined) return Buffer.from(source.inline_bytes);
  if (source.environment_variable !== undefined) {
    const value = process.env[source.environment_variable];
    if (value === undefined) {
      errors.push({ code: 'invalid_value', path, message: `environment variable ${source.environment_variable} is not set` });
      return undefined;
    }
    return Buffer.from(value);
  }
  if (source.filename !== undefined) {
    try {
      return readFileSync(source.filename);
    } catch (err) {
      errors.push({ code: 'io_error', path: `${path}.filename`, message: (err as Error).message });
      return undefined;
    }
  }
  return undefined;
}
