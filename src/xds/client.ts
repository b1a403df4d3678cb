/**
 * The data plane's side of xDS: subscribes to the listeners and clusters a bootstrap's `dynamic_resources`
 * name, and to the route tables and endpoints those use, and turns what it holds into one bootstrap document —
 * the static resources plus the dynamic ones, each connection manager's RDS table inlined and each EDS cluster
 * given its assignment — which the process serves as it serves any new configuration (compiled in full,
 * unchanged clusters kept, listeners switched with draining).
 *
 * A response is accepted (ACK) once the document it makes is valid and, when nothing it references is missing,
 * served; otherwise it is refused (NACK with every problem) and the process stays on what it had. Listeners
 * and clusters wait for the routes and endpoints they reference (Envoy's warming), up to the config source's
 * `initial_fetch_timeout` (15 s by default), after which they are served without them. The streams reconnect
 * with backoff; the last good configuration keeps serving while the control plane is away.
 */
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Bootstrap } from '../config/load.js';
import { ConfigValidationError, formatConfigErrors, type ConfigError } from '../config/errors.js';
import { parseDocument } from '../config/load.js';
import type { envoy } from '../generated/envoy.js';
import { decodeMessage } from '../config/proto/decode.js';
import { encodeMessage } from '../config/proto/encode.js';
import { grpcDefinition, toStruct } from '../grpc/envoy-protos.js';
import { anyToJson } from '../grpc/proto-json.js';
import type { Logger } from '../util/logger.js';
import { CLUSTER_TYPE, discoveryMethod, preloadResourceTypes, ENDPOINT_TYPE, HCM_TYPE, INVALID_ARGUMENT, LISTENER_TYPE, ROUTE_TYPE, WILDCARD_TYPES, type XdsVariant } from './protocol.js';

type Json = Record<string, unknown>;
type ConfigSource = envoy.config.core.v3.ConfigSource;

const DEFAULT_INITIAL_FETCH_TIMEOUT_MS = 15_000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;

/** What the client reports, for the process's stats (`control_plane.*`, `listener_manager.lds.*`, ...). */
export interface XdsClientEvents {
  connected(connected: boolean): void;
  updated(typeUrl: string, outcome: 'success' | 'rejected'): void;
}

export interface XdsClientOptions {
  bootstrap: Bootstrap;
  /** The bootstrap document as loaded: the static part of every document the client makes. */
  document: Json;
  log: Logger;
  /** Every problem of a document that is not served yet (warming). */
  validate(document: Json): ConfigError[];
  /** Serves a document; throws (a ConfigValidationError with every problem) when it cannot. */
  apply(document: Json): Promise<void>;
  events?: XdsClientEvents;
}

/** A resource held, with the version its source gave it. */
export interface HeldResource {
  json: Json;
  version: string;
  lastUpdated: string;
}

/** What one response (or one file read) says about one type. */
interface Update {
  /** State of the world for LDS and CDS: what is not in it is gone. */
  replaceAll: boolean;
  resources: { name: string; json: Json; version: string }[];
  removed: string[];
  version: string;
}

interface Source {
  watch(typeUrl: string, names: ReadonlySet<string> | 'wildcard'): void;
  close(): void;
}

/** The resources held, by type. */
class State {
  constructor(readonly byType: Map<string, Map<string, HeldResource>> = new Map([LISTENER_TYPE, ROUTE_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE].map((t) => [t, new Map()]))) {}

  with(typeUrl: string, update: Update): State {
    const byType = new Map(this.byType);
    const held = new Map(update.replaceAll ? [] : byType.get(typeUrl) ?? []);
    const now = new Date().toISOString();
    for (const r of update.resources) held.set(r.name, { json: r.json, version: r.version, lastUpdated: now });
    for (const name of update.removed) held.delete(name);
    byType.set(typeUrl, held);
    return new State(byType);
  }

  get(typeUrl: string): Map<string, HeldResource> {
    return this.byType.get(typeUrl)!;
  }
}

