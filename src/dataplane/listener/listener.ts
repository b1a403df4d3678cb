import net, { type BlockList, type Socket } from 'node:net';
import type { TokenBuckets } from '../ratelimit/token-bucket.js';
import tls from 'node:tls';
import type { AnyMessage, envoy } from '../../generated/envoy.js';
import { type ConfigError } from '../../config/errors.js';
import { typeNameFromUrl } from '../../config/extensions.js';
import { HCM_TYPE, TCP_PROXY_TYPE } from '../../config/validate.js';
import type { StatScope, StatsStore } from '../../stats/store.js';
import type { Logger } from '../../util/logger.js';
import { LISTENER_STATS } from './stats.js';
import { type AccessLogger, compileAccessLogs, connectionStreamInfo, emitAccessLogs } from '../access-log/access-log.js';
import type { AccessLogSinks } from '../access-log/sinks.js';
import { DEFAULT_BUFFER_LIMIT, HttpConnectionManager } from '../http/connection-manager.js';
import type { HttpFilterRegistry } from '../http/filter.js';
import { cidrBlockList, inBlockList } from '../cidr.js';
import { plainAddress } from '../http/forwarded.js';
import { ResponseFlag } from '../response-flags.js';
import type { StreamInfo } from '../stream-info.js';
import type { Runtime } from '../runtime/runtime.js';
import type { ClusterManager } from '../upstream/cluster-manager.js';
import { compileDownstreamTls, type TlsTermination } from '../tls/downstream.js';
import { TcpProxy } from '../tcp/tcp-proxy.js';
import type { ConnectionProtocols, ListenerFilterRegistry } from './listener-filter.js';
import { ListenerFilters } from './listener-filters.js';
import type { NetworkFilter, NetworkFilterRegistry } from './network-filter.js';
import type { InitManager } from '../init-manager.js';

type ListenerConfig = envoy.config.listener.v3.Listener;
type FilterChainConfig = envoy.config.listener.v3.FilterChain;
type FilterChainMatch = envoy.config.listener.v3.FilterChainMatch;
type DownstreamTlsContext = envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext;
const DOWNSTREAM_TLS = 'envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';

export interface ListenerContext {
  clusters: ClusterManager;
  runtime: Runtime;
  log: Logger;
  stats: StatsStore;
  accessLogSinks: AccessLogSinks;
  init: InitManager;
  httpFilters: HttpFilterRegistry;
  listenerFilters: ListenerFilterRegistry;
  networkFilters: NetworkFilterRegistry;
  /** The bootstrap's `node.cluster`. */
  localCluster: string;
  tokenBuckets: TokenBuckets;
}

const L = LISTENER_STATS.c;
const LG = LISTENER_STATS.g;
const LH = LISTENER_STATS.h;

/** What chain matching assumes of a listener without listener filters: nothing detected, as Envoy. */
const RAW_BUFFER: ConnectionProtocols = { serverName: '', transportProtocol: 'raw_buffer', applicationProtocols: [] };
/** What the listener filters found on a connection, by its socket (and the TLS socket over it). */
const inspected = new WeakMap<Socket, ConnectionProtocols>();

/**
 * The transport protocol, SNI and ALPN protocols offered that the listener filters found on a connection, by
 * its socket or the TLS socket over it (undefined on listeners without listener filters): for the layers above
 * the listener, such as a codec chosen by ALPN.
 */
export function connectionProtocols(socket: Socket): ConnectionProtocols | undefined {
  return inspected.get(socket);
}

/** A compiled filter chain: match criteria, optional TLS termination, its network filters and terminal filter. */
class FilterChain {
  readonly tls: TlsTermination | undefined;
  /** The filters before the terminal one, in order. */
  private readonly filters: readonly NetworkFilter[];
  readonly hcm: HttpConnectionManager | undefined;
  readonly tcpProxy: TcpProxy | undefined;
  readonly match: CompiledChainMatch;
  /** Connections accepted on this chain, so that a replaced chain knows when it has drained. */
  readonly sockets = new Set<Socket>();
  /**
   * The chain's configuration without its connection manager's route table: a chain of a newer configuration
   * with the same shape differs in routes (and the clusters they name) only, and takes over the connections
   * of this one as they are, as Envoy swaps a route table in place (see adopt).
   */
  readonly shape: string;
  /** Connection managers of replaced chains of the same shape: their connections are this chain's now. */
  private inherited: HttpConnectionManager[] = [];

