/**
 * The control plane's xDS server on @grpc/grpc-js: the aggregated discovery service and the per-type ones, in
 * the state-of-the-world and the incremental (delta) variants, all serving one snapshot (see snapshot.ts).
 *
 * Per stream and type it keeps what Envoy's protocol asks of a server: the names subscribed (or wildcard), what
 * was last sent and under which nonce, and the client's answer. A request whose `response_nonce` is not the
 * last one sent is stale and only ever changes the subscription; an answer with `error_detail` is a NACK: the
 * client stays on what it had, and the error is kept per node for the API, the log and the dashboard. A new
 * snapshot is pushed to every stream in make-before-break order (CDS, EDS, LDS, RDS), and only what changed for
 * that stream is sent.
 */
import * as grpc from '@grpc/grpc-js';
import { fromStruct, grpcDefinition } from '../../grpc/envoy-protos.js';
import type { Logger } from '../../util/logger.js';
import { discoveryServices, LISTENER_TYPE, preloadResourceTypes, PUSH_ORDER, WILDCARD_TYPES, type DiscoveryMethod, type XdsResource } from '../../xds/protocol.js';
import type { XdsSnapshot } from './snapshot.js';

/** What the control plane knows of one data plane (by `node.id`). */
export interface NodeStatus {
  id: string;
  cluster: string;
  metadata: Record<string, unknown>;
  /** Open streams; 0 once it went away. */
  streams: number;
  connectedAt: string;
  lastSeenAt: string;
  /** By type URL: the version the node last acknowledged. */
  acked: Record<string, string>;
  /** By type URL: the last NACK, until a later version of that type is acknowledged. */
  rejected: Record<string, { version: string; message: string; at: string }>;
  /** The snapshot version this node has acknowledged in every type it subscribes to. */
  appliedVersion: string | undefined;
}

interface Subscription {
  wildcard: boolean;
  names: Set<string>;
  /** Name → version of what the client holds (as last sent to it). */
  sent: Map<string, string>;
  /** Nonce of the last response, and whether the client has answered it. */
  nonce: string | undefined;
  pending: boolean;
  /** The client refused the last response. */
  refused: boolean;
  sentVersion: string;
}

type Json = Record<string, unknown>;
type Call = grpc.ServerDuplexStream<Json, Json>;

export interface XdsServerOptions {
  log: Logger;
}

export class XdsServer {
  private snapshot: XdsSnapshot | undefined;
  private readonly streams = new Set<XdsStream>();
  readonly nodes = new Map<string, NodeStatus>();
  private readonly waiters = new Set<{ node: string; version: string; resolve: () => void; reject: (err: Error) => void }>();
  private server: grpc.Server | undefined;
  private nonce = 0;

  constructor(private readonly options: XdsServerOptions) {}