export class XdsClient {
  private state = new State();
  /** The sources opened so far, by what identifies them (`ads`, an api_config_source, a file path). */
  private readonly sources = new Map<string, Source>();
  /** The sources of LDS and CDS: what `self` means inside a listener or a cluster. */
  private readonly typeSources = new Map<string, Source>();
  private readonly typeVersions = new Map<string, string>();
  /** Updates are processed one at a time, in the order they arrived. */
  private queue: Promise<unknown> = Promise.resolve();
  /** LDS and CDS once their first answer arrived (or when the bootstrap names no source for them). */
  private readonly received = new Set<string>();
  /** How long listeners and clusters wait for what they reference (the longest initial_fetch_timeout; 0: for ever). */
  private fetchTimeoutMs = 0;
  private warmingTimer: NodeJS.Timeout | undefined;
  /** Set when the wait is over: what there is gets served, references missing or not. */
  private warmingExpired = false;
  private servedOnce = false;
  private resolveFirst!: () => void;
  private rejectFirst!: (err: Error) => void;
  /**
   * Resolves when the first configuration is served (or the initial fetch timed out and what there is was
   * served); rejects when serving it failed for a reason other than the configuration (a port in use).
   */
  readonly firstServed = new Promise<void>((resolve, reject) => {
    this.resolveFirst = resolve;
    this.rejectFirst = reject;
  });
  private closed = false;

  constructor(private readonly options: XdsClientOptions) {}

  get log(): Logger {
    return this.options.log;
  }

  get events(): XdsClientEvents | undefined {
    return this.options.events;
  }

  /** Opens the subscriptions of `dynamic_resources`. */
  start(): void {
    preloadResourceTypes();
    const dynamic = this.options.bootstrap.dynamic_resources ?? {};
    const initialTimeouts: number[] = [];
    const open = (typeUrl: string, config: ConfigSource | undefined) => {
      if (config === undefined) {
        this.received.add(typeUrl);
        return;
      }
      initialTimeouts.push(config.initial_fetch_timeout ?? DEFAULT_INITIAL_FETCH_TIMEOUT_MS);
      const source = this.sourceFor(config, undefined);
      this.typeSources.set(typeUrl, source);
      source.watch(typeUrl, 'wildcard');
    };
    open(CLUSTER_TYPE, dynamic.cds_config);
    open(LISTENER_TYPE, dynamic.lds_config);
    this.fetchTimeoutMs = Math.max(0, ...initialTimeouts);
    this.armWarmingTimer();
    if (this.received.has(CLUSTER_TYPE) && this.received.has(LISTENER_TYPE)) this.enqueue(() => this.serve(this.state, 'static'));
  }

  /** Starts waiting for what is missing, once: 0 waits for ever (Envoy's meaning), otherwise what there is then is served. */
  private armWarmingTimer(): void {
    if (this.fetchTimeoutMs === 0 || this.warmingTimer !== undefined) return;
    this.warmingTimer = setTimeout(() => {
      this.warmingExpired = true;
      this.enqueue(() => this.serve(this.state, 'what arrived within the fetch timeout'));
    }, this.fetchTimeoutMs);
    this.warmingTimer.unref();
  }