  constructor(
    config: FilterChainConfig,
    path: string,
    errors: ConfigError[],
    context: ListenerContext,
    port: number,
    private readonly listenerStats: StatScope,
    listenerKey: string,
    bufferLimit: number | undefined,
  ) {
    this.shape = `${bufferLimit ?? ''} ${JSON.stringify(config, (key, value) => (key === 'route_config' ? undefined : typeof value === 'bigint' ? String(value) : value))}`;
    this.match = compileChainMatch(config.filter_chain_match ?? {}, `${path}.filter_chain_match`, errors);
    const transport = config.transport_socket?.typed_config;
    this.tls = transport ? downstreamTls(transport, `${path}.transport_socket.typed_config`, errors) : undefined;
    const filters = config.filters ?? [];
    this.filters = compileNetworkFilters(filters.slice(0, -1), path, errors, context);
    const terminal = filters.at(-1)?.typed_config;
    const terminalType = terminal === undefined ? undefined : typeNameFromUrl(terminal.type_url);
    const terminalPath = `${path}.filters[${filters.length - 1}].typed_config`;
    if (terminalType === HCM_TYPE) {
      this.hcm = new HttpConnectionManager(
        terminal!.value as envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager,
        terminalPath,
        errors,
        {
          ...context,
          listenerPort: port,
          scheme: transport ? 'https' : 'http',
          listenerStatPrefix: () => listenerStats.prefix,
          listenerStatKey: listenerKey,
          bufferLimit: bufferLimit ?? DEFAULT_BUFFER_LIMIT,
        },
      );
    } else if (terminalType === TCP_PROXY_TYPE) {
      this.tcpProxy = new TcpProxy(terminal!.value as envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, terminalPath, errors, context);
    }
  }

  /** Ends the terminal filter (its stats) and those of the chains it adopted; its connections are closed by the listener. */
  close(): void {
    for (const filter of this.filters) filter.release();
    for (const manager of this.managers()) manager.close();
    this.tcpProxy?.close();
  }

  /** This chain's connection manager and those of the chains it adopted, whose connections it serves. */
  managers(): HttpConnectionManager[] {
    return this.hcm === undefined ? [] : [this.hcm, ...this.inherited];
  }

  /**
   * Takes over the connections of `old`, a chain of the same shape that a new configuration replaces: they stay
   * open, and every further request on them is served by this chain's connection manager (its routes and
   * clusters), so a change of routes closes no client connection and no WebSocket. Requests in flight finish
   * on the old manager, which this chain ends when it ends.
   */
  adopt(old: FilterChain): void {
    for (const socket of old.sockets) {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    }
    old.sockets.clear();
    for (const filter of old.filters) filter.release();
    old.tcpProxy?.close();
    if (old.hcm !== undefined && this.hcm !== undefined) {
      for (const manager of old.managers()) manager.handOver(this.hcm);
      this.inherited = [...this.inherited, ...old.managers()];
    }
  }

  /** Runs the network filters on a connection; false when one closed it. */
  private filtersAllow(socket: Socket, protocols: ConnectionProtocols | undefined): boolean {
    for (const filter of this.filters) {
      if (filter.onNewConnection(socket, protocols) === 'close') {
        socket.destroy();
        return false;
      }
    }
    return true;
  }

