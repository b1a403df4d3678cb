/**
 * A connection manager's compiled `http_filters` (the router, always last, is the connection manager's own
 * code), and the compilation of `typed_per_filter_config` for the route table.
 */
import type { AnyMessage, envoy } from '../../generated/envoy.js';
import { type ConfigError, childPath } from '../../config/errors.js';
import { extensionName, typeNameFromUrl } from '../../config/extensions.js';
import { ROUTER_TYPE } from '../../config/validate.js';
import { HTTP_FILTER_FACTORIES } from '../../extensions/filters/http/registry.js';
import type { RouteEntry } from '../router/route-table.js';
import type { Runtime } from '../runtime/runtime.js';
import type { FilterCallbacks, FilterFactoryContext, HttpFilterConfig, HttpFilterFactory, StreamFilter } from './filter.js';

type HttpFilter = envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter;

/** Factories by the type of their `typed_config`, and by the type of their per-route config. */
const BY_CONFIG_TYPE = new Map<string, HttpFilterFactory>(HTTP_FILTER_FACTORIES.map((f) => [f.configType, f]));
const BY_ROUTE_CONFIG_TYPE = new Map<string, HttpFilterFactory>(
  HTTP_FILTER_FACTORIES.filter((f) => f.routeConfigType !== undefined).map((f) => [f.routeConfigType!, f]),
);

/** One level's compiled `typed_per_filter_config`, by filter name as written in the chain. */
export type PerFilterConfigs = ReadonlyMap<string, unknown>;

export class HttpFilterChain {
  private constructor(
    /** Filter names as written in `http_filters` (the keys of `typed_per_filter_config`), in chain order. */
    private readonly names: readonly string[],
    private readonly factories: readonly HttpFilterFactory[],
    private readonly configs: readonly HttpFilterConfig[],
  ) {}

  /**
   * Compiles the filters before the router. Undefined when the router is the only filter: a stream then
   * allocates nothing for filters.
   */
  static compile(filters: readonly HttpFilter[] | undefined, context: FilterFactoryContext, path: string, errors: ConfigError[]): HttpFilterChain | undefined {
    const names: string[] = [];
    const factories: HttpFilterFactory[] = [];
    const configs: HttpFilterConfig[] = [];
    (filters ?? []).forEach((filter, i) => {
      const any = filter.typed_config;
      if (any === undefined) return; // the router by name; anything else without typed_config is refused by validate
      const typeName = typeNameFromUrl(any.type_url);
      if (typeName === ROUTER_TYPE) return;
      const filterPath = childPath(childPath(path, 'http_filters'), i);
      const factory = BY_CONFIG_TYPE.get(typeName);
      if (factory === undefined) {
        errors.push({ code: 'unsupported_extension', path: filterPath, message: `unsupported extension ${extensionName(typeName)} (${typeName}) as an HTTP filter` });
        return;
      }
      names.push(filter.name ?? '');
      factories.push(factory);
      configs.push(factory.createFilterConfig(any.value, context, `${filterPath}.typed_config`, errors));
    });
    return configs.length === 0 ? undefined : new HttpFilterChain(names, factories, configs);
  }

  /** One stream's filters; `route` (undefined when none matched) supplies each filter's per-route config. */
  createStreamFilters(stream: FilterCallbacks, route: RouteEntry | undefined): StreamFilter[] {
    const routeConfigs = route?.filterConfigs;
    const configs = this.configs;
    const filters = new Array<StreamFilter>(configs.length);
    for (let i = 0; i < configs.length; i++) filters[i] = configs[i]!.createFilter(stream, routeConfigs?.[i]);
    return filters;
  }

  /**
   * Per filter of this chain (same indexes), the config a stream on `route` gets: from the route's, its virtual
   * host's and its route configuration's `typed_per_filter_config` (`levels`, most specific first). Undefined
   * when no filter has any.
   */
  resolveRouteConfigs(levels: readonly (PerFilterConfigs | undefined)[], route: RouteEntry): readonly unknown[] | undefined {
    let any = false;
    const resolved = this.names.map((name, i) => {
      const found: unknown[] = [];
      for (const level of levels) {
        const config = level?.get(name);
        if (config !== undefined) found.push(config);
      }
      const factory = this.factories[i]!;
      const config = factory.resolveRouteConfig !== undefined ? factory.resolveRouteConfig(found, route) : found[0];
      if (config !== undefined) any = true;
      return config;
    });
    return any ? resolved : undefined;
  }

  release(): void {
    for (const config of this.configs) config.release();
  }
}

/**
 * Compiles one level's `typed_per_filter_config`. As in Envoy, an entry is compiled by the type of its config,
 * whether or not a filter of that name is in the chain, and a type that is no filter's per-route config is refused.
 */
export function compilePerFilterConfigs(
  configs: Record<string, AnyMessage> | undefined,
  runtime: Runtime,
  path: string,
  errors: ConfigError[],
): PerFilterConfigs | undefined {
  if (configs === undefined) return undefined;
  const out = new Map<string, unknown>();
  for (const [name, any] of Object.entries(configs)) {
    const entryPath = `${childPath(path, 'typed_per_filter_config')}[${JSON.stringify(name)}]`;
    const typeName = typeNameFromUrl(any.type_url);
    const factory = BY_ROUTE_CONFIG_TYPE.get(typeName);
    if (factory === undefined || factory.compileRouteConfig === undefined) {
      errors.push({
        code: 'unsupported_extension',
        path: entryPath,
        message: `unsupported extension ${extensionName(typeName)} (${typeName}) as a per-route filter config`,
      });
      continue;
    }
    out.set(name, factory.compileRouteConfig(any.value, runtime, entryPath, errors));
  }
  return out.size === 0 ? undefined : out;
}