  /** Versions and resources held, for `/config_dump`. */
  dump(): { typeUrl: string; version: string; resources: Map<string, HeldResource> }[] {
    return [...this.state.byType].map(([typeUrl, resources]) => ({ typeUrl, version: this.typeVersions.get(typeUrl) ?? '', resources }));
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.warmingTimer);
    for (const source of new Set([...this.sources.values(), ...this.typeSources.values()])) source.close();
  }

  /** The source a config source names; `self` is the source of the resource that references it. */
  private sourceFor(config: ConfigSource, parent: Source | undefined): Source {
    if (config.self !== undefined && parent !== undefined) return parent;
    const dynamic = this.options.bootstrap.dynamic_resources ?? {};
    let key: string;
    let make: () => Source;
    if (config.ads !== undefined || (config.self !== undefined && parent === undefined)) {
      const ads = dynamic.ads_config ?? {};
      key = 'ads';
      make = () => new GrpcSource(this, this.grpcTarget(ads), variantOf(ads), undefined);
    } else if (config.api_config_source !== undefined) {
      const api = config.api_config_source;
      key = `api ${JSON.stringify(api)}`;
      make = () => new PerTypeGrpcSources(this, this.grpcTarget(api), variantOf(api));
    } else {
      const path = config.path_config_source?.path ?? config.path ?? '';
      const watched = config.path_config_source?.watched_directory?.path;
      key = `path ${path}`;
      make = () => new FileSource(this, path, watched);
    }
    let source = this.sources.get(key);
    if (source === undefined) this.sources.set(key, (source = make()));
    return source;
  }

  /** The channel target of an ApiConfigSource's first gRPC service. */
  private grpcTarget(api: envoy.config.core.v3.ApiConfigSource): string {
    const service = api.grpc_services?.[0];
    if (service?.google_grpc?.target_uri) return service.google_grpc.target_uri;
    const name = service?.envoy_grpc?.cluster_name ?? '';
    const cluster = (this.options.bootstrap.static_resources?.clusters ?? []).find((c) => c.name === name);
    const addresses = (cluster?.load_assignment?.endpoints ?? []).flatMap((l) => l.lb_endpoints ?? []).map((e) => e.endpoint?.address?.socket_address);
    const targets = addresses.filter((a) => a !== undefined).map((a) => `${a.address?.includes(':') ? `[${a.address}]` : a.address}:${a.port_value ?? 0}`);
    // A static cluster of addresses as grpc-js's own resolver list; a DNS name through grpc-js's DNS resolver.
    return targets.length === 1 ? `dns:${targets[0]}` : `ipv4:${targets.join(',')}`;
  }

  /** @internal a source's update, processed in order; resolves with the NACK message, if refused. */
  receive(typeUrl: string, update: Update): Promise<string | undefined> {
    return this.enqueue(async () => {
      this.received.add(typeUrl);
      if (update.version !== '') this.typeVersions.set(typeUrl, update.version);
      return this.serve(this.state.with(typeUrl, update), `${typeUrl.slice(typeUrl.lastIndexOf('.') + 1)} ${update.version}`, typeUrl);
    });
  }

  private enqueue<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Makes the document of `candidate` and serves it, or only checks it while what it references is still on
   * its way. Returns the reason it was refused, if it was.
   */
  private async serve(candidate: State, what: string, typeUrl?: string): Promise<string | undefined> {
    if (this.closed) return undefined;
    const initial = this.received.has(CLUSTER_TYPE) && this.received.has(LISTENER_TYPE);
    let ready = false;
    let missing = 0;
    try {
      const assembled = this.assemble(candidate);
      missing = assembled.missing;
      const document = assembled.document;
      ready = initial && (missing === 0 || this.warmingExpired);
      if (ready) {
        await this.options.apply(document);
      } else {
        const errors = this.options.validate(document);
        if (errors.length > 0) throw new Error(formatConfigErrors(errors));
      }
    } catch (err) {
      if (ready && !this.servedOnce && !(err instanceof ConfigValidationError)) this.rejectFirst(err as Error);
      if (typeUrl !== undefined) this.options.events?.updated(typeUrl, 'rejected');
      const message = (err as Error).message;
      this.options.log.warn(`xds: refused ${what}:\n${message}`);
      return message;
    }
    this.state = candidate;
    this.resubscribe(candidate);
    if (typeUrl !== undefined) this.options.events?.updated(typeUrl, 'success');
    if (!ready) {
      // Warming: a new listener or cluster waits for its routes or endpoints, for the fetch timeout at most.
      if (initial) this.armWarmingTimer();
      return undefined;
    }
    this.options.log.info(`xds: serving ${what}${missing > 0 ? ` (${missing} route tables or endpoint sets still missing)` : ''}`);
    clearTimeout(this.warmingTimer);
    this.warmingTimer = undefined;
    this.warmingExpired = false;
    if (!this.servedOnce) {
      this.servedOnce = true;
      this.resolveFirst();
    }
    return undefined;
  }

  /** Subscribes to the route tables and endpoints the held listeners and clusters reference, and only those. */
  private resubscribe(state: State): void {
    const wanted = new Map<Source, Map<string, Set<string>>>();
    const want = (source: Source, typeUrl: string, name: string) => {
      let types = wanted.get(source);
      if (types === undefined) wanted.set(source, (types = new Map()));
      let names = types.get(typeUrl);
      if (names === undefined) types.set(typeUrl, (names = new Set()));
      names.add(name);
    };
    const listenerSource = this.typeSources.get(LISTENER_TYPE);
    for (const held of state.get(LISTENER_TYPE).values()) {
      for (const rds of connectionManagers(held.json).map((hcm) => hcm.rds as Json | undefined)) {
        if (rds === undefined) continue;
        want(this.sourceFor(decodeConfigSource(rds.config_source), listenerSource), ROUTE_TYPE, String(rds.route_config_name ?? ''));
      }
    }
    const clusterSource = this.typeSources.get(CLUSTER_TYPE);
    for (const held of state.get(CLUSTER_TYPE).values()) {
      const eds = edsConfig(held.json);
      if (eds !== undefined) want(this.sourceFor(decodeConfigSource(eds.config), clusterSource), ENDPOINT_TYPE, eds.serviceName);
    }
    for (const source of new Set([...this.sources.values(), ...this.typeSources.values()])) {
      for (const typeUrl of [ROUTE_TYPE, ENDPOINT_TYPE]) source.watch(typeUrl, wanted.get(source)?.get(typeUrl) ?? new Set());
    }
  }

  /** The bootstrap document of a state, and how many referenced route tables and assignments it lacks. */
  private assemble(state: State): { document: Json; missing: number } {
    const { dynamic_resources: _, ...document } = this.options.document;
    const staticResources = (document.static_resources ?? {}) as Json;
    let missing = 0;
    const routes = state.get(ROUTE_TYPE);
    const endpoints = state.get(ENDPOINT_TYPE);
    const listeners = [...state.get(LISTENER_TYPE).values()]
      .filter((held) => held.json.api_listener === undefined)
      .map((held) => mapConnectionManagers(held.json, (hcm) => {
        const rds = hcm.rds as Json | undefined;
        if (rds === undefined) return hcm;
        const { rds: _rds, ...rest } = hcm;
        const name = String(rds.route_config_name ?? '');
        const table = routes.get(name)?.json;
        if (table === undefined) missing++;
        // Envoy checks the clusters of an RDS table only when asked to (validate_clusters defaults to false there).
        return { ...rest, route_config: { validate_clusters: false, ...(table ?? { name }) } };
      }));
    const clusters = [...state.get(CLUSTER_TYPE).values()].map((held) => {
      const eds = edsConfig(held.json);
      if (eds === undefined) return held.json;
      const { eds_cluster_config: _eds, type: _type, ...rest } = held.json;
      const assignment = endpoints.get(eds.serviceName)?.json;
      if (assignment === undefined) missing++;
      return { ...rest, type: 'STATIC', load_assignment: { ...(assignment ?? {}), cluster_name: held.json.name } };
    });
    return {
      document: {
        ...document,
        static_resources: {
          ...staticResources,
          listeners: [...((staticResources.listeners ?? []) as Json[]), ...listeners],
          clusters: [...((staticResources.clusters ?? []) as Json[]), ...clusters],
        },
      },
      missing,
    };
  }

  /** @internal the node as every request carries it. */
  nodeMessage(): Json {
    const node = this.options.bootstrap.node ?? {};
    return {
      id: node.id ?? '',
      cluster: node.cluster ?? '',
      metadata: toStruct(node.metadata ?? {}),
      user_agent_name: 'portico',
      client_features: ['envoy.lb.does_not_support_overprovisioning'],
    };
  }

  /** @internal */
  isClosed(): boolean {
    return this.closed;
  }
}

