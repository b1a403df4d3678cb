/**
 * What both ends of Envoy's discovery protocol share: the resource types, the gRPC services that carry them
 * (the aggregated one and one per type, each in its state-of-the-world and incremental variant) and the
 * messages' encoding (protobufjs over the protos in `@grpc/grpc-js-xds`).
 */
import { envoyMethod, lookupEnvoyType, type ProtoMethod } from '../grpc/envoy-protos.js';

const PREFIX = 'type.googleapis.com/';
export const LISTENER_TYPE = `${PREFIX}envoy.config.listener.v3.Listener`;
export const ROUTE_TYPE = `${PREFIX}envoy.config.route.v3.RouteConfiguration`;
export const CLUSTER_TYPE = `${PREFIX}envoy.config.cluster.v3.Cluster`;
export const ENDPOINT_TYPE = `${PREFIX}envoy.config.endpoint.v3.ClusterLoadAssignment`;
export const SECRET_TYPE = `${PREFIX}envoy.extensions.transport_sockets.tls.v3.Secret`;
export const HCM_TYPE = `${PREFIX}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`;

/**
 * The order a change is pushed in, Envoy's make-before-break: clusters before the endpoints they are warmed
 * with, both before the listeners and routes that use them. The types whose resources are all sent when
 * nothing is named (wildcard) are the first and third.
 */
export const PUSH_ORDER = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE] as const;
export const WILDCARD_TYPES: ReadonlySet<string> = new Set([LISTENER_TYPE, CLUSTER_TYPE]);

export type XdsVariant = 'sotw' | 'delta';

/** A discovery method: its service, and the one resource type it carries (undefined for the aggregated one). */
export interface DiscoveryMethod {
  readonly method: ProtoMethod;
  readonly variant: XdsVariant;
  readonly typeUrl: string | undefined;
}

const SERVICES: [file: string, service: string, sotw: string, delta: string, typeUrl: string | undefined][] = [
  ['envoy/service/discovery/v3/ads.proto', 'envoy.service.discovery.v3.AggregatedDiscoveryService', 'StreamAggregatedResources', 'DeltaAggregatedResources', undefined],
  ['envoy/service/listener/v3/lds.proto', 'envoy.service.listener.v3.ListenerDiscoveryService', 'StreamListeners', 'DeltaListeners', LISTENER_TYPE],
  ['envoy/service/route/v3/rds.proto', 'envoy.service.route.v3.RouteDiscoveryService', 'StreamRoutes', 'DeltaRoutes', ROUTE_TYPE],
  ['envoy/service/cluster/v3/cds.proto', 'envoy.service.cluster.v3.ClusterDiscoveryService', 'StreamClusters', 'DeltaClusters', CLUSTER_TYPE],
  ['envoy/service/endpoint/v3/eds.proto', 'envoy.service.endpoint.v3.EndpointDiscoveryService', 'StreamEndpoints', 'DeltaEndpoints', ENDPOINT_TYPE],
  ['envoy/service/secret/v3/sds.proto', 'envoy.service.secret.v3.SecretDiscoveryService', 'StreamSecrets', 'DeltaSecrets', SECRET_TYPE],
];

let methods: { service: string; methods: Record<string, DiscoveryMethod> }[] | undefined;

/** Every discovery service with its two streaming methods, loaded on first use. */
export function discoveryServices(): { service: string; methods: Record<string, DiscoveryMethod> }[] {
  return (methods ??= SERVICES.map(([file, service, sotw, delta, typeUrl]) => ({
    service,
    methods: {
      [sotw]: { method: envoyMethod(file, service, sotw), variant: 'sotw', typeUrl },
      [delta]: { method: envoyMethod(file, service, delta), variant: 'delta', typeUrl },
    },
  })));
}

/** The method that carries `variant` for resources of `typeUrl` (undefined: every type, over ADS). */
export function discoveryMethod(variant: XdsVariant, typeUrl: string | undefined): DiscoveryMethod {
  for (const { methods: byName } of discoveryServices()) {
    for (const m of Object.values(byName)) if (m.variant === variant && m.typeUrl === typeUrl) return m;
  }
  throw new Error(`no ${variant} discovery service for ${typeUrl}`);
}

/** A resource as it travels: its name, its content encoded in an Any, and a version of that content. */
export interface XdsResource {
  readonly name: string;
  readonly any: { type_url: string; value: Buffer };
  /** A digest of the encoding: equal for equal content, so unchanged resources are not sent again. */
  readonly version: string;
}

/** `google.rpc.Status` codes a NACK's `error_detail` carries. */
export const INVALID_ARGUMENT = 3;

/**
 * Loads the protos of the resource types and of the extensions every configuration has (the connection
 * manager, the router) ahead of the first update, so that the first change is not the one paying for it.
 */
export function preloadResourceTypes(): void {
  for (const url of [...PUSH_ORDER, HCM_TYPE, `${PREFIX}envoy.extensions.filters.http.router.v3.Router`]) lookupEnvoyType(url.slice(PREFIX.length));
}
