/**
 * Envoy's CorsPolicy, compiled once: as `typed_per_filter_config` (`envoy.extensions.filters.http.cors.v3.CorsPolicy`)
 * or in the deprecated `cors` field of a route action or virtual host (`envoy.config.route.v3.CorsPolicy`, the same
 * fields). A route's levels are then merged once per route (`EffectiveCorsPolicy`), as Envoy's CORS filter reads
 * them: each attribute from the most specific policy that sets it, except `filter_enabled` and `shadow_enabled`,
 * which only the most specific policy decides.
 */
import type { envoy } from '../../../../generated/envoy.js';
import { type ConfigError, childPath } from '../../../../config/errors.js';
import { compileStringMatcher, type StringMatchFn } from '../../../../dataplane/matching/string-matcher.js';
import type { Runtime } from '../../../../dataplane/runtime/runtime.js';

type CorsPolicyConfig = envoy.extensions.filters.http.cors.v3.CorsPolicy | envoy.config.route.v3.CorsPolicy;
type RuntimeFractionalPercent = envoy.config.core.v3.RuntimeFractionalPercent;

export class CorsPolicy {
  /** `allow_origin_string_match`; empty when unset. */
  readonly origins: readonly StringMatchFn[];
  /** One of the origin matchers matches the literal `*`: Envoy then allows every origin. */
  readonly anyOrigin: boolean;
  /** Header values; '' when unset (Envoy treats an empty string as unset). */
  readonly allowMethods: string;
  readonly allowHeaders: string;
  readonly exposeHeaders: string;
  readonly maxAge: string;
  /** Wrapped booleans: undefined when unset, so that a less specific policy can supply them. */
  readonly allowCredentials: boolean | undefined;
  readonly allowPrivateNetworkAccess: boolean | undefined;
  readonly forwardNotMatchingPreflights: boolean | undefined;
  private readonly filterEnabled: RuntimeFractionalPercent | undefined;
  private readonly shadowEnabled: RuntimeFractionalPercent | undefined;

  constructor(
    config: CorsPolicyConfig,
    private readonly runtime: Runtime,
    path: string,
    errors: ConfigError[],
  ) {
    const matchersPath = childPath(path, 'allow_origin_string_match');
    this.origins = (config.allow_origin_string_match ?? []).map((m, i) => compileStringMatcher(m, childPath(matchersPath, i), errors));
    this.anyOrigin = this.origins.some((matches) => matches('*'));
    this.allowMethods = config.allow_methods ?? '';
    this.allowHeaders = config.allow_headers ?? '';
    this.exposeHeaders = config.expose_headers ?? '';
    this.maxAge = config.max_age ?? '';
    this.allowCredentials = config.allow_credentials;
    this.allowPrivateNetworkAccess = config.allow_private_network_access;
    this.forwardNotMatchingPreflights = config.forward_not_matching_preflights;
    this.filterEnabled = config.filter_enabled;
    this.shadowEnabled = config.shadow_enabled;
  }

  /** `filter_enabled`, drawn per request; enabled when unset. */
  enabled(): boolean {
    const fraction = this.filterEnabled;
    return fraction === undefined || this.runtime.fractionEnabled(fraction.runtime_key, fraction.default_value, Math.random());
  }

  /** `shadow_enabled`, drawn per request; off when unset. */
  shadowed(): boolean {
    const fraction = this.shadowEnabled;
    return fraction !== undefined && this.runtime.fractionEnabled(fraction.runtime_key, fraction.default_value, Math.random());
  }
}

/** What a stream on one route uses: its policies (most specific first) merged attribute by attribute. */
export class EffectiveCorsPolicy {
  /** The most specific policy: it alone decides `filter_enabled` and `shadow_enabled`. */
  readonly decider: CorsPolicy;
  readonly origins: readonly StringMatchFn[];
  readonly anyOrigin: boolean;
  readonly allowMethods: string;
  readonly allowHeaders: string;
  readonly exposeHeaders: string;
  readonly maxAge: string;
  readonly allowCredentials: boolean;
  readonly allowPrivateNetworkAccess: boolean;
  /** Preflights from origins that are not allowed go upstream (true unless a policy says otherwise). */
  readonly forwardNotMatchingPreflights: boolean;

  constructor(policies: readonly CorsPolicy[]) {
    this.decider = policies[0]!;
    const originPolicy = policies.find((p) => p.origins.length > 0);
    this.origins = originPolicy?.origins ?? [];
    this.anyOrigin = originPolicy?.anyOrigin ?? false;
    const first = (pick: (p: CorsPolicy) => string): string => policies.map(pick).find((v) => v !== '') ?? '';
    this.allowMethods = first((p) => p.allowMethods);
    this.allowHeaders = first((p) => p.allowHeaders);
    this.exposeHeaders = first((p) => p.exposeHeaders);
    this.maxAge = first((p) => p.maxAge);
    const firstSet = (pick: (p: CorsPolicy) => boolean | undefined): boolean | undefined => policies.map(pick).find((v) => v !== undefined);
    this.allowCredentials = firstSet((p) => p.allowCredentials) ?? false;
    this.allowPrivateNetworkAccess = firstSet((p) => p.allowPrivateNetworkAccess) ?? false;
    this.forwardNotMatchingPreflights = firstSet((p) => p.forwardNotMatchingPreflights) ?? true;
  }

  /** Envoy tries each matcher against `*` before the origin itself, so a matcher of `*` allows any origin. */
  isOriginAllowed(origin: string): boolean {
    if (this.anyOrigin) return true;
    for (const matches of this.origins) if (matches(origin)) return true;
    return false;
  }
}