function variantOf(api: envoy.config.core.v3.ApiConfigSource): XdsVariant {
  return api.api_type === 'DELTA_GRPC' || api.api_type === 'AGGREGATED_DELTA_GRPC' ? 'delta' : 'sotw';
}

/** A config source inside a resource (proto3-JSON), decoded as the bootstrap's own are. */
function decodeConfigSource(json: unknown): ConfigSource {
  return decodeMessage<ConfigSource>('envoy.config.core.v3.ConfigSource', json ?? {}, '', []);
}

function connectionManagers(listener: Json): Json[] {
  const out: Json[] = [];
  mapConnectionManagers(listener, (hcm) => (out.push(hcm), hcm));
  return out;
}

/** The listener with `map` applied to the typed config of each of its HTTP connection managers. */
function mapConnectionManagers(listener: Json, map: (hcm: Json) => Json): Json {
  const chains = (chain: Json) => ({
    ...chain,
    filters: ((chain.filters ?? []) as Json[]).map((filter) => {
      const config = filter.typed_config as Json | undefined;
      return config?.['@type'] === HCM_TYPE ? { ...filter, typed_config: map(config) } : filter;
    }),
  });
  const out: Json = { ...listener, filter_chains: ((listener.filter_chains ?? []) as Json[]).map(chains) };
  if (listener.default_filter_chain !== undefined) out.default_filter_chain = chains(listener.default_filter_chain as Json);
  return out;
}

