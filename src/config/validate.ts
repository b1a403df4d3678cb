import { isIP } from 'node:net';
import type { envoy } from '../generated/envoy.js';
import { type ConfigError, childPath } from './errors.js';
import { typeNameFromUrl } from './extensions.js';

type Bootstrap = envoy.config.bootstrap.v3.Bootstrap;
type HttpConnectionManager = envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager;
type RouteConfiguration = envoy.config.route.v3.RouteConfiguration;

export const HCM_TYPE = 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
export const ROUTER_TYPE = 'envoy.extensions.filters.http.router.v3.Router';
export const TCP_PROXY_TYPE = 'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';

/**
 * Cross-reference and value checks that the schema cannot express: names that must be unique, clusters that
 * routes name, filter order, and values of supported fields that Portico does not implement yet.
 */
export function validateBootstrap(bootstrap: Bootstrap, errors: ConfigError[]): void {
  const resources = bootstrap.static_resources ?? {};
  if (bootstrap.dynamic_resources !== undefined) validateDynamicResources(bootstrap, errors);
  const clusterNames = new Set<string>();
  (resources.clusters ?? []).forEach((cluster, i) => {
    const path = `static_resources.clusters[${i}]`;
    const name = cluster.name ?? '';
    if (clusterNames.has(name)) {
      errors.push({ code: 'duplicate_name', path: `${path}.name`, message: `duplicate cluster name "${name}"` });
    }
    clusterNames.add(name);
    validateCluster(cluster, path, errors);
  });

  const listenerNames = new Set<string>();
  const listenerAddresses = new Set<string>();
  (resources.listeners ?? []).forEach((listener, i) => {
    const path = `static_resources.listeners[${i}]`;
    const address = socketAddressKey(listener.address, childPath(path, 'address'), errors);
    if (listener.name !== undefined && listener.name !== '') {
      if (listenerNames.has(listener.name)) {
        errors.push({ code: 'duplicate_name', path: `${path}.name`, message: `duplicate listener name "${listener.name}"` });
      }
      listenerNames.add(listener.name);
    }
    // Port 0 asks the system for a free port, so two such listeners never collide.
    if (address !== undefined && !address.endsWith(':0')) {
      if (listenerAddresses.has(address)) {
        errors.push({ code: 'duplicate_name', path: `${path}.address`, message: `another listener is bound to ${address}` });
      }
      listenerAddresses.add(address);
    }
    const chains = [...(listener.filter_chains ?? [])];
    const udp = listener.address?.socket_address?.protocol === 'UDP';
    if (chains.length === 0 && !listener.default_filter_chain && !udp) {
      errors.push({ code: 'missing_required', path: `${path}.filter_chains`, message: 'a listener needs at least one filter chain' });
    }
    const allChains = listener.default_filter_chain
      ? [...chains.map((c, j) => [c, `${path}.filter_chains[${j}]`] as const), [listener.default_filter_chain, `${path}.default_filter_chain`] as const]
      : chains.map((c, j) => [c, `${path}.filter_chains[${j}]`] as const);
    for (const [chain, chainPath] of allChains) {
      const filters = chain.filters ?? [];
      if (filters.length === 0) {
        errors.push({ code: 'missing_required', path: `${chainPath}.filters`, message: 'a filter chain needs a terminal network filter' });
      }
      filters.forEach((filter, k) => {
        const filterPath = `${chainPath}.filters[${k}]`;
        if (!filter.typed_config) {
          errors.push({ code: 'missing_required', path: filterPath, message: `network filter ${filter.name ?? ''} has no typed_config` });
          return;
        }
        const type = typeNameFromUrl(filter.typed_config.type_url);
        if (type !== HCM_TYPE && type !== TCP_PROXY_TYPE) return;
        if (k !== filters.length - 1) {
          const name = type === HCM_TYPE ? 'http_connection_manager' : 'tcp_proxy';
          errors.push({ code: 'invalid_value', path: filterPath, message: `${name} is a terminal filter and must be last` });
        }
        if (type === HCM_TYPE) validateHcm(filter.typed_config.value as HttpConnectionManager, `${filterPath}.typed_config`, clusterNames, errors);
      });
    }
  });
}