  /** Wraps the socket in TLS when the chain terminates it, then hands it to the terminal filter. */
  accept(socket: Socket, log: Logger, protocols: ConnectionProtocols | undefined): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    const terminal = this.hcm ?? this.tcpProxy;
    if (terminal === undefined) {
      socket.destroy();
      return;
    }
    if (this.tls === undefined) {
      if (this.filtersAllow(socket, protocols)) terminal.handleConnection(socket);
      return;
    }
    const secure = new tls.TLSSocket(socket, {
      isServer: true,
      secureContext: this.tls.secureContext,
      ALPNProtocols: this.tls.alpnProtocols ?? this.hcm?.defaultAlpn,
      requestCert: this.tls.requestCert,
      rejectUnauthorized: this.tls.requestCert,
    });
    if (protocols !== undefined) inspected.set(secure, protocols);
    let handshaken = false;
    secure.once('secure', () => {
      handshaken = true;
      this.listenerStats.counters[L['ssl.handshake']]++;
      if (this.filtersAllow(secure, protocols)) terminal.handleConnection(secure);
    });
    secure.on('error', (err) => {
      if (!handshaken) this.listenerStats.counters[L['ssl.connection_error']]++;
      log.debug(`TLS connection with ${socket.remoteAddress} failed: ${err.message}`);
      secure.destroy();
    });
  }
}

/**
 * Resolves once `managers` have no request in flight (the old configuration's clusters and access logs are
 * still in use until then), or after `timeoutMs`: an upgraded connection (a WebSocket) stays open as it is.
 */
