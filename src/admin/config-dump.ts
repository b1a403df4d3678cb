import type { AnyMessage, envoy } from '../generated/envoy.js';
import { typeNameFromUrl } from '../config/extensions.js';
import { encodeMessage } from '../config/proto/encode.js';
import { decodeMessage } from '../config/proto/decode.js';
import { HCM_TYPE } from '../config/validate.js';

type Bootstrap = envoy.config.bootstrap.v3.Bootstrap;
type HttpConnectionManager = envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager;

const TYPE = 'type.googleapis.com/';

function any(typeName: string, value: unknown): AnyMessage {
  return { type_url: TYPE + typeName, value };
}

/** A resource from xDS, as the process holds it (proto3-JSON). */
export interface DynamicResource {
  typeUrl: string;
  name: string;
  version: string;
  lastUpdated: string;
  json: Record<string, unknown>;
}

/**
 * Envoy's `/config_dump`: the bootstrap, then the clusters, listeners and route configurations it holds (static
 * and from xDS, with the version each came in), each dump an `Any` in Envoy's order, printed as proto3-JSON
 * with proto field names. With `resource`, only the entries of that repeated field (`static_clusters`,
 * `dynamic_active_clusters`, `static_listeners`, ...), each as an `Any` of its own. EDS assignments are listed
 * only with `includeEds`, as in Envoy.
 */
export function configDump(bootstrap: Bootstrap, lastUpdated: string, resource?: string, dynamic: readonly DynamicResource[] = [], includeEds = false): unknown {
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
  const ofType = (type: string, wrap: (r: DynamicResource, value: unknown) => { typeName: string; value: unknown }) =>
    dynamic
      .filter((r) => r.typeUrl === TYPE + type)
      .map((r) => {
        const wrapped = wrap(r, decodeMessage(type, r.json, '', [], { ignoreUnknownFields: true }));
        return any(wrapped.typeName, wrapped.value);
      });
  const dynamicClusters = ofType('envoy.config.cluster.v3.Cluster', (r, cluster) => ({
    typeName: 'envoy.admin.v3.ClustersConfigDump.DynamicCluster',
    value: { version_info: r.version, cluster: any('envoy.config.cluster.v3.Cluster', cluster), last_updated: r.lastUpdated },
  }));
  const dynamicListeners = ofType('envoy.config.listener.v3.Listener', (r, listener) => ({
    typeName: 'envoy.admin.v3.ListenersConfigDump.DynamicListener',
    value: { name: r.name, active_state: { version_info: r.version, listener: any('envoy.config.listener.v3.Listener', listener), last_updated: r.lastUpdated } },
  }));
  const dynamicRoutes = ofType('envoy.config.route.v3.RouteConfiguration', (r, routes) => ({
    typeName: 'envoy.admin.v3.RoutesConfigDump.DynamicRouteConfig',
    value: { version_info: r.version, route_config: any('envoy.config.route.v3.RouteConfiguration', routes), last_updated: r.lastUpdated },
  }));
  const dynamicEndpoints = ofType('envoy.config.endpoint.v3.ClusterLoadAssignment', (r, assignment) => ({
    typeName: 'envoy.admin.v3.EndpointsConfigDump.DynamicEndpointConfig',
    value: { version_info: r.version, endpoint_config: any('envoy.config.endpoint.v3.ClusterLoadAssignment', assignment), last_updated: r.lastUpdated },
  }));
  const versionOf = (type: string) => dynamic.find((r) => r.typeUrl === TYPE + type)?.version;
  const byResource: Record<string, AnyMessage[]> = {
    static_clusters: staticClusters,
    dynamic_active_clusters: dynamicClusters,
    static_listeners: staticListeners,
    dynamic_listeners: dynamicListeners,
    static_route_configs: staticRouteConfigs,
    dynamic_route_configs: dynamicRoutes,
    dynamic_endpoint_configs: dynamicEndpoints,
  };
  const values = (list: AnyMessage[]) => (list.length > 0 ? list.map((a) => a.value) : undefined);
  const configs =
    resource !== undefined
      ? (byResource[resource] ?? [])
      : [
          any('envoy.admin.v3.BootstrapConfigDump', { bootstrap, last_updated: lastUpdated }),
          any('envoy.admin.v3.ClustersConfigDump', {
            version_info: versionOf('envoy.config.cluster.v3.Cluster'),
            static_clusters: staticClusters.map((a) => a.value),
            dynamic_active_clusters: values(dynamicClusters),
          }),
          ...(includeEds ? [any('envoy.admin.v3.EndpointsConfigDump', { dynamic_endpoint_configs: values(dynamicEndpoints) })] : []),
          any('envoy.admin.v3.ListenersConfigDump', {
            version_info: versionOf('envoy.config.listener.v3.Listener'),
            static_listeners: staticListeners.map((a) => a.value),
            dynamic_listeners: values(dynamicListeners),
          }),
          any('envoy.admin.v3.RoutesConfigDump', { static_route_configs: staticRouteConfigs.map((a) => a.value), dynamic_route_configs: values(dynamicRoutes) }),
        ];
  return encodeMessage('envoy.admin.v3.ConfigDump', { configs });
}

/** The resource names `/config_dump?resource=` accepts. */
export const CONFIG_DUMP_RESOURCES = [
  'static_clusters',
  'dynamic_active_clusters',
  'static_listeners',
  'dynamic_listeners',
  'static_route_configs',
  'dynamic_route_configs',
  'dynamic_endpoint_configs',
];