function validateHcm(hcm: HttpConnectionManager, path: string, clusters: Set<string>, errors: ConfigError[]): void {
  if (hcm.codec_type === 'HTTP3') {
    errors.push({ code: 'unsupported_field', path: `${path}.codec_type`, message: 'codec_type HTTP3 is not supported yet' });
  }
  if (hcm.http2_protocol_options?.connection_keepalive !== undefined) {
    errors.push({
      code: 'unsupported_field',
      path: `${path}.http2_protocol_options.connection_keepalive`,
      message: 'connection_keepalive is supported on clusters only, not yet on downstream connections',
    });
  }
  if (hcm.route_config === undefined) {
    errors.push({ code: 'missing_required', path, message: 'route_config is required (rds and scoped_routes are not supported yet)' });
  } else {
    validateRouteConfiguration(hcm.route_config, `${path}.route_config`, clusters, errors);
  }
  const filters = hcm.http_filters ?? [];
  if (filters.length === 0) {
    errors.push({ code: 'router_not_last', path: `${path}.http_filters`, message: 'http_filters must end with envoy.filters.http.router' });
  }
  filters.forEach((filter, i) => {
    const isRouter = filter.typed_config
      ? typeNameFromUrl(filter.typed_config.type_url) === ROUTER_TYPE
      : filter.name === 'envoy.filters.http.router';
    const last = i === filters.length - 1;
    if (isRouter !== last) {
      errors.push({
        code: 'router_not_last',
        path: `${path}.http_filters[${i}]`,
        message: isRouter ? 'envoy.filters.http.router must be the last HTTP filter' : 'the last HTTP filter must be envoy.filters.http.router',
      });
    }
    if (!filter.typed_config && !isRouter) {
      errors.push({ code: 'missing_required', path: `${path}.http_filters[${i}]`, message: `HTTP filter ${filter.name ?? ''} has no typed_config` });
    }
  });
  const fcc = hcm.forward_client_cert_details;
  if (fcc !== undefined && fcc !== 'SANITIZE') {
    errors.push({ code: 'unsupported_field', path: `${path}.forward_client_cert_details`, message: `forward_client_cert_details ${fcc} is not supported yet` });
  }
}

/** Checks one route configuration; also used for route configurations that arrive on their own. */
export function validateRouteConfiguration(
  config: RouteConfiguration,
  path: string,
  clusters: Set<string> | undefined,
  errors: ConfigError[],
): void {
  const checkClusters = clusters !== undefined && config.validate_clusters !== false;
  if (checkClusters) checkMirrorClusters(config.request_mirror_policies, `${path}.request_mirror_policies`, clusters, errors);
  const vhostNames = new Set<string>();
  const domains = new Map<string, string>();
  (config.virtual_hosts ?? []).forEach((vhost, i) => {
    const vhostPath = `${path}.virtual_hosts[${i}]`;
    const name = vhost.name ?? '';
    if (vhostNames.has(name)) {
      errors.push({ code: 'duplicate_name', path: `${vhostPath}.name`, message: `duplicate virtual host name "${name}"` });
    }
    vhostNames.add(name);
    if ((vhost.domains ?? []).length === 0) {
      errors.push({ code: 'missing_required', path: `${vhostPath}.domains`, message: 'a virtual host needs at least one domain' });
    }
    (vhost.domains ?? []).forEach((domain, j) => {
      const key = domain.toLowerCase();
      const owner = domains.get(key);
      if (owner !== undefined) {
        errors.push({
          code: 'duplicate_domain',
          path: `${vhostPath}.domains[${j}]`,
          message: `domain "${domain}" is already claimed by virtual host "${owner}"`,
        });
      } else {
        domains.set(key, name);
      }
      if (domain !== '*' && domain.length > 1 && domain.slice(1, -1).includes('*')) {
        errors.push({ code: 'invalid_value', path: `${vhostPath}.domains[${j}]`, message: `domain "${domain}" may hold a wildcard only at its start or end` });
      }
    });
    if (!checkClusters) return;
    checkMirrorClusters(vhost.request_mirror_policies, `${vhostPath}.request_mirror_policies`, clusters, errors);
    (vhost.routes ?? []).forEach((route, k) => {
      const action = route.route;
      if (!action) return;
      const actionPath = `${vhostPath}.routes[${k}].route`;
      if (action.cluster !== undefined && !clusters.has(action.cluster)) {
        errors.push({ code: 'unknown_cluster', path: `${actionPath}.cluster`, message: `route names unknown cluster "${action.cluster}"` });
      }
      checkMirrorClusters(action.request_mirror_policies, `${actionPath}.request_mirror_policies`, clusters, errors);
      (action.weighted_clusters?.clusters ?? []).forEach((weighted, w) => {
        if (weighted.name !== undefined && !clusters.has(weighted.name)) {
          errors.push({
            code: 'unknown_cluster',
            path: `${actionPath}.weighted_clusters.clusters[${w}].name`,
            message: `route names unknown cluster "${weighted.name}"`,
          });
        }
      });
    });
  });
}

/** A fixed mirror cluster must exist, as route clusters must (a cluster named by a header is looked up per request). */
function checkMirrorClusters(
  policies: readonly envoy.config.route.v3.RouteAction.RequestMirrorPolicy[] | undefined,
  path: string,
  clusters: Set<string>,
  errors: ConfigError[],
): void {
  (policies ?? []).forEach((policy, i) => {
    if (policy.cluster && !clusters.has(policy.cluster)) {
      errors.push({ code: 'unknown_cluster', path: `${path}[${i}].cluster`, message: `mirror policy names unknown cluster "${policy.cluster}"` });
    }
  });
}