function edsConfig(cluster: Json): { config: unknown; serviceName: string } | undefined {
  const type = cluster.type;
  const eds = cluster.eds_cluster_config as Json | undefined;
  if (type !== 'EDS' && !(type === undefined && eds !== undefined)) return undefined;
  return { config: eds?.eds_config, serviceName: String(eds?.service_name || cluster.name) };
}

/** The name of a resource by its type: a ClusterLoadAssignment is named by its cluster. */
function nameOf(typeUrl: string, json: Json): string {
  return String((typeUrl === ENDPOINT_TYPE ? json.cluster_name : json.name) ?? '');
}

function decodeResource(typeUrl: string, any: { type_url?: string; value?: Uint8Array }): { name: string; json: Json } {
  if (any.type_url !== typeUrl) throw new Error(`a ${typeUrl} response holds a ${any.type_url}`);
  const { '@type': _, ...json } = anyToJson(any);
  return { name: nameOf(typeUrl, json), json };
}

/** Per type on one stream: what is subscribed and what was last accepted. */
interface StreamType {
  names: ReadonlySet<string> | 'wildcard';
  /** The names last told to the server (delta: to compute what to subscribe and unsubscribe). */
  told: ReadonlySet<string> | 'wildcard' | undefined;
  acceptedVersion: string;
  /** The nonce of the last response: a SotW request without it would be taken as stale. */
  lastNonce: string | undefined;
  /** Delta: versions of the resources held, sent again on a new stream. */
  versions: Map<string, string>;
}

/**
 * One discovery stream over gRPC (ADS when `fixedType` is undefined), reopened with backoff whenever it ends.
 */
class GrpcSource implements Source {
  private readonly channel: grpc.Client;
  private call: grpc.ClientDuplexStream<Json, Json> | undefined;
  private readonly types = new Map<string, StreamType>();
  private backoffMs = BACKOFF_BASE_MS;
  private retryTimer: NodeJS.Timeout | undefined;
  private connected = false;

