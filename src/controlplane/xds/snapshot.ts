/**
 * A translation as xDS resources: what the control plane serves to every data plane. The listeners and
 * clusters of the translation are split the way dynamic Envoy configurations are:
 * - each connection manager's inline route table becomes a RouteConfiguration it names over RDS;
 * - each cluster whose hosts are IP addresses becomes an EDS cluster with a ClusterLoadAssignment (so that a
 *   changed endpoint moves without touching the cluster, and proxyless gRPC clients, which resolve no DNS
 *   clusters of the strict kind, can use it); clusters of DNS names stay as they are.
 * Config sources are `self`: whatever stream delivered a listener or cluster delivers its routes or endpoints,
 * over ADS or the per-type services alike.
 *
 * Any LDS name a client asks for that is no socket listener is answered with an API listener for proxyless
 * gRPC clients (`xds:///NAME`): a connection manager with the router only, on the first listener's routes.
 */
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { anyFromJson } from '../../grpc/proto-json.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, HCM_TYPE, LISTENER_TYPE, ROUTE_TYPE, type XdsResource } from '../../xds/protocol.js';

type Json = Record<string, unknown>;

const SELF_SOURCE = { self: {}, resource_api_version: 'V3' };
const ROUTER = { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } };

type Encode = (typeUrl: string, name: string, json: Json, variant?: string) => XdsResource;

export class XdsSnapshot {
  private readonly apiListeners = new Map<string, XdsResource>();
  private readonly listenersByPort = new Map<number, Map<string, XdsResource>>();

  constructor(
    /** The control plane's configuration version this snapshot serves. */
    readonly version: string,
    /** By type URL, by resource name. */
    readonly resources: ReadonlyMap<string, ReadonlyMap<string, XdsResource>>,
    /** The socket listeners as proto3-JSON, for nodes that ask for their own port. */
    private readonly listenerJson: ReadonlyMap<string, Json>,
    /** The route table proxyless clients are given. */
    private readonly apiRouteName: string | undefined,
    private readonly encode: Encode,
  ) {}

  /**
   * The socket listeners moved to `port`: several data planes on one machine each take ports of their own this
   * way (node metadata `listener_port`), since Node cannot share a port between processes that are not one
   * cluster. The first listener (the HTTP one) goes to `port`, every other one as far as the first moved, so a
   * gateway's HTTPS and TCP listeners keep their distance from it; one that would leave 1–65535 keeps its port.
   */
  listenersOnPort(port: number): ReadonlyMap<string, XdsResource> {
    let listeners = this.listenersByPort.get(port);
    if (listeners === undefined) {
      listeners = new Map();
      const portOf = (json: Json) => Number(((json.address as Json | undefined)?.socket_address as Json | undefined)?.port_value ?? 0);
      const first = this.listenerJson.values().next().value;
      const offset = port - (first === undefined ? 0 : portOf(first));
      for (const [name, json] of this.listenerJson) {
        const address = json.address as Json | undefined;
        const moved = json === first ? port : portOf(json) + offset;
        const socket = { ...(address?.socket_address as Json | undefined), port_value: moved >= 1 && moved <= 65535 ? moved : portOf(json) };
        listeners.set(name, this.encode(LISTENER_TYPE, name, { ...json, address: { ...address, socket_address: socket } }, `port ${port}`));
      }
      this.listenersByPort.set(port, listeners);
    }
    return listeners;
  }

  /** The resource `name` of `typeUrl`; for LDS also the API listener of a name that is no socket listener. */
  get(typeUrl: string, name: string): XdsResource | undefined {
    const found = this.resources.get(typeUrl)?.get(name);
    if (found !== undefined || typeUrl !== LISTENER_TYPE || this.apiRouteName === undefined) return found;
    let api = this.apiListeners.get(name);
    if (api === undefined) {
      api = this.encode(LISTENER_TYPE, name, {
        name,
        api_listener: {
          api_listener: {
            '@type': HCM_TYPE,
            stat_prefix: name,
            rds: { route_config_name: this.apiRouteName, config_source: SELF_SOURCE },
            http_filters: [ROUTER],
          },
        },
      });
      this.apiListeners.set(name, api);
    }
    return api;
  }

  /** The resources of a type sent to a client that names none (LDS and CDS): the socket listeners, every cluster. */
  all(typeUrl: string): Iterable<XdsResource> {
    return this.resources.get(typeUrl)?.values() ?? [];
  }
}

