/**
 * `envoy.filters.http.rbac`: who may do what. `rules` decide (403 `RBAC: access denied` when they refuse),
 * `shadow_rules` are only evaluated and counted, with their result in the dynamic metadata as Envoy records it.
 * A route's RBACPerRoute replaces the filter's rules (an empty one turns them off). Stats
 * `http.<stat_prefix>.rbac.[<rules_stat_prefix>]{allowed,denied}` and `...[<shadow_rules_stat_prefix>]shadow_{allowed,denied}`.
 */
import type { envoy } from '../../../../generated/envoy.js';
import type { ConfigError } from '../../../../config/errors.js';
import {
  type DecoderFilterCallbacks,
  type EncoderFilterCallbacks,
  type FilterFactoryContext,
  FilterHeadersStatus,
  type HttpFilterConfig,
  type HttpFilterFactory,
  type StreamFilter,
} from '../../../../dataplane/http/filter.js';
import type { Runtime } from '../../../../dataplane/runtime/runtime.js';
import { defineStats, type StatScope, type StatsStore } from '../../../../stats/store.js';
import { RbacEngine } from '../../common/rbac/rbac-engine.js';

type RbacFilterConfigProto = envoy.extensions.filters.http.rbac.v3.RBAC;

export const RBAC_STATS = defineStats({ counters: ['allowed', 'denied'], gauges: [], histograms: [] });
export const RBAC_SHADOW_STATS = defineStats({ counters: ['shadow_allowed', 'shadow_denied'], gauges: [], histograms: [] });
const S = RBAC_STATS.c;
const SH = RBAC_SHADOW_STATS.c;

const METADATA_NAMESPACE = 'envoy.filters.http.rbac';

/** One RBAC filter configuration (the filter's, or a route's), compiled. */
class RbacRules {
  readonly enforced: RbacEngine | undefined;
  readonly shadow: RbacEngine | undefined;
  readonly rulesStatPrefix: string;
  readonly shadowStatPrefix: string;

  constructor(config: RbacFilterConfigProto, path: string, errors: ConfigError[]) {
    for (const field of ['matcher', 'shadow_matcher'] as const) {
      if (config[field] !== undefined) errors.push({ code: 'unsupported_field', path: `${path}.${field}`, message: `RBAC ${field} (the xDS matcher tree) is not supported; use rules` });
    }
    this.enforced = config.rules === undefined ? undefined : new RbacEngine(config.rules, `${path}.rules`, errors);
    this.shadow = config.shadow_rules === undefined ? undefined : new RbacEngine(config.shadow_rules, `${path}.shadow_rules`, errors);
    this.rulesStatPrefix = config.rules_stat_prefix ?? '';
    this.shadowStatPrefix = config.shadow_rules_stat_prefix ?? '';
  }
}

class RbacFilterConfig implements HttpFilterConfig {
  private readonly scopes = new Map<string, StatScope>();

  constructor(
    private readonly rules: RbacRules,
    private readonly stats: StatsStore,
    private readonly statPrefix: string,
  ) {}

  createFilter(callbacks: DecoderFilterCallbacks & EncoderFilterCallbacks, routeConfig: unknown): StreamFilter | undefined {
    const rules = (routeConfig as RbacRules | undefined) ?? this.rules;
    if (rules.enforced === undefined && rules.shadow === undefined) return undefined;
    return new RbacFilter(this, rules, callbacks);
  }

  counters(prefix: string, shadow: boolean): StatScope['counters'] {
    const key = `${shadow ? 'shadow:' : ''}${prefix}`;
    let scope = this.scopes.get(key);
    if (scope === undefined) {
      scope = this.stats.scope(shadow ? RBAC_SHADOW_STATS : RBAC_STATS, `http.${this.statPrefix}.rbac.${prefix}`);
      this.scopes.set(key, scope);
    }
    return scope.counters;
  }

  release(): void {
    for (const scope of this.scopes.values()) this.stats.release(scope);
    this.scopes.clear();
  }
}

class RbacFilter implements StreamFilter {
  constructor(
    private readonly config: RbacFilterConfig,
    private readonly rules: RbacRules,
    private readonly callbacks: DecoderFilterCallbacks & EncoderFilterCallbacks,
  ) {}

  decodeHeaders(): FilterHeadersStatus {
    const { rules, callbacks } = this;
    if (rules.shadow !== undefined) {
      const decision = rules.shadow.decide(callbacks);
      this.config.counters(rules.shadowStatPrefix, true)[decision.allowed ? SH.shadow_allowed : SH.shadow_denied]++;
      const metadata = ((callbacks.info.dynamicMetadata ??= {})[METADATA_NAMESPACE] ??= {});
      metadata[`${rules.shadowStatPrefix}shadow_engine_result`] = decision.allowed ? 'allowed' : 'denied';
      if (decision.policy !== undefined) metadata[`${rules.shadowStatPrefix}shadow_effective_policy_id`] = decision.policy;
    }
    if (rules.enforced === undefined) return FilterHeadersStatus.Continue;
    const decision = rules.enforced.decide(callbacks);
    const counters = this.config.counters(rules.rulesStatPrefix, false);
    if (decision.allowed) {
      counters[S.allowed]++;
      return FilterHeadersStatus.Continue;
    }
    counters[S.denied]++;
    callbacks.sendLocalReply(403, 'RBAC: access denied', 0, `rbac_access_denied_matched_policy[${decision.policy ?? 'none'}]`);
    return FilterHeadersStatus.StopIteration;
  }
}

export const RBAC_FILTER_FACTORY: HttpFilterFactory = {
  name: 'envoy.filters.http.rbac',
  configType: 'envoy.extensions.filters.http.rbac.v3.RBAC',
  routeConfigType: 'envoy.extensions.filters.http.rbac.v3.RBACPerRoute',

  createFilterConfig(config: unknown, context: FilterFactoryContext, path: string, errors: ConfigError[]): HttpFilterConfig {
    return new RbacFilterConfig(new RbacRules(config as RbacFilterConfigProto, path, errors), context.stats, context.statPrefix);
  },

  compileRouteConfig(config: unknown, _runtime: Runtime, path: string, errors: ConfigError[]): RbacRules {
    // An RBACPerRoute without `rbac` turns the filter off on the route.
    return new RbacRules((config as envoy.extensions.filters.http.rbac.v3.RBACPerRoute).rbac ?? {}, `${path}.rbac`, errors);
  },
};
