/**
 * Stats with Envoy's names. Each component declares its stats once (`defineStats`); each instance of it (a
 * cluster, a connection manager, a listener) gets a `StatScope`: counters and gauges are slots of typed arrays
 * indexed by constants from the declaration, so counting on the request path is an array increment and never
 * builds a string. Names are only assembled when the stats are read (`/stats`, Prometheus, worker snapshots).
 */
import { Histogram, type HistogramData } from './histogram.js';

type IndexOf<T extends string> = { readonly [K in T]: number };

export interface StatSchema<C extends string = string, G extends string = string, H extends string = string> {
  readonly counterNames: readonly C[];
  readonly gaugeNames: readonly G[];
  readonly histogramNames: readonly H[];
  /** Counter families with one counter per HTTP status code, e.g. `upstream_rq` → `upstream_rq_503`. */
  readonly codeFamilies: readonly string[];
  /** Per gauge: whether the values of several worker processes add up (activity) or are the same (configuration). */
  readonly gaugeAdditive: readonly boolean[];
  /** The same for counters: configuration events (a cluster added) happen once per worker but once for the server. */
  readonly counterAdditive: readonly boolean[];
  readonly c: IndexOf<C>;
  readonly g: IndexOf<G>;
  readonly h: IndexOf<H>;
}

function indexOf<T extends string>(names: readonly T[]): IndexOf<T> {
  return Object.freeze(Object.fromEntries(names.map((name, i) => [name, i]))) as IndexOf<T>;
}

/** Declares a component's stats: names relative to its scope prefix (`upstream_rq_total`, `ssl.handshake`). */
export function defineStats<C extends string, G extends string, H extends string>(declaration: {
  counters: readonly C[];
  gauges: readonly G[];
  histograms: readonly H[];
  codeFamilies?: readonly string[];
  /** Gauges that describe the configuration (membership, listeners): every worker has the same value. */
  sharedGauges?: readonly G[];
  /** Counters of configuration events, which every worker counts alike. */
  sharedCounters?: readonly C[];
}): StatSchema<C, G, H> {
  return {
    counterNames: declaration.counters,
    gaugeNames: declaration.gauges,
    histogramNames: declaration.histograms,
    codeFamilies: declaration.codeFamilies ?? [],
    gaugeAdditive: declaration.gauges.map((name) => !(declaration.sharedGauges ?? []).includes(name)),
    counterAdditive: declaration.counters.map((name) => !(declaration.sharedCounters ?? []).includes(name)),
    c: indexOf(declaration.counters),
    g: indexOf(declaration.gauges),
    h: indexOf(declaration.histograms),
  };
}

/** The stats of one component instance. */
export class StatScope {
  readonly counters: Float64Array;
  readonly gauges: Float64Array;
  readonly histograms: Histogram[];
  /** Per code family, counts by status code (index = code), allocated when the family is first used. */
  private readonly codes: Array<Float64Array | undefined>;
  /** Per code family, the codes counted before a reset: they stay listed, at 0, as Envoy's dynamic stats do. */
  private readonly codesLatched: Array<Uint8Array | undefined>;
  /** Counters that were non-zero when last reset, so that `usedonly` still lists them. */
  private readonly counterLatched: Uint8Array;
  private readonly gaugeUsed: Uint8Array;

  constructor(
    readonly schema: StatSchema,
    /** The name prefix, with its trailing dot (`cluster.backend.`); a function when it is only known later. */
    private readonly prefixOf: string | (() => string),
  ) {
    this.counters = new Float64Array(schema.counterNames.length);
    this.gauges = new Float64Array(schema.gaugeNames.length);
    this.histograms = schema.histogramNames.map(() => new Histogram());
    this.codes = schema.codeFamilies.map(() => undefined);
    this.codesLatched = schema.codeFamilies.map(() => undefined);
    this.counterLatched = new Uint8Array(schema.counterNames.length);
    this.gaugeUsed = new Uint8Array(schema.gaugeNames.length);
  }

  get prefix(): string {
    return typeof this.prefixOf === 'string' ? this.prefixOf : this.prefixOf();
  }

  /** Counts one response code in a code family (family index in the schema's `codeFamilies`). */
  countCode(family: number, code: number): void {
    if (code < 100 || code > 599) return;
    (this.codes[family] ??= new Float64Array(600))[code]++;
  }

  /** Sets a gauge and marks it used even when the value is 0. */
  setGauge(index: number, value: number): void {
    this.gauges[index] = value;
    this.gaugeUsed[index] = 1;
  }

  resetCounters(): void {
    for (let i = 0; i < this.counters.length; i++) {
      if (this.counters[i] !== 0) this.counterLatched[i] = 1;
      this.counters[i] = 0;
    }
    this.codes.forEach((codes, family) => {
      if (codes === undefined) return;
      const latched = (this.codesLatched[family] ??= new Uint8Array(600));
      for (let code = 100; code < 600; code++) if (codes[code] !== 0) latched[code] = 1;
      codes.fill(0);
    });
  }