  constructor(
    private readonly client: XdsClient,
    private readonly target: string,
    private readonly variant: XdsVariant,
    private readonly fixedType: string | undefined,
  ) {
    this.channel = new grpc.Client(target, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
    });
  }

  watch(typeUrl: string, names: ReadonlySet<string> | 'wildcard'): void {
    let type = this.types.get(typeUrl);
    if (type === undefined) {
      if (names !== 'wildcard' && names.size === 0) return;
      this.types.set(typeUrl, (type = { names, told: undefined, acceptedVersion: '', lastNonce: undefined, versions: new Map() }));
    } else {
      type.names = names;
    }
    if (this.call === undefined) this.open();
    else this.tell(typeUrl, type);
  }

  close(): void {
    clearTimeout(this.retryTimer);
    this.call?.cancel();
    this.call = undefined;
    this.channel.close();
  }

  private open(): void {
    if (this.client.isClosed()) return;
    const method = discoveryMethod(this.variant, this.fixedType);
    const definition = grpcDefinition(method.method);
    const call = this.channel.makeBidiStreamRequest(
      definition.path,
      definition.requestSerialize,
      definition.responseDeserialize as (bytes: Buffer) => Json,
    );
    this.call = call;
    call.on('data', (response: Json) => {
      if (!this.connected) {
        this.connected = true;
        this.backoffMs = BACKOFF_BASE_MS;
        this.client.events?.connected(true);
        this.client.log.info(`xds: connected to ${this.target}`);
      }
      void this.onResponse(call, response);
    });
    const ended = (reason: string) => {
      if (this.call !== call) return;
      this.call = undefined;
      if (this.connected) this.client.events?.connected(false);
      this.connected = false;
      for (const type of this.types.values()) type.told = undefined;
      if (this.client.isClosed()) return;
      const delay = this.backoffMs * (0.5 + Math.random() / 2);
      this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
      this.client.log.warn(`xds: stream to ${this.target} ended (${reason}); reconnecting in ${Math.round(delay)} ms, serving the last configuration meanwhile`);
      this.retryTimer = setTimeout(() => this.open(), delay);
      this.retryTimer.unref();
    };
    call.on('error', (err: Error) => ended(err.message));
    call.on('end', () => ended('closed by the server'));
    // Clusters first, then listeners, then what they reference: the order Envoy subscribes in.
    for (const typeUrl of [CLUSTER_TYPE, LISTENER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE, ...this.types.keys()]) {
      const type = this.types.get(typeUrl);
      if (type !== undefined && type.told === undefined) this.tell(typeUrl, type);
    }
  }

  /** Sends the subscription of a type when it differs from what the server was last told. */
  private tell(typeUrl: string, type: StreamType): void {
    const call = this.call;
    if (call === undefined || sameNames(type.names, type.told)) return;
    const first = type.told === undefined;
    if (this.variant === 'sotw') {
      call.write(this.sotwRequest(typeUrl, type, first ? undefined : type.lastNonce));
    } else {
      const before = type.told === undefined || type.told === 'wildcard' ? new Set<string>() : type.told;
      const after = type.names === 'wildcard' ? new Set<string>() : type.names;
      call.write({
        ...(first ? { node: this.client.nodeMessage(), initial_resource_versions: Object.fromEntries(type.versions) } : {}),
        type_url: typeUrl,
        resource_names_subscribe: [...after].filter((n) => !before.has(n)),
        resource_names_unsubscribe: [...before].filter((n) => !after.has(n)),
      });
    }
    type.told = type.names;
  }

  private async onResponse(call: grpc.ClientDuplexStream<Json, Json>, response: Json): Promise<void> {
    const typeUrl = this.fixedType ?? String(response.type_url ?? '');
    const type = this.types.get(typeUrl);
    if (type === undefined) return;
    const nonce = String(response.nonce ?? '');
    let update: Update;
    try {
      update = this.variant === 'sotw' ? sotwUpdate(typeUrl, response) : deltaUpdate(typeUrl, response);
    } catch (err) {
      this.answer(call, typeUrl, type, nonce, (err as Error).message);
      return;
    }
    const refusal = await this.client.receive(typeUrl, update);
    if (refusal === undefined) {
      type.acceptedVersion = update.version;
      if (this.variant === 'delta') {
        for (const r of update.resources) type.versions.set(r.name, r.version);
        for (const name of update.removed) type.versions.delete(name);
      }
    }
    this.answer(call, typeUrl, type, nonce, refusal);
  }

  /** ACK (no `error`) or NACK a response; a SotW answer also says the subscription of the moment. */
  private answer(call: grpc.ClientDuplexStream<Json, Json>, typeUrl: string, type: StreamType, nonce: string, error: string | undefined): void {
    if (this.call !== call) return;
    const error_detail = error === undefined ? undefined : { code: INVALID_ARGUMENT, message: error };
    type.lastNonce = nonce;
    if (this.variant === 'sotw') {
      call.write({ ...this.sotwRequest(typeUrl, type, nonce), ...(error_detail ? { error_detail } : {}) });
    } else {
      call.write({ type_url: typeUrl, response_nonce: nonce, ...(error_detail ? { error_detail } : {}) });
    }
  }

  /** A state-of-the-world request: the subscription of the moment, the version accepted, and the nonce answered. */
  private sotwRequest(typeUrl: string, type: StreamType, nonce: string | undefined): Json {
    return {
      node: this.client.nodeMessage(),
      version_info: type.acceptedVersion,
      resource_names: type.names === 'wildcard' ? [] : [...type.names],
      type_url: typeUrl,
      ...(nonce !== undefined ? { response_nonce: nonce } : {}),
    };
  }
}

/** Per-type streams on one server (an `api_config_source` of the per-type services), one opened per type. */
class PerTypeGrpcSources implements Source {
  private readonly streams = new Map<string, GrpcSource>();

  constructor(
    private readonly client: XdsClient,
    private readonly target: string,
    private readonly variant: XdsVariant,
  ) {}

