/**
 * A connection manager's compiled `http_filters`, ending with its terminal filter (the router), and the
 * compilation of `typed_per_filter_config` for the route table. The factories come from the registry the
 * program was composed with: the data plane knows no filter by name.
 */
import type { AnyMessage, envoy } from '../../generated/envoy.js';
import { type ConfigError, childPath } from '../../config/errors.js';
import { extensionName, typeNameFromUrl } from '../../config/extensions.js';
import type { RouteEntry } from '../router/route-table.js';
import type { Runtime } from '../runtime/runtime.js';
import type {
  DecoderFilterCallbacks,
  EncoderFilterCallbacks,
  FilterFactoryContext,
  HttpFilterConfig,
  HttpFilterFactory,
  HttpFilterRegistry,
  StreamFilter,
} from './filter.js';

type HttpFilter = envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter;

/** `envoy.config.route.v3.FilterConfig`: a per-route entry that only says whether the filter runs. */
const FILTER_CONFIG_TYPE = 'envoy.config.route.v3.FilterConfig';

/** A route's entry for a filter that does not run on it (`disabled: true`). */
export const FILTER_DISABLED: unique symbol = Symbol('portico.filterDisabled');
/** A route's entry that turns on a filter disabled in `http_filters`, without a config of its own. */
const FILTER_ENABLED: unique symbol = Symbol('portico.filterEnabled');

/** The stream whose filters are created: it makes each filter's callbacks, knowing its place in the chain. */
export interface FilterCallbacksSource {
  filterCallbacks(index: number): DecoderFilterCallbacks & EncoderFilterCallbacks;
}

/** One level's compiled `typed_per_filter_config`, by filter name as written in the chain. */
export type PerFilterConfigs = ReadonlyMap<string, unknown>;

export class HttpFilterChain {
  private constructor(
    readonly registry: HttpFilterRegistry,
    /** Filter names as written in `http_filters` (the keys of `typed_per_filter_config`), in chain order. */
    private readonly names: readonly string[],
    private readonly factories: readonly HttpFilterFactory[],
    private readonly configs: readonly HttpFilterConfig[],
    /** `disabled: true` in http_filters: the filter runs only on routes that enable it. */
    private readonly disabledByDefault: readonly boolean[],
  ) {}

  /** Compiles every filter, the terminal one included. Validation has checked that the router is last. */
  static compile(
    filters: readonly HttpFilter[] | undefined,
    registry: HttpFilterRegistry,
    context: FilterFactoryContext,
    path: string,
    errors: ConfigError[],
  ): HttpFilterChain {
    const names: string[] = [];
    const factories: HttpFilterFactory[] = [];
    const configs: HttpFilterConfig[] = [];
    const disabled: boolean[] = [];
    (filters ?? []).forEach((filter, i) => {
      const filterPath = childPath(childPath(path, 'http_filters'), i);
      const any = filter.typed_config;
      // The router may be named without a typed_config, as Envoy's own examples do.
      const typeName = any === undefined ? (filter.name === 'envoy.filters.http.router' ? ROUTER_TYPE : undefined) : typeNameFromUrl(any.type_url);
      if (typeName === undefined) return; // refused by validate
      const factory = registry.byConfig(typeName);
      if (factory === undefined) {
        errors.push({ code: 'unsupported_extension', path: filterPath, message: `unsupported extension ${extensionName(typeName)} (${typeName}) as an HTTP filter` });
        return;
      }
      if (factory.terminal === true && i !== (filters?.length ?? 0) - 1) {
        errors.push({ code: 'router_not_last', path: filterPath, message: `${factory.name} is a terminal filter and must be the last HTTP filter` });
      }
      names.push(filter.name ?? '');
      factories.push(factory);
      disabled.push(filter.disabled ?? false);
      configs.push(factory.createFilterConfig(any?.value ?? {}, context, `${filterPath}.typed_config`, errors));
    });
    return new HttpFilterChain(registry, names, factories, configs, disabled);
  }

  get length(): number {
    return this.configs.length;
  }

  /**
   * One stream's filters, in chain order; a filter that has nothing to do for the stream (or is disabled on its
   * route) is left out. `route` (undefined when none matched) supplies each filter's per-route config.
   */
  createStreamFilters(stream: FilterCallbacksSource, route: RouteEntry | undefined, out: StreamFilter[]): void {
    const routeConfigs = route?.filterConfigs;
    const configs = this.configs;
    for (let i = 0; i < configs.length; i++) {
      const routeConfig = routeConfigs === undefined ? undefined : routeConfigs[i];
      if (routeConfig === FILTER_DISABLED || (routeConfig === undefined && this.disabledByDefault[i])) continue;
      const filter = configs[i]!.createFilter(stream.filterCallbacks(out.length), routeConfig === FILTER_ENABLED ? undefined : routeConfig);
      if (filter !== undefined) out.push(filter);
    }
  }