  /** Binds the gRPC server; resolves with the port. */
  async listen(host: string, port: number): Promise<number> {
    preloadResourceTypes();
    const server = new grpc.Server({ 'grpc.max_send_message_length': -1, 'grpc.max_receive_message_length': -1 });
    for (const { methods } of discoveryServices()) {
      const definitions: Record<string, grpc.MethodDefinition<object, object>> = {};
      const handlers: grpc.UntypedServiceImplementation = {};
      for (const [name, method] of Object.entries(methods)) {
        definitions[name] = grpcDefinition(method.method);
        handlers[name] = (call: Call) => this.open(call, method);
      }
      server.addService(definitions, handlers);
    }
    const target = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    const bound = await new Promise<number>((resolve, reject) =>
      server.bindAsync(target, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.server = server;
    return bound;
  }

  /** Serves `snapshot` from now on, pushing what changed to every stream. */
  setSnapshot(snapshot: XdsSnapshot): void {
    this.snapshot = snapshot;
    for (const stream of this.streams) stream.push();
  }

  get current(): XdsSnapshot | undefined {
    return this.snapshot;
  }

  nextNonce(): string {
    return String(++this.nonce);
  }

  /**
   * Resolves once node `nodeId` has acknowledged snapshot `version` in every type it subscribes to; rejects when
   * it refuses it (NACK) or after `timeoutMs`.
   */
  waitForNode(nodeId: string, version: string, timeoutMs: number): Promise<void> {
    if (this.nodes.get(nodeId)?.appliedVersion === version) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = {
        node: nodeId,
        version,
        resolve: () => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve();
        },
        reject: (err: Error) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          reject(err);
        },
      };
      const timer = setTimeout(() => waiter.reject(new Error(`data plane ${nodeId} did not acknowledge version ${version} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** @internal the stream's node has acknowledged everything it was sent. */
  applied(node: NodeStatus, version: string): void {
    node.appliedVersion = version;
    for (const w of this.waiters) if (w.node === node.id && w.version === version) w.resolve();
  }

  /** @internal the stream's node refused a response. */
  rejected(node: NodeStatus, typeUrl: string, version: string, message: string): void {
    node.rejected[typeUrl] = { version, message, at: new Date().toISOString() };
    this.options.log.warn(`xds: node ${node.id} rejected ${typeUrl.slice(typeUrl.lastIndexOf('.') + 1)} version ${version}: ${message}`);
    for (const w of this.waiters) if (w.node === node.id && w.version === version) w.reject(new Error(`data plane ${node.id} rejected version ${version}: ${message}`));
  }

  /** @internal */
  node(id: string, cluster: string, metadata: Record<string, unknown>): NodeStatus {
    let node = this.nodes.get(id);
    const now = new Date().toISOString();
    if (node === undefined) {
      node = { id, cluster, metadata, streams: 0, connectedAt: now, lastSeenAt: now, acked: {}, rejected: {}, appliedVersion: undefined };
      this.nodes.set(id, node);
      this.options.log.info(`xds: node ${id} (cluster ${cluster || '-'}) connected`);
    }
    node.cluster = cluster;
    node.metadata = metadata;
    return node;
  }

  private open(call: Call, method: DiscoveryMethod): void {
    const stream = new XdsStream(this, call, method);
    this.streams.add(stream);
    const close = () => {
      if (!this.streams.delete(stream)) return;
      stream.closed();
    };
    call.on('data', (request: Json) => {
      try {
        stream.onRequest(request);
      } catch (err) {
        this.options.log.error(`xds: ${(err as Error).message}`);
        call.destroy(err as Error);
        close();
      }
    });
    call.on('end', () => {
      close();
      call.end();
    });
    call.on('error', close);
    call.on('cancelled', close);
  }

  async close(): Promise<void> {
    for (const stream of this.streams) stream.call.end();
    this.streams.clear();
    const server = this.server;
    if (server === undefined) return;
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    server.forceShutdown();
  }
}

class XdsStream {
  private node: NodeStatus | undefined;
  private readonly subs = new Map<string, Subscription>();

  constructor(
    private readonly server: XdsServer,
    readonly call: Call,
    private readonly method: DiscoveryMethod,
  ) {}

  onRequest(request: Json): void {
    if (this.node === undefined) {
      const node = (request.node ?? {}) as Json;
      this.node = this.server.node(String(node.id ?? ''), String(node.cluster ?? ''), fromStruct(node.metadata as never));
      this.node.streams++;
    }
    this.node.lastSeenAt = new Date().toISOString();
    if (this.method.variant === 'delta') this.onDelta(request);
    else this.onSotw(request);
  }

  closed(): void {
    if (this.node !== undefined) this.node.streams--;
  }

  private typeOf(request: Json): string {
    const typeUrl = this.method.typeUrl ?? String(request.type_url ?? '');
    if (typeUrl === '') throw new Error('a request on the aggregated stream names no type_url');
    return typeUrl;
  }

  private subscription(typeUrl: string): Subscription {
    let sub = this.subs.get(typeUrl);
    if (sub === undefined) {
      sub = { wildcard: false, names: new Set(), sent: new Map(), nonce: undefined, pending: false, refused: false, sentVersion: '' };
      this.subs.set(typeUrl, sub);
    }
    return sub;
  }

  private onSotw(request: Json): void {
    const typeUrl = this.typeOf(request);
    const known = this.subs.get(typeUrl);
    const sub = this.subscription(typeUrl);
    const nonce = request.response_nonce as string | undefined;
    if (nonce) {
      if (nonce !== sub.nonce) return; // stale: an answer to a response since replaced
      this.answered(typeUrl, sub, request);
    }
    const names = ((request.resource_names ?? []) as string[]).filter((n) => n !== '*');
    // Legacy wildcard: the first LDS or CDS request naming nothing; explicit wildcard: "*" among the names.
    const wildcard = ((request.resource_names ?? []) as string[]).includes('*') || (WILDCARD_TYPES.has(typeUrl) && names.length === 0 && (known === undefined || known.wildcard));
    const changed = wildcard !== sub.wildcard || names.length !== sub.names.size || names.some((n) => !sub.names.has(n));
    sub.wildcard = wildcard;
    sub.names = new Set(names);
    if (known === undefined || changed) this.sendSotw(typeUrl, sub, true);
  }

  private onDelta(request: Json): void {
    const typeUrl = this.typeOf(request);
    const known = this.subs.get(typeUrl);
    const sub = this.subscription(typeUrl);
    const nonce = request.response_nonce as string | undefined;
    if (nonce && nonce === sub.nonce) this.answered(typeUrl, sub, request);
    if (known === undefined) {
      // Versions the client already holds from an earlier stream: nothing to send again for those.
      for (const [name, version] of Object.entries((request.initial_resource_versions ?? {}) as Record<string, string>)) sub.sent.set(name, version);
    }
    const subscribe = (request.resource_names_subscribe ?? []) as string[];
    const unsubscribe = (request.resource_names_unsubscribe ?? []) as string[];
    if (known === undefined && subscribe.length === 0 && WILDCARD_TYPES.has(typeUrl)) sub.wildcard = true;
    for (const name of subscribe) {
      if (name === '*') sub.wildcard = true;
      else sub.names.add(name);
    }
    for (const name of unsubscribe) {
      if (name === '*') sub.wildcard = false;
      else {
        sub.names.delete(name);
        sub.sent.delete(name);
      }
    }
    if (known === undefined || subscribe.length > 0) this.sendDelta(typeUrl, sub, subscribe);
  }

  private answered(typeUrl: string, sub: Subscription, request: Json): void {
    sub.pending = false;
    const node = this.node!;
    const error = request.error_detail as { message?: string } | undefined;
    sub.refused = error !== undefined && error !== null;
    if (sub.refused) {
      this.server.rejected(node, typeUrl, sub.sentVersion, error?.message ?? 'no detail');
      return;
    }
    node.acked[typeUrl] = sub.sentVersion;
    delete node.rejected[typeUrl];
    this.reportApplied();
  }

  /** Tells the server when the client has answered everything and holds all the current snapshot has for it. */
  private reportApplied(): void {
    const snapshot = this.server.current;
    if (this.node !== undefined && snapshot !== undefined && [...this.subs.values()].every((s) => !s.pending) && this.upToDate(snapshot)) {
      this.server.applied(this.node, snapshot.version);
    }
  }

  /** Whether everything the client subscribes to is what the snapshot holds (the client has it all). */
  private upToDate(snapshot: XdsSnapshot): boolean {
    for (const [typeUrl, sub] of this.subs) {
      if (sub.refused) return false;
      const selected = this.select(snapshot, typeUrl, sub);
      if (selected.length !== sub.sent.size || selected.some((r) => sub.sent.get(r.name) !== r.version)) return false;
    }
    return true;
  }

  /** Pushes a new snapshot: every type whose resources changed for this stream, in make-before-break order. */
  push(): void {
    const order = [...PUSH_ORDER, ...[...this.subs.keys()].filter((t) => !(PUSH_ORDER as readonly string[]).includes(t))];
    for (const typeUrl of order) {
      const sub = this.subs.get(typeUrl);
      if (sub === undefined) continue;
      if (this.method.variant === 'delta') this.sendDelta(typeUrl, sub, []);
      else this.sendSotw(typeUrl, sub, false);
    }
    this.reportApplied();
  }

  private select(snapshot: XdsSnapshot, typeUrl: string, sub: Subscription): XdsResource[] {
    const port = typeUrl === LISTENER_TYPE ? Number(this.node?.metadata.listener_port) : NaN;
    const own = Number.isInteger(port) && port > 0 && port < 65536 ? snapshot.listenersOnPort(port) : undefined;
    const out: XdsResource[] = [];
    const seen = new Set<string>();
    if (sub.wildcard) {
      for (const r of own?.values() ?? snapshot.all(typeUrl)) {
        out.push(r);
        seen.add(r.name);
      }
    }
    for (const name of sub.names) {
      if (seen.has(name)) continue;
      const r = own?.get(name) ?? snapshot.get(typeUrl, name);
      if (r !== undefined) out.push(r);
    }
    return out;
  }

  /** State of the world: every selected resource, whenever any of them changed (or `force`: a new subscription). */
  private sendSotw(typeUrl: string, sub: Subscription, force: boolean): void {
    const snapshot = this.server.current;
    if (snapshot === undefined) return;
    const selected = this.select(snapshot, typeUrl, sub);
    const same = selected.length === sub.sent.size && selected.every((r) => sub.sent.get(r.name) === r.version);
    if (same && !force) return;
    sub.sent = new Map(selected.map((r) => [r.name, r.version]));
    sub.nonce = this.server.nextNonce();
    sub.pending = true;
    sub.sentVersion = snapshot.version;
    this.call.write({ version_info: snapshot.version, resources: selected.map((r) => r.any), type_url: typeUrl, nonce: sub.nonce });
  }

  /** Incremental: the resources that changed or are newly subscribed, and the names that went away. */
  private sendDelta(typeUrl: string, sub: Subscription, subscribed: string[]): void {
    const snapshot = this.server.current;
    if (snapshot === undefined) return;
    const selected = this.select(snapshot, typeUrl, sub);
    const selectedNames = new Set(selected.map((r) => r.name));
    const changed = selected.filter((r) => sub.sent.get(r.name) !== r.version);
    const removed = [...sub.sent.keys()].filter((name) => !selectedNames.has(name));
    // A name subscribed that does not exist is reported removed, so the client stops waiting for it.
    for (const name of subscribed) if (name !== '*' && !selectedNames.has(name) && !removed.includes(name)) removed.push(name);
    if (changed.length === 0 && removed.length === 0 && subscribed.length === 0 && sub.nonce !== undefined) return;
    for (const r of changed) sub.sent.set(r.name, r.version);
    for (const name of removed) sub.sent.delete(name);
    sub.nonce = this.server.nextNonce();
    sub.pending = true;
    sub.sentVersion = snapshot.version;
    this.call.write({
      system_version_info: snapshot.version,
      resources: changed.map((r) => ({ name: r.name, version: r.version, resource: r.any })),
      removed_resources: removed,
      type_url: typeUrl,
      nonce: sub.nonce,
    });
  }
}