  watch(typeUrl: string, names: ReadonlySet<string> | 'wildcard'): void {
    let stream = this.streams.get(typeUrl);
    if (stream === undefined) {
      if (names !== 'wildcard' && names.size === 0) return;
      this.streams.set(typeUrl, (stream = new GrpcSource(this.client, this.target, this.variant, typeUrl)));
    }
    stream.watch(typeUrl, names);
  }

  close(): void {
    for (const stream of this.streams.values()) stream.close();
  }
}

/**
 * A file holding a DiscoveryResponse (YAML or JSON) per type, read again whenever it is replaced — with
 * `watched_directory`, when a file is moved into that directory, as the atomic-rename update Envoy's
 * filesystem subscription expects.
 */
class FileSource implements Source {
  private watcher: FSWatcher | undefined;
  private readonly types = new Set<string>();

  constructor(
    private readonly client: XdsClient,
    private readonly path: string,
    watchedDirectory: string | undefined,
  ) {
    try {
      this.watcher = watch(watchedDirectory ?? dirname(path), () => this.read());
      this.watcher.unref();
    } catch (err) {
      client.log.error(`xds: cannot watch ${watchedDirectory ?? dirname(path)}: ${(err as Error).message}`);
    }
  }

  watch(typeUrl: string, names: ReadonlySet<string> | 'wildcard'): void {
    if (names !== 'wildcard' && names.size === 0) return;
    if (this.types.has(typeUrl)) return;
    this.types.add(typeUrl);
    this.read();
  }

  private lastText: string | undefined;

  private read(): void {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      this.client.log.warn(`xds: cannot read ${this.path}: ${(err as Error).message}`);
      return;
    }
    if (text === this.lastText) return;
    this.lastText = text;
    const errors: ConfigError[] = [];
    const response = parseDocument(text, this.path, errors) as Json | undefined;
    if (errors.length > 0 || response === undefined) {
      this.client.log.warn(`xds: ${this.path}: ${formatConfigErrors(errors)}`);
      return;
    }
    const version = String(response.version_info ?? '');
    const listed = ((Array.isArray(response.resources) ? response.resources : [response.resources]) as Json[]).filter((r) => r !== undefined && r !== null);
    for (const typeUrl of this.types) {
      // Files are written by hand: their resources are brought to the canonical proto3-JSON (proto field names,
      // lists where lists belong) that resources from gRPC arrive in.
      const typeName = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
      const own = listed
        .map((r, i) => ({ r, i }))
        .filter(({ r }) => r['@type'] === typeUrl)
        .map(({ r: { '@type': _, ...raw }, i }) => {
          const json = encodeMessage(typeName, decodeMessage(typeName, raw, `${this.path} resources[${i}]`, errors)) as Json;
          return { name: nameOf(typeUrl, json), json, version };
        });
      if (errors.length > 0) {
        this.client.log.warn(`xds: ${this.path} refused, keeping what it held:\n${formatConfigErrors(errors)}`);
        return;
      }
      void this.client.receive(typeUrl, { replaceAll: true, resources: own, removed: [], version });
    }
  }

  close(): void {
    this.watcher?.close();
  }
}

function sotwUpdate(typeUrl: string, response: Json): Update {
  const version = String(response.version_info ?? '');
  const resources = ((response.resources ?? []) as { type_url?: string; value?: Uint8Array }[]).map((any) => ({ ...decodeResource(typeUrl, any), version }));
  return { replaceAll: WILDCARD_TYPES.has(typeUrl), resources, removed: [], version };
}

function deltaUpdate(typeUrl: string, response: Json): Update {
  const resources = ((response.resources ?? []) as Json[])
    .filter((r) => r.resource !== undefined)
    .map((r) => {
      const decoded = decodeResource(typeUrl, r.resource as { type_url?: string; value?: Uint8Array });
      return { name: String(r.name || decoded.name), json: decoded.json, version: String(r.version ?? '') };
    });
  return { replaceAll: false, resources, removed: (response.removed_resources ?? []) as string[], version: String(response.system_version_info ?? '') };
}

function sameNames(a: ReadonlySet<string> | 'wildcard', b: ReadonlySet<string> | 'wildcard' | undefined): boolean {
  if (b === undefined) return false;
  if (a === 'wildcard' || b === 'wildcard') return a === b;
  return a.size === b.size && [...a].every((n) => b.has(n));
}