  /**
   * Per filter of this chain (same indexes), the config a stream on `route` gets: from the route's, its virtual
   * host's and its route configuration's `typed_per_filter_config` (`levels`, most specific first), or
   * FILTER_DISABLED. Undefined when no filter has any.
   */
  resolveRouteConfigs(
    levels: readonly (PerFilterConfigs | undefined)[],
    deprecatedLevels: readonly (PerFilterConfigs | undefined)[],
    route: RouteEntry,
  ): readonly unknown[] | undefined {
    let any = false;
    const resolved = this.names.map((name, i) => {
      const found: unknown[] = [];
      let enabled = false;
      for (const level of levels) {
        const config = level?.get(name);
        if (config === undefined) continue;
        // The most specific FilterConfig decides whether the filter runs; a disabled one hides the levels above.
        if (config === FILTER_DISABLED) {
          if (found.length === 0 && !enabled) return ((any = true), FILTER_DISABLED);
          break;
        }
        if (config === FILTER_ENABLED) enabled = true;
        else found.push(config);
      }
      const factory = this.factories[i]!;
      let config: unknown;
      if (factory.resolveRouteConfig !== undefined) {
        const deprecated = factory.deprecatedRouteField === undefined ? [] : collect(deprecatedLevels, factory.deprecatedRouteField);
        config = factory.resolveRouteConfig(found, route, deprecated);
      } else {
        config = found[0];
      }
      if (config === undefined && enabled) config = FILTER_ENABLED;
      if (config !== undefined) any = true;
      return config;
    });
    return any ? resolved : undefined;
  }

  /**
   * The per-route configs of one level (a virtual host, or a route's action) written in the older fields of the
   * route API that some filters still read (CORS's `cors`), compiled by those filters; keyed by field name.
   */
  compileDeprecatedLevel(level: object | undefined, runtime: Runtime, path: string, errors: ConfigError[]): PerFilterConfigs | undefined {
    if (level === undefined) return undefined;
    let out: Map<string, unknown> | undefined;
    for (const factory of this.factories) {
      const field = factory.deprecatedRouteField;
      const value = field === undefined ? undefined : (level as Record<string, unknown>)[field];
      if (value === undefined || factory.compileRouteConfig === undefined) continue;
      (out ??= new Map()).set(field!, factory.compileRouteConfig(value, runtime, childPath(path, field!), errors));
    }
    return out;
  }

  release(): void {
    for (const config of this.configs) config.release();
  }
}

function collect(levels: readonly (PerFilterConfigs | undefined)[], key: string): unknown[] {
  const out: unknown[] = [];
  for (const level of levels) {
    const config = level?.get(key);
    if (config !== undefined) out.push(config);
  }
  return out;
}

/** The router's config type: the one filter Envoy lets a chain name without a typed_config. */
const ROUTER_TYPE = 'envoy.extensions.filters.http.router.v3.Router';

/**
 * Compiles one level's `typed_per_filter_config`. As in Envoy, an entry is compiled by the type of its config,
 * whether or not a filter of that name is in the chain, and a type that is no filter's per-route config is refused.
 * A `FilterConfig` wrapper is unwrapped: `disabled: true` turns the filter off for the level, `config` is the
 * filter's own per-route config.
 */
export function compilePerFilterConfigs(
  configs: Record<string, AnyMessage> | undefined,
  registry: HttpFilterRegistry,
  runtime: Runtime,
  path: string,
  errors: ConfigError[],
): PerFilterConfigs | undefined {
  if (configs === undefined) return undefined;
  const out = new Map<string, unknown>();
  for (const [name, entry] of Object.entries(configs)) {
    const entryPath = `${childPath(path, 'typed_per_filter_config')}[${JSON.stringify(name)}]`;
    let any: AnyMessage | undefined = entry;
    let anyPath = entryPath;
    if (typeNameFromUrl(entry.type_url) === FILTER_CONFIG_TYPE) {
      const wrapper = entry.value as envoy.config.route.v3.FilterConfig;
      if (wrapper.disabled === true) {
        out.set(name, FILTER_DISABLED);
        continue;
      }
      any = wrapper.config;
      anyPath = `${entryPath}.config`;
      if (any === undefined) {
        // Enabled, with the filter's own config: how a route turns on a filter disabled in http_filters.
        out.set(name, FILTER_ENABLED);
        continue;
      }
    }
    const typeName = typeNameFromUrl(any.type_url);
    const factory = registry.byRouteConfig(typeName);
    if (factory === undefined || factory.compileRouteConfig === undefined) {
      errors.push({
        code: 'unsupported_extension',
        path: anyPath,
        message: `unsupported extension ${extensionName(typeName)} (${typeName}) as a per-route filter config`,
      });
      continue;
    }
    out.set(name, factory.compileRouteConfig(any.value, runtime, anyPath, errors));
  }
  return out.size === 0 ? undefined : out;
}