  flushHistograms(): void {
    for (const histogram of this.histograms) histogram.flush();
  }

  /** Appends this scope's stats, with full names, to a snapshot. */
  collect(into: StatsSnapshot): void {
    const prefix = this.prefix;
    const { counterNames, gaugeNames, histogramNames, codeFamilies } = this.schema;
    for (let i = 0; i < counterNames.length; i++) {
      const value = this.counters[i]!;
      into.counters.push([prefix + counterNames[i]!, value, value !== 0 || this.counterLatched[i] === 1, this.schema.counterAdditive[i]!]);
    }
    for (let i = 0; i < gaugeNames.length; i++) {
      const value = this.gauges[i]!;
      if (value !== 0) this.gaugeUsed[i] = 1;
      into.gauges.push([prefix + gaugeNames[i]!, value, this.gaugeUsed[i] === 1, this.schema.gaugeAdditive[i]!]);
    }
    for (let f = 0; f < codeFamilies.length; f++) {
      const codes = this.codes[f];
      if (codes === undefined) continue;
      const latched = this.codesLatched[f];
      // A code counter exists once it has been counted.
      for (let code = 100; code < 600; code++) {
        if (codes[code] !== 0 || latched?.[code] === 1) into.counters.push([`${prefix}${codeFamilies[f]}_${code}`, codes[code]!, true, true]);
      }
    }
    for (let i = 0; i < histogramNames.length; i++) {
      const histogram = this.histograms[i]!;
      into.histograms.push([prefix + histogramNames[i]!, histogram.data(), histogram.used]);
    }
  }
}

/** Stats by full name, in a form that crosses process boundaries: `[name, value, used]`. */
export interface StatsSnapshot {
  /** `[name, value, used, additive]`: see `StatSchema.counterAdditive`. */
  counters: Array<[string, number, boolean, boolean]>;
  /** `[name, value, used, additive]`: see `StatSchema.gaugeAdditive`. */
  gauges: Array<[string, number, boolean, boolean]>;
  histograms: Array<[string, HistogramData, boolean]>;
}

/** Envoy's `stats_flush_interval` default: histogram intervals end (and workers push their stats) this often. */
export const DEFAULT_STATS_FLUSH_MS = 5000;

export function emptySnapshot(): StatsSnapshot {
  return { counters: [], gauges: [], histograms: [] };
}

/**
 * Every scope of one process. Components take a scope when built and release it when gone. Scopes are shared by
 * key (the name prefix, or an explicit key when the prefix is only known later): a component rebuilt by a
 * configuration change (a connection manager, a modified cluster) takes the same scope, so its counters carry on
 * as Envoy's do for a stat name that stays.
 */
export class StatsStore {
  private readonly scopes = new Set<StatScope>();
  private readonly byKey = new Map<string, { scope: StatScope; refs: number }>();
  private readonly keyOf = new Map<StatScope, string>();
  /** Sources of gauges computed when read (server memory, uptime). */
  private readonly collectors = new Set<(into: StatsSnapshot) => void>();

  scope(schema: StatSchema, prefix: string | (() => string), key = typeof prefix === 'string' ? prefix : undefined): StatScope {
    if (key !== undefined) {
      const shared = this.byKey.get(key);
      if (shared !== undefined && shared.scope.schema === schema) {
        shared.refs++;
        return shared.scope;
      }
    }
    const scope = new StatScope(schema, prefix);
    this.scopes.add(scope);
    if (key !== undefined) {
      this.byKey.set(key, { scope, refs: 1 });
      this.keyOf.set(scope, key);
    }
    return scope;
  }

  /** Gives a scope back; its stats disappear when nothing holds it any more. */
  release(scope: StatScope): void {
    const key = this.keyOf.get(scope);
    const shared = key === undefined ? undefined : this.byKey.get(key);
    if (shared !== undefined && --shared.refs > 0) return;
    if (key !== undefined) {
      this.byKey.delete(key);
      this.keyOf.delete(scope);
    }
    this.scopes.delete(scope);
  }

  addCollector(collect: (into: StatsSnapshot) => void): void {
    this.collectors.add(collect);
  }

  snapshot(): StatsSnapshot {
    const snapshot = emptySnapshot();
    for (const scope of this.scopes) scope.collect(snapshot);
    for (const collect of this.collectors) collect(snapshot);
    return snapshot;
  }

  resetCounters(): void {
    for (const scope of this.scopes) scope.resetCounters();
  }

  flushHistograms(): void {
    for (const scope of this.scopes) scope.flushHistograms();
  }
}
