/**
 * A minimal state-of-the-world xDS server written for the tests on @grpc/grpc-js (not Portico's own server), so
 * that Portico's xDS client is checked against another implementation of the protocol. It serves one snapshot
 * on the aggregated service and on the per-type RDS service (a version per type), answers every request that is not an ACK of its
 * last response with the current resources of that type, and records every request.
 */
import * as grpc from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import { envoyMethod, grpcDefinition, loadEnvoyProto } from '../../src/grpc/envoy-protos.js';

export const TYPES = {
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  route: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  endpoint: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  hcm: 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
  router: 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
};

/** Encodes `object` (protobufjs's own object form: Any as {type_url, value}, Duration as {seconds}) as an Any. */
export function packAny(typeUrl: string, object: Record<string, unknown>): { type_url: string; value: Buffer } {
  const name = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
  const file = FILES[name];
  if (file === undefined) throw new Error(`no proto file known for ${name}`);
  const type = loadEnvoyProto(file).lookupType(name) as protobuf.Type;
  const message = type.fromObject(object);
  const problem = type.verify(message);
  if (problem) throw new Error(`${name}: ${problem}`);
  return { type_url: typeUrl, value: Buffer.from(type.encode(message).finish()) };
}

const FILES: Record<string, string> = {
  'envoy.config.listener.v3.Listener': 'envoy/config/listener/v3/listener.proto',
  'envoy.config.route.v3.RouteConfiguration': 'envoy/config/route/v3/route.proto',
  'envoy.config.cluster.v3.Cluster': 'envoy/config/cluster/v3/cluster.proto',
  'envoy.config.endpoint.v3.ClusterLoadAssignment': 'envoy/config/endpoint/v3/endpoint.proto',
  'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager':
    'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy.extensions.filters.http.router.v3.Router': 'envoy/extensions/filters/http/router/v3/router.proto',
};

export interface RecordedRequest {
  service: 'ads' | 'rds';
  type_url: string;
  version_info: string;
  response_nonce: string;
  resource_names: string[];
  error_detail?: { message?: string };
  node?: { id?: string };
}

export class FakeXdsServer {
  readonly requests: RecordedRequest[] = [];
  private server: grpc.Server | undefined;
  private readonly versions = new Map<string, string>();
  private readonly resources = new Map<string, { name: string; any: { type_url: string; value: Buffer } }[]>();
  private readonly streams = new Set<{ write(typeUrl: string): void }>();
  private nonce = 0;

  /** Replaces the resources of the types given (each at `version`) and pushes them to every open stream. */
  serve(version: string, resources: Record<string, { name: string; any: { type_url: string; value: Buffer } }[]>): void {
    for (const [typeUrl, list] of Object.entries(resources)) {
      this.versions.set(typeUrl, version);
      this.resources.set(typeUrl, list);
    }
    for (const stream of this.streams) for (const typeUrl of Object.keys(resources)) stream.write(typeUrl);
  }

  async start(port: number): Promise<number> {
    const server = new grpc.Server();
    const ads = envoyMethod('envoy/service/discovery/v3/ads.proto', 'envoy.service.discovery.v3.AggregatedDiscoveryService', 'StreamAggregatedResources');
    const rds = envoyMethod('envoy/service/route/v3/rds.proto', 'envoy.service.route.v3.RouteDiscoveryService', 'StreamRoutes');
    server.addService({ StreamAggregatedResources: grpcDefinition(ads) }, { StreamAggregatedResources: (call: Call) => this.stream(call, 'ads') });
    server.addService({ StreamRoutes: grpcDefinition(rds) }, { StreamRoutes: (call: Call) => this.stream(call, 'rds') });
    const bound = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.server = server;
    return bound;
  }

  stop(): void {
    this.server?.forceShutdown();
    this.server = undefined;
    this.streams.clear();
  }

  /** The ACKs (no error) and NACKs recorded for a type, in order. */
  answers(typeUrl: string): RecordedRequest[] {
    return this.requests.filter((r) => r.type_url === typeUrl && r.response_nonce !== '');
  }

  private stream(call: Call, service: 'ads' | 'rds'): void {
    const sentNonce = new Map<string, string>();
    const names = new Map<string, string[]>();
    const stream = {
      write: (typeUrl: string) => {
        const wanted = names.get(typeUrl);
        if (wanted === undefined) return;
        const all = this.resources.get(typeUrl) ?? [];
        const selected = wanted.length === 0 ? all : all.filter((r) => wanted.includes(r.name));
        const nonce = String(++this.nonce);
        sentNonce.set(typeUrl, nonce);
        call.write({ version_info: this.versions.get(typeUrl) ?? '', type_url: typeUrl, nonce, resources: selected.map((r) => r.any) });
      },
    };
    this.streams.add(stream);
    call.on('data', (request: Record<string, unknown>) => {
      const typeUrl = String(request.type_url || (service === 'rds' ? TYPES.route : ''));
      const recorded: RecordedRequest = {
        service,
        type_url: typeUrl,
        version_info: String(request.version_info ?? ''),
        response_nonce: String(request.response_nonce ?? ''),
        resource_names: (request.resource_names ?? []) as string[],
        ...(request.error_detail ? { error_detail: request.error_detail as { message?: string } } : {}),
        ...(request.node ? { node: request.node as { id?: string } } : {}),
      };
      this.requests.push(recorded);
      const before = names.get(typeUrl);
      names.set(typeUrl, recorded.resource_names);
      const isAnswer = recorded.response_nonce !== '' && recorded.response_nonce === sentNonce.get(typeUrl);
      const namesChanged = before === undefined || before.join() !== recorded.resource_names.join();
      if (!isAnswer || namesChanged) stream.write(typeUrl);
    });
    const end = () => this.streams.delete(stream);
    call.on('end', () => {
      end();
      call.end();
    });
    call.on('error', end);
    call.on('cancelled', end);
  }
}

type Call = grpc.ServerDuplexStream<Record<string, unknown>, Record<string, unknown>>;