function validateCluster(cluster: envoy.config.cluster.v3.Cluster, path: string, errors: ConfigError[]): void {
  const type = cluster.type ?? 'STATIC';
  if (cluster.cluster_type !== undefined) {
    errors.push({ code: 'unsupported_field', path: `${path}.cluster_type`, message: 'custom cluster types are not supported yet' });
  } else if (type !== 'STATIC' && type !== 'STRICT_DNS' && type !== 'LOGICAL_DNS') {
    errors.push({ code: 'unsupported_field', path: `${path}.type`, message: `cluster type ${type} is not supported yet` });
  }
  validateLbPolicy(cluster, path, errors);
  validateHealthChecks(cluster, path, errors);
  const endpoints = cluster.load_assignment?.endpoints ?? [];
  let count = 0;
  endpoints.forEach((locality, i) => {
    (locality.lb_endpoints ?? []).forEach((lbEndpoint, j) => {
      const endpointPath = `${path}.load_assignment.endpoints[${i}].lb_endpoints[${j}]`;
      count++;
      const address = lbEndpoint.endpoint?.address?.socket_address;
      if (!address) {
        errors.push({ code: 'missing_required', path: `${endpointPath}.endpoint.address`, message: 'an endpoint needs a socket address' });
        return;
      }
      socketAddressKey(lbEndpoint.endpoint?.address, `${endpointPath}.endpoint.address`, errors);
      const healthCheckAddress = lbEndpoint.endpoint?.health_check_config?.address?.socket_address?.address;
      if (healthCheckAddress !== undefined && isIP(healthCheckAddress) === 0) {
        errors.push({
          code: 'invalid_value',
          path: `${endpointPath}.endpoint.health_check_config.address.socket_address.address`,
          message: `a health check address must be an IP address, not "${healthCheckAddress}"`,
        });
      }
      if (type === 'STATIC' && isIP(address.address ?? '') === 0) {
        errors.push({
          code: 'invalid_value',
          path: `${endpointPath}.endpoint.address.socket_address.address`,
          message: `STATIC cluster endpoints must be IP addresses, not "${address.address}" (use STRICT_DNS)`,
        });
      }
    });
  });
  if (type === 'LOGICAL_DNS' && count !== 1) {
    errors.push({ code: 'invalid_value', path: `${path}.load_assignment`, message: 'a LOGICAL_DNS cluster must have exactly one endpoint' });
  }
}

/** `ip:port` of a listener or endpoint address, reporting what is unsupported about it. */
function socketAddressKey(address: envoy.config.core.v3.Address | undefined, path: string, errors: ConfigError[]): string | undefined {
  const socket = address?.socket_address;
  if (!socket) {
    errors.push({ code: 'missing_required', path, message: 'socket_address is required' });
    return undefined;
  }
  if (socket.protocol === 'UDP') {
    errors.push({ code: 'unsupported_field', path: `${path}.socket_address.protocol`, message: 'protocol UDP is not supported (UDP listeners and endpoints)' });
  }
  if (socket.port_value === undefined) {
    errors.push({ code: 'missing_required', path: `${path}.socket_address.port_value`, message: 'port_value is required' });
  }
  return `${socket.address ?? ''}:${socket.port_value ?? 0}`;
}

/** One health check at most, as Envoy allows; the checks themselves are compiled, and checked, with the cluster. */
function validateHealthChecks(cluster: envoy.config.cluster.v3.Cluster, path: string, errors: ConfigError[]): void {
  if ((cluster.health_checks?.length ?? 0) > 1) {
    errors.push({ code: 'invalid_value', path: `${path}.health_checks`, message: 'multiple health checks are not supported (Envoy allows one per cluster)' });
  }
}

const SUPPORTED_LB_POLICIES = new Set(['ROUND_ROBIN', 'LEAST_REQUEST', 'RANDOM', 'RING_HASH', 'MAGLEV']);

const MAX_RING_SIZE = 8_388_608;
const MAX_MAGLEV_TABLE_SIZE = 5_000_011;