/**
 * Builds snapshots, encoding only what changed since the previous one (a resource whose JSON is unchanged keeps
 * its encoding and version), so a change of one Mapping among thousands re-encodes the tables it touches.
 */
export class SnapshotBuilder {
  private previous = new Map<string, { json: string; resource: XdsResource }>();

  build(version: string, listeners: readonly Json[], clusters: readonly Json[]): XdsSnapshot {
    const next = new Map<string, { json: string; resource: XdsResource }>();
    const encode: Encode = (typeUrl, name, json, variant = '') => {
      const text = JSON.stringify(json);
      const key = `${typeUrl} ${name} ${variant}`;
      const old = this.previous.get(key);
      const entry = old !== undefined && old.json === text ? old : { json: text, resource: encodeResource(typeUrl, name, json) };
      next.set(key, entry);
      return entry.resource;
    };
    const byType = new Map<string, Map<string, XdsResource>>([CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE].map((t) => [t, new Map()]));
    const add = (typeUrl: string, name: string, json: Json) => byType.get(typeUrl)!.set(name, encode(typeUrl, name, json));
    let apiRouteName: string | undefined;
    const listenerJson = new Map<string, Json>();
    for (const listener of listeners) {
      const split = splitRoutes(listener);
      for (const [name, table] of split.routes) {
        apiRouteName ??= name;
        add(ROUTE_TYPE, name, table);
      }
      add(LISTENER_TYPE, String(listener.name), split.listener);
      listenerJson.set(String(listener.name), split.listener);
    }
    for (const cluster of clusters) {
      const split = splitEndpoints(cluster);
      add(CLUSTER_TYPE, String(cluster.name), split.cluster);
      if (split.assignment !== undefined) add(ENDPOINT_TYPE, String(cluster.name), split.assignment);
    }
    this.previous = next;
    return new XdsSnapshot(version, byType, listenerJson, apiRouteName, encode);
  }
}

function encodeResource(typeUrl: string, name: string, json: Json): XdsResource {
  const any = anyFromJson({ '@type': typeUrl, ...json }, `${typeUrl.slice(typeUrl.lastIndexOf('.') + 1)} ${name}`);
  return { name, any, version: createHash('sha256').update(any.value).digest('base64url').slice(0, 16) };
}

/** A listener whose connection managers name their route tables over RDS, and those tables. */
function splitRoutes(listener: Json): { listener: Json; routes: Map<string, Json> } {
  const routes = new Map<string, Json>();
  const chains = ((listener.filter_chains ?? []) as Json[]).map((chain) => ({
    ...chain,
    filters: ((chain.filters ?? []) as Json[]).map((filter) => {
      const config = filter.typed_config as Json | undefined;
      if (config?.['@type'] !== HCM_TYPE || config.route_config === undefined) return filter;
      const { route_config, ...rest } = config;
      const table = route_config as Json;
      const name = String(table.name ?? `${String(listener.name)}-routes`);
      routes.set(name, { ...table, name });
      return { ...filter, typed_config: { ...rest, rds: { route_config_name: name, config_source: SELF_SOURCE } } };
    }),
  }));
  return { listener: { ...listener, filter_chains: chains }, routes };
}

/** A cluster of IP addresses as an EDS cluster and its assignment; any other cluster as it is. */
function splitEndpoints(cluster: Json): { cluster: Json; assignment?: Json } {
  const type = cluster.type ?? 'STATIC';
  const assignment = cluster.load_assignment as Json | undefined;
  if ((type !== 'STATIC' && type !== 'STRICT_DNS') || assignment === undefined || !onlyIpAddresses(assignment)) return { cluster };
  const { load_assignment: _, type: _type, dns_lookup_family: _family, ...rest } = cluster;
  return {
    cluster: { ...rest, type: 'EDS', eds_cluster_config: { eds_config: SELF_SOURCE } },
    // gRPC's xDS clients refuse a locality group without a locality (even an empty one) and skip one without a weight.
    assignment: {
      ...assignment,
      cluster_name: cluster.name,
      endpoints: ((assignment.endpoints ?? []) as Json[]).map((group) => ({ locality: {}, load_balancing_weight: 1, ...group })),
    },
  };
}

function onlyIpAddresses(assignment: Json): boolean {
  return ((assignment.endpoints ?? []) as Json[]).every((locality) =>
    ((locality.lb_endpoints ?? []) as Json[]).every((lb) => {
      const address = ((lb.endpoint as Json | undefined)?.address as Json | undefined)?.socket_address as Json | undefined;
      return address !== undefined && isIP(String(address.address)) !== 0;
    }),
  );
}
