/**
 * What both RBAC filters share around the engine: the enforced and shadow engines of one config, their stats
 * (`<prefix>rbac.<rules_stat_prefix>allowed`, `<prefix>rbac.<shadow_rules_stat_prefix>shadow_allowed`, as Envoy's
 * `generateStats` composes them), and the shadow result in dynamic metadata.
 */
import type { envoy } from '../../../../generated/envoy.js';
import { childPath, type ConfigError } from '../../../../config/errors.js';
import { defineStats, type StatScope, type StatsStore } from '../../../../stats/store.js';
import { RbacEngine, type RbacSubject, setMetadata } from './engine.js';

export const RBAC_STATS = defineStats({ counters: ['allowed', 'denied'], gauges: [], histograms: [] });
export const RBAC_SHADOW_STATS = defineStats({ counters: ['shadow_allowed', 'shadow_denied'], gauges: [], histograms: [] });
const E = RBAC_STATS.c;
const S = RBAC_SHADOW_STATS.c;

/** Envoy's statPrefixJoin: a dot between prefix and token unless the prefix is empty or ends with one. */
function statPrefixJoin(prefix: string, token: string): string {
  return prefix === '' || prefix.endsWith('.') ? prefix + token : `${prefix}.${token}`;
}

interface RbacRules {
  rules?: envoy.config.rbac.v3.RBAC;
  shadow_rules?: envoy.config.rbac.v3.RBAC;
}

/** The two engines of a config (either may be absent). */
export class RbacEngines {
  readonly enforced: RbacEngine | undefined;
  readonly shadow: RbacEngine | undefined;

  constructor(config: RbacRules, path: string, errors: ConfigError[]) {
    this.enforced = config.rules === undefined ? undefined : new RbacEngine(config.rules, childPath(path, 'rules'), errors);
    this.shadow = config.shadow_rules === undefined ? undefined : new RbacEngine(config.shadow_rules, childPath(path, 'shadow_rules'), errors);
  }
}

/** The stats and metadata keys of one filter config. */
export class RbacReporter {
  readonly enforcedStats: StatScope;
  readonly shadowStats: StatScope;
  private readonly policyIdKey: string;
  private readonly resultKey: string;

  constructor(
    private readonly store: StatsStore,
    statPrefix: string,
    rulesStatPrefix: string,
    shadowRulesStatPrefix: string,
    /** The filter's name: the dynamic metadata namespace of the shadow result. */
    private readonly namespace: string,
  ) {
    const base = statPrefixJoin(statPrefix, 'rbac.');
    this.enforcedStats = store.scope(RBAC_STATS, base + rulesStatPrefix);
    // Its own key: the two scopes may have the same prefix.
    this.shadowStats = store.scope(RBAC_SHADOW_STATS, base + shadowRulesStatPrefix, `shadow:${base}${shadowRulesStatPrefix}`);
    this.policyIdKey = `${shadowRulesStatPrefix}shadow_effective_policy_id`;
    this.resultKey = `${shadowRulesStatPrefix}shadow_engine_result`;
  }

  /** Runs the shadow engine, if any: counts and records its result, never acts on it. */
  shadow(engines: RbacEngines, subject: RbacSubject): void {
    const engine = engines.shadow;
    if (engine === undefined) return;
    const allowed = engine.allowed(subject);
    this.shadowStats.counters[allowed ? S.shadow_allowed : S.shadow_denied]++;
    if (engine.matchedPolicy !== undefined) setMetadata(subject.info, this.namespace, this.policyIdKey, engine.matchedPolicy);
    setMetadata(subject.info, this.namespace, this.resultKey, allowed ? 'allowed' : 'denied');
  }

  /**
   * Runs the enforced engine, if any, and counts its decision: undefined when allowed, else the denied response's
   * details, `rbac_access_denied_matched_policy[<policy or none>]` (whitespace in a name becomes `_`).
   */
  enforce(engines: RbacEngines, subject: RbacSubject): string | undefined {
    const engine = engines.enforced;
    if (engine === undefined) return undefined;
    if (engine.allowed(subject)) {
      this.enforcedStats.counters[E.allowed]++;
      return undefined;
    }
    this.enforcedStats.counters[E.denied]++;
    return `rbac_access_denied_matched_policy[${(engine.matchedPolicy ?? 'none').replace(/\s/g, '_')}]`;
  }

  release(): void {
    this.store.release(this.enforcedStats);
    this.store.release(this.shadowStats);
  }
}