/** Envoy's limits on the policy fields, checked with every other configuration error. */
function validateLbPolicy(cluster: envoy.config.cluster.v3.Cluster, path: string, errors: ConfigError[]): void {
  const policy = cluster.lb_policy ?? 'ROUND_ROBIN';
  if (!SUPPORTED_LB_POLICIES.has(policy)) {
    errors.push({ code: 'unsupported_field', path: `${path}.lb_policy`, message: `lb_policy ${policy} is not supported` });
  }
  const ring = cluster.ring_hash_lb_config;
  if (ring !== undefined) {
    const min = ring.minimum_ring_size ?? 1024;
    const max = ring.maximum_ring_size ?? MAX_RING_SIZE;
    for (const [field, value] of [['minimum_ring_size', min], ['maximum_ring_size', max]] as const) {
      if (value > MAX_RING_SIZE) {
        errors.push({ code: 'invalid_value', path: `${path}.ring_hash_lb_config.${field}`, message: `${field} must be at most ${MAX_RING_SIZE}` });
      }
    }
    if (min > max) {
      errors.push({
        code: 'invalid_value',
        path: `${path}.ring_hash_lb_config`,
        message: `ring hash: minimum_ring_size (${min}) > maximum_ring_size (${max})`,
      });
    }
  }
  const tableSize = cluster.maglev_lb_config?.table_size;
  if (tableSize !== undefined && (tableSize > MAX_MAGLEV_TABLE_SIZE || !isPrime(tableSize))) {
    errors.push({
      code: 'invalid_value',
      path: `${path}.maglev_lb_config.table_size`,
      message: `the table size of maglev must be a prime number no larger than ${MAX_MAGLEV_TABLE_SIZE}, not ${tableSize}`,
    });
  }
  const choiceCount = cluster.least_request_lb_config?.choice_count;
  if (choiceCount !== undefined && choiceCount < 2) {
    errors.push({ code: 'invalid_value', path: `${path}.least_request_lb_config.choice_count`, message: 'choice_count must be at least 2' });
  }
}

function isPrime(n: number): boolean {
  if (n < 2 || !Number.isInteger(n)) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

const GRPC_API_TYPES = new Set(['GRPC', 'DELTA_GRPC', 'AGGREGATED_GRPC', 'AGGREGATED_DELTA_GRPC']);

/** `dynamic_resources`: what Portico's xDS client can subscribe to (gRPC, state of the world or delta, and files). */
function validateDynamicResources(bootstrap: Bootstrap, errors: ConfigError[]): void {
  const dynamic = bootstrap.dynamic_resources!;
  const staticClusters = new Map((bootstrap.static_resources?.clusters ?? []).map((c) => [c.name ?? '', c]));
  const checkApi = (api: envoy.config.core.v3.ApiConfigSource, path: string) => {
    if (!GRPC_API_TYPES.has(api.api_type ?? 'GRPC')) {
      errors.push({ code: 'unsupported_field', path: `${path}.api_type`, message: `api_type ${api.api_type} is not supported: use GRPC or DELTA_GRPC` });
    }
    const service = api.grpc_services?.[0];
    if (service === undefined) {
      errors.push({ code: 'missing_required', path: `${path}.grpc_services`, message: 'an xDS gRPC source needs one grpc_services entry' });
      return;
    }
    if (service.envoy_grpc !== undefined) {
      const cluster = staticClusters.get(service.envoy_grpc.cluster_name ?? '');
      const servicePath = `${path}.grpc_services[0].envoy_grpc.cluster_name`;
      if (cluster === undefined) {
        errors.push({ code: 'unknown_cluster', path: servicePath, message: `the xDS cluster "${service.envoy_grpc.cluster_name}" must be a static cluster` });
      } else if (cluster.transport_socket !== undefined) {
        errors.push({ code: 'unsupported_field', path: servicePath, message: 'xDS over TLS is not supported: the xDS cluster must be plaintext HTTP/2' });
      } else if (!(cluster.load_assignment?.endpoints ?? []).some((l) => (l.lb_endpoints ?? []).length > 0)) {
        errors.push({ code: 'missing_required', path: servicePath, message: `the xDS cluster "${cluster.name}" has no endpoints` });
      }
    } else if (service.google_grpc?.channel_credentials !== undefined) {
      errors.push({ code: 'unsupported_field', path: `${path}.grpc_services[0].google_grpc.channel_credentials`, message: 'xDS over TLS is not supported' });
    }
  };
  if (dynamic.ads_config !== undefined) checkApi(dynamic.ads_config, 'dynamic_resources.ads_config');
  for (const key of ['lds_config', 'cds_config'] as const) {
    const source = dynamic[key];
    if (source === undefined) continue;
    const path = `dynamic_resources.${key}`;
    if (source.ads !== undefined && dynamic.ads_config === undefined) {
      errors.push({ code: 'missing_required', path: 'dynamic_resources.ads_config', message: `${key} uses ADS, which needs ads_config` });
    } else if (source.api_config_source !== undefined) {
      checkApi(source.api_config_source, `${path}.api_config_source`);
    } else if (source.ads === undefined && !source.path && !source.path_config_source?.path) {
      errors.push({ code: 'missing_required', path, message: 'a config source needs ads, api_config_source or path_config_source' });
    }
  }
}
