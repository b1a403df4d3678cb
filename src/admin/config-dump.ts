import type { AnyMessage, envoy } from '../generated/envoy.js';
import { typeNameFromUrl } from '../config/extensions.js';
import { encodeMessage } from '../config/proto/encode.js';
import { HCM_TYPE } from '../config/validate.js';

type Bootstrap = envoy.config.bootstrap.v3.Bootstrap;
type HttpConnectionManager = envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager;

const TYPE = 'type.googleapis.com/';

function any(typeName: string, value: unknown): AnyMessage {
  return { type_url: TYPE + typeName, value };
}

/**
 * Envoy's `/config_dump`: the bootstrap, then the clusters, listeners and route configurations it holds, each
 * dump an `Any` in Envoy's order, printed as proto3-JSON with proto field names. With `resource`, only the
 * entries of that repeated field (`static_clusters`, `static_listeners`, `static_route_configs`), each as an
 * `Any` of its own.
 */
export function configDump(bootstrap: Bootstrap, lastUpdated: string, resource?: string): unknown {
  const resources = bootstrap.static_resources ?? {};
  const staticClusters = (resources.clusters ?? []).map((cluster) =>
    any('envoy.admin.v3.ClustersConfigDump.StaticCluster', { cluster: any('envoy.config.cluster.v3.Cluster', cluster), last_updated: lastUpdated }),
  );
  const staticListeners = (resources.listeners ?? []).map((listener) =>
    any('envoy.admin.v3.ListenersConfigDump.StaticListener', { listener: any('envoy.config.listener.v3.Listener', listener), last_updated: lastUpdated }),
  );
  const staticRouteConfigs = (resources.listeners ?? []).flatMap((listener) =>
    [...(listener.filter_chains ?? []), ...(listener.default_filter_chain ? [listener.default_filter_chain] : [])].flatMap((chain) =>
      (chain.filters ?? []).flatMap((filter) => {
        const config = filter.typed_config;
        if (!config || typeNameFromUrl(config.type_url) !== HCM_TYPE) return [];
        const routeConfig = (config.value as HttpConnectionManager).route_config;
        if (!routeConfig) return [];
        return [
          any('envoy.admin.v3.RoutesConfigDump.StaticRouteConfig', {
            route_config: any('envoy.config.route.v3.RouteConfiguration', routeConfig),
            last_updated: lastUpdated,
          }),
        ];
      }),
    ),
  );
  const byResource: Record<string, AnyMessage[]> = {
    static_clusters: staticClusters,
    static_listeners: staticListeners,
    static_route_configs: staticRouteConfigs,
  };
  const configs =
    resource !== undefined
      ? (byResource[resource] ?? [])
      : [
          any('envoy.admin.v3.BootstrapConfigDump', { bootstrap, last_updated: lastUpdated }),
          any('envoy.admin.v3.ClustersConfigDump', { static_clusters: staticClusters.map((a) => a.value) }),
          any('envoy.admin.v3.ListenersConfigDump', { static_listeners: staticListeners.map((a) => a.value) }),
          any('envoy.admin.v3.RoutesConfigDump', { static_route_configs: staticRouteConfigs.map((a) => a.value) }),
        ];
  return encodeMessage('envoy.admin.v3.ConfigDump', { configs });
}

/** The resource names `/config_dump?resource=` accepts. */
export const CONFIG_DUMP_RESOURCES = ['static_clusters', 'static_listeners', 'static_route_configs'];