async function settled(managers: HttpConnectionManager[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (managers.some((m) => m.busy) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
}

/** The non-terminal filters of a chain (HCM and tcp_proxy out of place are reported by validate.ts). */
function compileNetworkFilters(
  configs: readonly envoy.config.listener.v3.Filter[],
  chainPath: string,
  errors: ConfigError[],
  context: ListenerContext,
): NetworkFilter[] {
  const out: NetworkFilter[] = [];
  configs.forEach((config, i) => {
    const typed = config.typed_config;
    if (typed === undefined) return;
    const type = typeNameFromUrl(typed.type_url);
    if (type === HCM_TYPE || type === TCP_PROXY_TYPE) return;
    const path = `${chainPath}.filters[${i}].typed_config`;
    const factory = context.networkFilters.byConfig(type);
    if (factory === undefined) {
      errors.push({ code: 'unsupported_extension', path, message: `${type} is not a network filter` });
      return;
    }
    out.push(factory.create(typed.value, context, path, errors));
  });
  return out;
}

interface CompiledChainMatch {
  destinationPort: number | undefined;
  destinationRanges: BlockList | undefined;
  serverNames: ServerNames | undefined;
  transportProtocol: string | undefined;
  applicationProtocols: readonly string[] | undefined;
  directSourceRanges: BlockList | undefined;
  sourceType: string;
  sourceRanges: BlockList | undefined;
  sourcePorts: readonly number[] | undefined;
}

/** `server_names`, lower-cased: exact names, and the suffixes of `*.` wildcards (`.example.com`). */
interface ServerNames {
  exact: ReadonlySet<string>;
  suffixes: readonly string[];
}

function compileChainMatch(match: FilterChainMatch, path: string, errors: ConfigError[]): CompiledChainMatch {
  return {
    destinationPort: match.destination_port,
    destinationRanges: blockList(match.prefix_ranges),
    serverNames: compileServerNames(match.server_names ?? [], `${path}.server_names`, errors),
    transportProtocol: match.transport_protocol || undefined,
    applicationProtocols: match.application_protocols?.length ? match.application_protocols : undefined,
    directSourceRanges: blockList(match.direct_source_prefix_ranges),
    sourceType: match.source_type ?? 'ANY',
    sourceRanges: blockList(match.source_prefix_ranges),
    sourcePorts: match.source_ports?.length ? match.source_ports : undefined,
  };
}

function compileServerNames(names: readonly string[], path: string, errors: ConfigError[]): ServerNames | undefined {
  if (names.length === 0) return undefined;
  const exact = new Set<string>();
  const suffixes: string[] = [];
  names.forEach((name, i) => {
    const lower = name.toLowerCase();
    if (lower.startsWith('*.') && !lower.slice(1).includes('*')) {
      suffixes.push(lower.slice(1));
    } else if (lower.includes('*')) {
      errors.push({ code: 'invalid_value', path: `${path}[${i}]`, message: `partial wildcards are not supported in server_names: "${name}" (only a leading "*.")` });
    } else {
      exact.add(lower);
    }
  });
  // Longest first: the first suffix that matches is the most specific.
  suffixes.sort((a, b) => b.length - a.length);
  return { exact, suffixes };
}

/** An exact name beats any wildcard; a longer wildcard beats a shorter one; -1 when nothing matches. */
function serverNameScore(names: ServerNames | undefined, serverName: string): number {
  if (names === undefined) return 0;
  if (serverName === '') return -1;
  if (names.exact.has(serverName)) return Number.MAX_SAFE_INTEGER;
  const suffix = names.suffixes.find((s) => serverName.length > s.length && serverName.endsWith(s));
  return suffix === undefined ? -1 : suffix.length;
}

/** Envoy takes the client's protocols in its order: a chain with an earlier one wins. */
function applicationProtocolScore(chainProtocols: readonly string[] | undefined, offered: readonly string[]): number {
  if (chainProtocols === undefined) return 0;
  const index = offered.findIndex((p) => chainProtocols.includes(p));
  return index < 0 ? -1 : offered.length - index;
}

/** Whether chains match on what only a TLS inspector tells, without saying `raw_buffer` (Envoy's rule). */
function needsTlsInspector(chains: readonly FilterChainConfig[]): boolean {
  return chains.some(({ filter_chain_match: m }) => {
    if (m === undefined) return false;
    if (m.transport_protocol) return m.transport_protocol === 'tls';
    return (m.server_names?.length ?? 0) > 0 || (m.application_protocols?.length ?? 0) > 0;
  });
}

function hasTlsInspector(config: ListenerConfig, registry: ListenerFilterRegistry): boolean {
  return (config.listener_filters ?? []).some((f) =>
    f.typed_config ? typeNameFromUrl(f.typed_config.type_url) === registry.tlsInspectorType : f.name === registry.tlsInspector.name,
  );
}

/**
 * Envoy refuses a listener where two chains would match the same connection equally: every combination of
 * their criteria values is a key, and no key may belong to two chains.
 */
function checkDistinctMatches(chains: readonly FilterChainConfig[], path: string, errors: ConfigError[]): void {
  const owners = new Map<string, number>();
  chains.forEach((chain, i) => {
    const m = chain.filter_chain_match ?? {};
    const cidrs = (ranges: envoy.config.core.v3.CidrRange[] | undefined): string[] =>
      ranges?.length ? ranges.map((r) => `${r.address_prefix ?? ''}/${r.prefix_len ?? 0}`) : [''];
    const dimensions: string[][] = [
      [String(m.destination_port ?? '')],
      cidrs(m.prefix_ranges),
      m.server_names?.length ? m.server_names.map((n) => n.toLowerCase()) : [''],
      [m.transport_protocol ?? ''],
      m.application_protocols?.length ? m.application_protocols : [''],
      cidrs(m.direct_source_prefix_ranges),
      [m.source_type ?? 'ANY'],
      cidrs(m.source_prefix_ranges),
      m.source_ports?.length ? m.source_ports.map(String) : [''],
    ];
    const keys = dimensions.reduce<string[]>((acc, values) => acc.flatMap((k) => values.map((v) => `${k}|${v}`)), ['']);
    const clash = keys.map((k) => owners.get(k)).find((owner) => owner !== undefined && owner !== i);
    if (clash !== undefined) {
      errors.push({
        code: 'invalid_value',
        path: `${path}.filter_chains[${i}].filter_chain_match`,
        message: `filter_chains[${i}] and filter_chains[${clash}] have the same matching rules: a connection could match either`,
      });
      return;
    }
    for (const k of keys) owners.set(k, i);
  });
}

function blockList(ranges: envoy.config.core.v3.CidrRange[] | undefined): BlockList | undefined {
  return ranges?.length ? cidrBlockList(ranges) : undefined;
}

/**
 * A listener: one bound TCP socket, its filter chains, and the chain selection Envoy does (criteria in order,
 * the most specific candidate winning at each step, then `default_filter_chain`).
 */
export class Listener {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  private chains: FilterChain[];
  private defaultChain: FilterChain | undefined;
  /** Undefined on listeners without listener filters: their connections go straight to chain selection. */
  private listenerFilters: ListenerFilters | undefined;
  private server: net.Server | undefined;
  private readonly sockets = new Set<Socket>();
  /** `listener.<address>.`, or `listener.<stat_prefix>.` */
  readonly stats: StatScope;
  /** Listener access logs: one line per downstream connection, when it closes (those of the current configuration). */
  private accessLogs: readonly AccessLogger[] | undefined;

  constructor(
    config: ListenerConfig,
    path: string,
    errors: ConfigError[],
    private readonly context: ListenerContext,
  ) {
    const socket = config.address?.socket_address ?? {};
    this.host = socket.address ?? '0.0.0.0';
    this.port = socket.port_value ?? 0;
    this.name = config.name || `${this.host}_${this.port}`;
    const statPrefix = config.stat_prefix;
    const key = `listener ${this.name}`;
    this.stats = context.stats.scope(LISTENER_STATS, statPrefix ? `listener.${statPrefix}.` : () => `listener.${this.statAddress()}.`, key);
    const chain = (c: FilterChainConfig, at: string) => new FilterChain(c, at, errors, context, this.port, this.stats, key, config.per_connection_buffer_limit_bytes);
    this.chains = (config.filter_chains ?? []).map((c, i) => chain(c, `${path}.filter_chains[${i}]`));
    this.defaultChain = config.default_filter_chain ? chain(config.default_filter_chain, `${path}.default_filter_chain`) : undefined;
    checkDistinctMatches(config.filter_chains ?? [], path, errors);
    const inject = needsTlsInspector(config.filter_chains ?? []) && !hasTlsInspector(config, context.listenerFilters);
    if (inject) {
      context.log.warn(
        `listener ${this.name}: filter chain match rules require the TLS inspector listener filter, but it isn't configured; adding it`,
      );
    }
    this.listenerFilters = ListenerFilters.compile(config, path, errors, context.listenerFilters, inject, context.stats, this.stats);
    this.accessLogs = compileAccessLogs(config.access_log, `${path}.access_log`, errors, context);
  }

  /** Binds the listener; resolves with the bound address (useful with port 0). */
  async start(): Promise<{ address: string; port: number }> {
    const server = net.createServer({ noDelay: true }, (socket) => this.onConnection(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.host, port: this.port, backlog: 1024 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.context.log.error(`listener ${this.name}: ${err.message}`));
    const bound = server.address() as net.AddressInfo;
    return { address: bound.address, port: bound.port };
  }

  /** The address as Envoy writes it in stat names: `0.0.0.0_10000`, `[__1]_10000` (the bound port once bound). */
  private statAddress(): string {
    const port = this.boundAddress()?.port ?? this.port;
    const host = this.host.includes(':') ? `[${this.host.replaceAll(':', '_')}]` : this.host;
    return `${host}_${port}`;
  }

  boundAddress(): { address: string; port: number } | undefined {
    const bound = this.server?.address();
    return bound && typeof bound === 'object' ? { address: bound.address, port: bound.port } : undefined;
  }

  /** Stops accepting; open connections close after their current response (`Connection: close`). */
  startDraining(): void {
    this.stopAccepting();
    for (const chain of this.allChains()) for (const manager of chain.managers()) manager.startDraining();
  }

  /** Stops accepting connections; open ones stay until they are drained or closed. */
  stopAccepting(): void {
    // close() stops accepting at once; its callback would wait for every open connection to end.
    if (this.server?.listening) this.server.close();
  }

  /** Closes keep-alive connections that have no request in flight. */
  closeIdleConnections(): void {
    for (const chain of this.allChains()) for (const manager of chain.managers()) manager.closeIdleConnections();
  }

  /** Number of open downstream connections. */
  get connectionCount(): number {
    return this.sockets.size;
  }

  /** Destroys every remaining connection. */
  closeConnections(): void {
    for (const chain of this.allChains()) chain.close();
    for (const socket of this.sockets) socket.destroy();
  }

  /**
   * Serves with the filter chains of `next` (this listener compiled from a newer configuration) at once, for
   * new connections and for every further request on open ones. A new chain of the same shape as an old one
   * (only its routes changed) adopts its connections as they are; the other old chains drain (see drainChains).
   * Resolves once the old chains have nothing in flight any more.
   */
  replaceChains(next: Listener, drainTimeoutMs: number): Promise<void> {
    const old = this.allChains();
    const byShape = new Map(next.allChains().map((chain) => [chain.shape, chain]));
    const retired: FilterChain[] = [];
    const adopted: HttpConnectionManager[] = [];
    for (const chain of old) {
      const successor = byShape.get(chain.shape);
      if (successor === undefined) {
        retired.push(chain);
        continue;
      }
      adopted.push(...chain.managers());
      successor.adopt(chain);
    }
    this.chains = next.chains;
    this.defaultChain = next.defaultChain;
    this.listenerFilters?.close();
    this.listenerFilters = next.listenerFilters;
    // Connections log through the new configuration's sinks: the old ones are closed once the old chains drain.
    this.accessLogs = next.accessLogs;
    // `next` shares this listener's stats scope (same name); only its chains live on.
    this.context.stats.release(next.stats);
    return Promise.all([this.drainChains(retired, drainTimeoutMs), settled(adopted, drainTimeoutMs)]).then(() => undefined);
  }

  /** Stops accepting and drains every connection (a listener that a new configuration no longer has). */
  async drain(drainTimeoutMs: number): Promise<void> {
    this.stopAccepting();
    await this.drainChains(this.allChains(), drainTimeoutMs);
    this.listenerFilters?.close();
    this.context.stats.release(this.stats);
  }

  /**
   * Retires filter chains without failing a request. Requests in flight finish on them. A further request on
   * one of their connections is handed to the chain the listener would select now (so it sees the current
   * routes and clusters) and its response says `connection: close`, which moves the client to a new
   * connection. Closing idle connections instead would race with requests already on the wire. Connections
   * still open after `drainTimeoutMs` are closed.
   */
  private async drainChains(chains: FilterChain[], drainTimeoutMs: number): Promise<void> {
    const select = (socket: Socket) => this.selectChain(socket, inspected.get(socket) ?? RAW_BUFFER)?.hcm;
    for (const chain of chains) for (const manager of chain.managers()) manager.retire(select);
    const deadline = Date.now() + drainTimeoutMs;
    while (chains.some((c) => c.sockets.size > 0) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    for (const chain of chains) {
      chain.close();
      for (const socket of chain.sockets) socket.destroy();
    }
  }

  private allChains(): FilterChain[] {
    return this.defaultChain ? [...this.chains, this.defaultChain] : this.chains;
  }

  private onConnection(socket: Socket): void {
    const stats = this.stats;
    const openedAt = performance.now();
    stats.counters[L.downstream_cx_total]++;
    stats.gauges[LG.downstream_cx_active]++;
    this.sockets.add(socket);
    const info = this.accessLogs === undefined ? undefined : connectionStreamInfo(socket, '');
    socket.once('close', () => {
      this.sockets.delete(socket);
      stats.gauges[LG.downstream_cx_active]--;
      stats.counters[L.downstream_cx_destroy]++;
      stats.histograms[LH.downstream_cx_length_ms]!.record(performance.now() - openedAt);
      if (info !== undefined) this.logConnection(info, socket);
    });
    socket.on('error', () => socket.destroy());
    if (this.listenerFilters === undefined) {
      this.dispatch(socket, undefined, info);
      return;
    }
    this.listenerFilters.run(socket, (protocols) => {
      inspected.set(socket, protocols);
      if (info !== undefined) info.requestedServerName = protocols.serverName;
      this.dispatch(socket, protocols, info);
    });
  }

  /** Hands the connection to the filter chain that matches it, or closes it. */
  private dispatch(socket: Socket, protocols: ConnectionProtocols | undefined, info: StreamInfo | undefined): void {
    const stats = this.stats;
    const chain = this.selectChain(socket, protocols ?? RAW_BUFFER);
    if (chain === undefined) {
      stats.counters[L.no_filter_chain_match]++;
      if (info !== undefined) info.responseFlags |= ResponseFlag.NR;
      this.context.log.debug(`listener ${this.name}: no filter chain matches ${socket.remoteAddress}`);
      socket.destroy();
      return;
    }
    chain.accept(socket, this.context.log, protocols);
  }

  /** The connection's line: its bytes on the wire both ways and its duration. */
  private logConnection(info: StreamInfo, socket: Socket): void {
    // A newer configuration may have dropped the listener's access logs since the connection opened.
    if (this.accessLogs === undefined) return;
    info.bytesReceived = socket.bytesRead;
    info.bytesSent = socket.bytesWritten;
    info.lastResponseByteMonotonic = performance.now();
    emitAccessLogs(this.accessLogs, info);
  }

  private selectChain(socket: Socket, protocols: ConnectionProtocols): FilterChain | undefined {
    if (this.chains.length === 1 && isCatchAll(this.chains[0]!.match)) return this.chains[0];
    const local = plainAddress(socket.localAddress);
    const remote = plainAddress(socket.remoteAddress);
    const localPort = socket.localPort ?? 0;
    const remotePort = socket.remotePort ?? 0;
    let candidates = this.chains;
    candidates = narrow(candidates, (m) => (m.destinationPort === undefined ? 0 : m.destinationPort === localPort ? 1 : -1));
    candidates = narrow(candidates, (m) => rangeScore(m.destinationRanges, local));
    candidates = narrow(candidates, (m) => serverNameScore(m.serverNames, protocols.serverName));
    candidates = narrow(candidates, (m) =>
      m.transportProtocol === undefined ? 0 : m.transportProtocol === protocols.transportProtocol ? 1 : -1,
    );
    candidates = narrow(candidates, (m) => applicationProtocolScore(m.applicationProtocols, protocols.applicationProtocols));
    candidates = narrow(candidates, (m) => rangeScore(m.directSourceRanges, remote));
    candidates = narrow(candidates, (m) => {
      if (m.sourceType === 'ANY') return 0;
      const sameOrLoopback = remote === local || inBlockList(LOOPBACK, remote);
      return (m.sourceType === 'SAME_IP_OR_LOOPBACK') === sameOrLoopback ? 1 : -1;
    });
    candidates = narrow(candidates, (m) => rangeScore(m.sourceRanges, remote));
    candidates = narrow(candidates, (m) => (m.sourcePorts === undefined ? 0 : m.sourcePorts.includes(remotePort) ? 1 : -1));
    return candidates[0] ?? this.defaultChain;
  }
}

const LOOPBACK = cidrBlockList([
  { address_prefix: '127.0.0.0', prefix_len: 8 },
  { address_prefix: '::1', prefix_len: 128 },
]);

function isCatchAll(m: CompiledChainMatch): boolean {
  return (
    m.destinationPort === undefined &&
    !m.destinationRanges &&
    !m.serverNames &&
    m.transportProtocol === undefined &&
    !m.applicationProtocols &&
    !m.directSourceRanges &&
    m.sourceType === 'ANY' &&
    !m.sourceRanges &&
    !m.sourcePorts
  );
}

function rangeScore(list: BlockList | undefined, address: string): number {
  if (list === undefined) return 0;
  return inBlockList(list, address) ? 1 : -1;
}

/** Keeps the chains with the best non-negative score for one criterion (-1 = excluded, 0 = unset, 1 = matched). */
function narrow(chains: FilterChain[], score: (m: CompiledChainMatch) => number): FilterChain[] {
  let best = -1;
  let kept: FilterChain[] = [];
  for (const chain of chains) {
    const s = score(chain.match);
    if (s > best) {
      best = s;
      kept = [chain];
    } else if (s === best && s >= 0) {
      kept.push(chain);
    }
  }
  return best < 0 ? [] : kept;
}

function downstreamTls(typed: AnyMessage, path: string, errors: ConfigError[]): TlsTermination | undefined {
  const typeName = typeNameFromUrl(typed.type_url);
  if (typeName !== DOWNSTREAM_TLS) {
    errors.push({ code: 'invalid_value', path, message: `a filter chain's TLS transport socket takes an ${DOWNSTREAM_TLS}, not ${typeName}` });
    return undefined;
  }
  return compileDownstreamTls(typed.value as DownstreamTlsContext, path, errors);
}
