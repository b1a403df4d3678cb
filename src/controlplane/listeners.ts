/**
 * Which listeners a gateway has and what each serves: Emissary's Listener, Host, TLSContext, Secret and TCPMapping
 * resources → Envoy listeners. An HTTP listener gets one route table whose virtual hosts are its Hosts; an HTTPS
 * listener gets one filter chain per Host with a certificate, selected by SNI (`server_names`), each with a route
 * table of that Host alone, so that a connection made for one Host never reaches another's routes; a TCP listener
 * gets one `tcp_proxy` chain per TCPMapping `host`. Without Listener resources the gateway has Portico's
 * single HTTP listener, plus an HTTPS one when a Host has a certificate (on `httpsPort`).
 */
import type { InsecureAction, Host, HostSpec, Listener, ListenerSpec, Mapping, MappingSpec, Resource, Secret, SecretKey, TCPMapping, TLSContext, TlsOptions, TlsVersion } from './resources.js';
import { compare, resourceKey, secretPem, splitList } from './resources.js';
import { formatDuration } from '../config/proto/encode.js';
import type { Origin, ResourceError, TranslateOptions } from './translate.js';

type Json = Record<string, unknown>;

const TYPE = 'type.googleapis.com/';
const HCM_NAME = 'envoy.filters.network.http_connection_manager';
const TLS_INSPECTOR = { name: 'envoy.filters.listener.tls_inspector', typed_config: { '@type': `${TYPE}envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector` } };
const TLS_VERSIONS: Record<TlsVersion, string> = { 'v1.0': 'TLSv1_0', 'v1.1': 'TLSv1_1', 'v1.2': 'TLSv1_2', 'v1.3': 'TLSv1_3' };
/** Emissary's secure-request test on a cleartext listener with securityModel XFP. */
const XFP_HTTPS = { name: 'x-forwarded-proto', string_match: { exact: 'https' } };
export const LISTENER_NAME = 'ambassador-listener';
const PROXY_PORT = '--proxy-port';

/** A route of the translation and the Mapping it serves, for binding routes to Hosts. */
export interface RouteEntry {
  route: Json;
  mapping: Mapping;
  spec: MappingSpec;
}

/** What produced the parts of a TLS context, for naming the field behind a problem the data plane finds there. */
export interface TlsOrigins {
  cert: Origin;
  key: Origin;
  ca: Origin | undefined;
  settings: Origin;
}

/** Producers of listeners[i] and of its filter_chains[j] (network filters and transport socket). */
export interface ListenerOrigins {
  listener: Origin[];
  chains: { filters: Origin[]; tls: TlsOrigins | undefined }[];
}

export interface ListenerInput {
  resources: readonly Resource[];
  routes: readonly RouteEntry[];
  /** The connection manager's typed_config around a route table. */
  connectionManager(statPrefix: string, l7Depth: number | undefined, routeConfig: Json): Json;
  /** The cluster a TCPMapping's connections go to. */
  tcpCluster(mapping: TCPMapping): string;
  options: TranslateOptions;
  errors: ResourceError[];
}

export interface BuiltListeners {
  listeners: Json[];
  origins: ListenerOrigins[];
  /** Producers of the routes this file adds (insecure actions), by route name. */
  routeOrigins: Map<string, Origin[]>;
}

type Security = 'secure' | 'insecure' | 'xfp';

/** A Host as the translation uses it; a TLSContext's `hosts` without a Host of their own are Hosts for HTTPS only. */
interface GatewayHost {
  resource: Resource;
  hostname: string;
  tls: { context: Json; origins: TlsOrigins } | undefined;
  action: InsecureAction;
  /** Only HTTPS listeners serve it (a TLSContext's host name: cleartext routing stays as it was). */
  tlsOnly: boolean;
  mappingLabels: Record<string, string> | undefined;
}

interface Plan {
  port: number;
  address: string;
  protocol: 'HTTP' | 'HTTPS' | 'TCP';
  security: Security;
  statPrefix: string;
  l7Depth: number | undefined;
  binds(host: GatewayHost): boolean;
  origins: Origin[];
  /** What made the listener, named when another resource wants its port. */
  by: string;
}

const origin = (resource: Resource, field: string): Origin => ({ resource: resourceKey(resource), field, inherited: {} });
const byName = (a: Resource, b: Resource) => compare(a.metadata.name, b.metadata.name);

export function buildListeners(input: ListenerInput): BuiltListeners {
  const { resources, options, errors } = input;
  const of = <R extends Resource>(kind: string) => resources.filter((r) => r.kind === kind).sort(byName) as R[];
  const secrets = new Map(of<Secret>('Secret').map((s) => [s.metadata.name, s]));
  const contexts = of<TLSContext>('TLSContext');
  const hosts = gatewayHosts(of<Host>('Host'), contexts, secrets, errors);
  const realHosts = hosts.filter((h) => !h.tlsOnly);
  const plans = listenerPlans(of<Listener>('Listener'), hosts, options, errors);
  const routeOrigins = new Map<string, Origin[]>();

  const vhost = (host: GatewayHost, security: Security): Json => {
    const own = input.routes.filter((r) => bound(r, host)).map((r) => r.route);
    let routes = own;
    if (security !== 'secure' && host.action !== 'Route') {
      const name = `${resourceKey(host.resource)} insecure`;
      routeOrigins.set(name, [origin(host.resource, 'spec.requestPolicy.insecure.action')]);
      const action: Json =
        host.action === 'Redirect'
          ? { name, match: { prefix: '/' }, redirect: { https_redirect: true } }
          : { name, match: { prefix: '/' }, direct_response: { status: 404 } };
      routes = security === 'insecure' ? [action] : [...own.map(secureOnly), action];
    }
    return { name: host.hostname, domains: host.hostname.includes('*') ? [host.hostname] : [host.hostname, `${host.hostname}:*`], routes };
  };
  const hcmChain = (plan: Plan, tableName: string, virtualHosts: Json[]): Json => ({
    name: HCM_NAME,
    typed_config: input.connectionManager(plan.statPrefix, plan.l7Depth, { name: tableName, virtual_hosts: virtualHosts }),
  });

  const tcpByPort = new Map<number, TCPMapping[]>();
  for (const m of of<TCPMapping>('TCPMapping')) {
    const list = tcpByPort.get(m.spec.port);
    if (list) list.push(m);
    else tcpByPort.set(m.spec.port, [m]);
  }
  for (const [port, members] of tcpByPort) {
    const plan = plans.find((p) => p.port === port);
    if (plan === undefined) {
      const address = members.find((m) => m.spec.address !== undefined)?.spec.address ?? options.listenerAddress;
      plans.push({ port, address, protocol: 'TCP', security: 'secure', statPrefix: '', l7Depth: undefined, binds: () => false, origins: members.map((m) => origin(m, 'spec.port')), by: resourceKey(members[0]!) });
    } else if (plan.protocol !== 'TCP') {
      for (const m of members) errors.push({ resource: resourceKey(m), code: 'invalid_value', path: 'spec.port', message: `port ${port} is the ${plan.protocol} listener of ${plan.by}; a TCPMapping needs a port of its own or a TCP Listener` });
    }
  }

  const listeners: Json[] = [];
  const origins: ListenerOrigins[] = [];
  // By port, the HTTP listener of --proxy-port first: the listener `portico start` reports as its proxy.
  const rank = (p: Plan) => (p.by === PROXY_PORT ? -1 : p.port);
  for (const plan of plans.sort((a, b) => rank(a) - rank(b))) {
    const name = `${LISTENER_NAME}-${plan.port}`;
    const address = { socket_address: { address: plan.address, port_value: plan.port } };
    const chains: Json[] = [];
    const chainOrigins: ListenerOrigins['chains'] = [];
    if (plan.protocol === 'HTTP') {
      const served = realHosts.filter(plan.binds);
      // Without Hosts, every Mapping serves every host name, as before Hosts existed.
      const virtualHosts = realHosts.length === 0 ? [{ name: 'ambassador', domains: ['*'], routes: input.routes.map((r) => r.route) }] : served.map((h) => vhost(h, plan.security));
      chains.push({ filters: [hcmChain(plan, `ambassador-routes-${plan.port}`, virtualHosts)] });
      chainOrigins.push({ filters: [], tls: undefined });
    } else if (plan.protocol === 'HTTPS') {
      for (const host of hosts.filter((h) => h.tls !== undefined && plan.binds(h))) {
        chains.push({
          ...serverNames(host.hostname),
          transport_socket: { name: 'envoy.transport_sockets.tls', typed_config: host.tls!.context },
          filters: [hcmChain(plan, `ambassador-routes-${plan.port}-${host.hostname}`, [vhost(host, plan.security)])],
        });
        chainOrigins.push({ filters: [], tls: host.tls!.origins });
      }
    } else {
      for (const [sni, members] of tcpGroups(tcpByPort.get(plan.port) ?? [], errors)) {
        // TLS is terminated when a Host (or TLSContext) has a certificate for the name, else passed through by SNI.
        const withTls = hosts.filter((h) => h.tls !== undefined);
        const terminating = sni === '' ? undefined : (withTls.find((h) => h.hostname.toLowerCase() === sni) ?? withTls.find((h) => h.hostname !== '*' && globsIntersect(h.hostname, sni)));
        const chain: Json = { ...serverNames(sni) };
        if (terminating) chain.transport_socket = { name: 'envoy.transport_sockets.tls', typed_config: terminating.tls!.context };
        chain.filters = [{ name: 'envoy.filters.network.tcp_proxy', typed_config: tcpProxy(plan.port, members, input.tcpCluster, errors) }];
        chains.push(chain);
        chainOrigins.push({ filters: members.map((m) => origin(m, 'spec')), tls: terminating?.tls?.origins });
      }
    }
    // A listener with nothing to serve (an HTTPS one without certificates, a TCP one without TCPMappings) is not opened.
    if (chains.length === 0) continue;
    const listener: Json = { name, address };
    if (chains.some((c) => c.filter_chain_match !== undefined)) listener.listener_filters = [TLS_INSPECTOR];
    listener.filter_chains = chains;
    listeners.push(listener);
    origins.push({ listener: plan.origins, chains: chainOrigins });
  }
  return { listeners, origins, routeOrigins };
}

function serverNames(hostname: string): Json {
  return hostname === '' || hostname === '*' ? {} : { filter_chain_match: { server_names: [hostname] } };
}

/** The route, for requests that arrived over TLS before a proxy in front (`x-forwarded-proto: https`) only. */
function secureOnly(route: Json): Json {
  const match = route.match as Json;
  return { ...route, match: { ...match, headers: [...((match.headers as Json[] | undefined) ?? []), XFP_HTTPS] } };
}

/** Emissary's association of Mappings with Hosts: by host name glob (none: every Host) and the Host's mappingSelector. */
function bound(entry: RouteEntry, host: GatewayHost): boolean {
  if (host.mappingLabels !== undefined && !labelsMatch(entry.mapping.metadata.labels, host.mappingLabels)) return false;
  const glob = entry.spec.hostname ?? (entry.spec.host !== undefined && !entry.spec.host_regex ? entry.spec.host.replace(/:\d+$/, '') : undefined);
  return glob === undefined || globsIntersect(glob, host.hostname);
}

function labelsMatch(labels: Record<string, string> | undefined, selector: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

/** Whether two host globs (`*`, `*.suffix`, `prefix.*`, exact) can match one name. */
export function globsIntersect(a: string, b: string): boolean {
  const kind = (g: string): ['any' | 'exact' | 'suffix' | 'prefix', string] => {
    const lower = g.toLowerCase();
    if (lower === '*') return ['any', ''];
    if (lower.startsWith('*.')) return ['suffix', lower.slice(1)];
    if (lower.endsWith('.*')) return ['prefix', lower.slice(0, -1)];
    return ['exact', lower];
  };
  const [ka, va] = kind(a);
  const [kb, vb] = kind(b);
  if (ka === 'any' || kb === 'any') return true;
  if (ka === 'exact' && kb === 'exact') return va === vb;
  if (ka === 'exact' || kb === 'exact') {
    const [exact, [k, v]] = ka === 'exact' ? [va, [kb, vb] as const] : [vb, [ka, va] as const];
    return k === 'suffix' ? exact.length > v.length && exact.endsWith(v) : exact.startsWith(v);
  }
  if (ka !== kb) return true;
  return ka === 'suffix' ? va.endsWith(vb) || vb.endsWith(va) : va.startsWith(vb) || vb.startsWith(va);
}

/** Hosts with their TLS resolved, and the host names of TLSContexts that no Host has. */
function gatewayHosts(hosts: Host[], contexts: TLSContext[], secrets: Map<string, Secret>, errors: ResourceError[]): GatewayHost[] {
  const out: GatewayHost[] = [];
  const taken = new Map<string, Resource>();
  const claim = (hostname: string, r: Resource, path: string): boolean => {
    const owner = taken.get(hostname.toLowerCase());
    if (owner !== undefined) {
      errors.push({ resource: resourceKey(r), code: 'invalid_value', path, message: `host name ${hostname} is already ${resourceKey(owner)}'s` });
      return false;
    }
    taken.set(hostname.toLowerCase(), r);
    return true;
  };
  for (const host of hosts) {
    const spec: HostSpec = host.spec;
    const hostname = spec.hostname ?? '*';
    if (!claim(hostname, host, 'spec.hostname')) continue;
    let context: TLSContext | undefined;
    if (spec.tlsContext !== undefined) {
      context = contexts.find((c) => c.metadata.name === spec.tlsContext!.name);
      if (context === undefined) errors.push({ resource: resourceKey(host), code: 'invalid_value', path: 'spec.tlsContext.name', message: `no TLSContext named ${spec.tlsContext.name}` });
    } else if (spec.tls === undefined) {
      context = contexts.find((c) => c.spec.hosts?.some((h) => h.toLowerCase() === hostname.toLowerCase()));
    }
    const tls = hostTls(host, context, secrets, errors);
    const action = spec.requestPolicy?.insecure?.action ?? (tls ? 'Redirect' : 'Route');
    out.push({ resource: host, hostname, tls, action, tlsOnly: false, mappingLabels: spec.mappingSelector?.matchLabels });
  }
  for (const context of contexts) {
    (context.spec.hosts ?? []).forEach((hostname, i) => {
      const owner = taken.get(hostname.toLowerCase());
      if (owner?.kind === 'Host') return;
      if (!claim(hostname, context, `spec.hosts[${i}]`)) return;
      const tls = tlsContext(context.spec, 'spec.', context, undefined, secrets, errors, 'spec.secret');
      out.push({ resource: context, hostname, tls, action: 'Route', tlsOnly: true, mappingLabels: undefined });
    });
  }
  return out;
}

/** The TLS of a Host: its certificate (tlsSecret, tls files, or its TLSContext's), with the TLS settings of `tls` or the TLSContext. */
function hostTls(host: Host, context: TLSContext | undefined, secrets: Map<string, Secret>, errors: ResourceError[]): GatewayHost['tls'] {
  const spec = host.spec;
  if (spec.tlsSecret === undefined && spec.tls === undefined && context === undefined) return undefined;
  if (spec.tlsSecret !== undefined && context?.spec.secret !== undefined && context.spec.secret !== spec.tlsSecret.name) {
    errors.push({ resource: resourceKey(host), code: 'oneof_conflict', path: 'spec.tlsSecret.name', message: `the certificate is Secret ${spec.tlsSecret.name} here and Secret ${context.spec.secret} in ${resourceKey(context)}` });
    return undefined;
  }
  const options: TlsOptions = context?.spec ?? spec.tls ?? {};
  const settings = context ? { resource: context, prefix: 'spec.' } : { resource: host as Resource, prefix: 'spec.tls.' };
  const certificate = spec.tlsSecret !== undefined ? { resource: host as Resource, field: 'spec.tlsSecret.name', secret: spec.tlsSecret.name } : undefined;
  return tlsContext(options, settings.prefix, settings.resource, certificate, secrets, errors, spec.tls !== undefined ? 'spec.tls' : 'spec.tlsSecret', host);
}

/**
 * A DownstreamTlsContext from TLS options (`prefix` locates them in `resource`); the certificate from `certificate`
 * (a Host's tlsSecret), else the options' secret or files. Problems are reported on `owner` (the Host, or the
 * TLSContext itself) at `missingPath` when there is no certificate.
 */
function tlsContext(
  options: TlsOptions & { secret?: string },
  prefix: string,
  resource: Resource,
  certificate: { resource: Resource; field: string; secret: string } | undefined,
  secrets: Map<string, Secret>,
  errors: ResourceError[],
  missingPath: string,
  owner: Resource = resource,
): GatewayHost['tls'] {
  const at = (field: string): Origin => origin(resource, `${prefix}${field}`);
  const pem = (name: string, keys: SecretKey[], from: Origin): Json | undefined => {
    const secret = secrets.get(name);
    const found = secret && keys.map((k) => secretPem(secret.spec, k)).find((p) => p !== undefined);
    if (found === undefined) {
      errors.push({ resource: from.resource, code: 'invalid_value', path: from.field!, message: secret ? `Secret ${name} has no ${keys.join(' or ')}` : `no Secret named ${name}` });
      return undefined;
    }
    return { inline_string: found.pem };
  };
  const secretName = certificate?.secret ?? options.secret;
  const secretOrigin = certificate ? origin(certificate.resource, certificate.field) : at('secret');
  let chain: Json | undefined;
  let key: Json | undefined;
  let origins: Pick<TlsOrigins, 'cert' | 'key'>;
  if (secretName !== undefined) {
    chain = pem(secretName, ['tls.crt'], secretOrigin);
    key = pem(secretName, ['tls.key'], secretOrigin);
    origins = { cert: secretOrigin, key: secretOrigin };
  } else if (options.cert_chain_file !== undefined) {
    chain = { filename: options.cert_chain_file };
    key = { filename: options.private_key_file };
    origins = { cert: at('cert_chain_file'), key: at('private_key_file') };
  } else {
    errors.push({ resource: resourceKey(owner), code: 'missing_required', path: missingPath, message: 'TLS needs a certificate: tlsSecret, a TLSContext secret, or cert_chain_file and private_key_file' });
    return undefined;
  }
  if (chain === undefined || key === undefined) return undefined;
  const common: Json = { tls_certificates: [{ certificate_chain: chain, private_key: key }] };
  const params: Json = {};
  if (options.min_tls_version !== undefined) params.tls_minimum_protocol_version = TLS_VERSIONS[options.min_tls_version];
  if (options.max_tls_version !== undefined) params.tls_maximum_protocol_version = TLS_VERSIONS[options.max_tls_version];
  if (options.cipher_suites !== undefined) params.cipher_suites = options.cipher_suites;
  if (options.ecdh_curves !== undefined) params.ecdh_curves = options.ecdh_curves;
  if (Object.keys(params).length) common.tls_params = params;
  let ca: Origin | undefined;
  if (options.ca_secret !== undefined) {
    ca = at('ca_secret');
    // Emissary reads a CA Secret's tls.crt; Kubernetes' convention is ca.crt: either will do.
    const trusted = pem(options.ca_secret, ['ca.crt', 'tls.crt'], ca);
    if (trusted === undefined) return undefined;
    common.validation_context = { trusted_ca: trusted };
  } else if (options.cacert_chain_file !== undefined) {
    ca = at('cacert_chain_file');
    common.validation_context = { trusted_ca: { filename: options.cacert_chain_file } };
  }
  if (options.alpn_protocols !== undefined) common.alpn_protocols = splitList(options.alpn_protocols);
  const context: Json = { '@type': `${TYPE}envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext`, common_tls_context: common };
  if (options.cert_required !== undefined) context.require_client_certificate = options.cert_required;
  return { context, origins: { ...origins, ca, settings: origin(resource, prefix === 'spec.' ? 'spec' : prefix.slice(0, -1)) } };
}

/** The listeners the Listener resources ask for, or Portico's defaults without any; plus Hosts' additional ports. */
function listenerPlans(resources: Listener[], hosts: GatewayHost[], options: TranslateOptions, errors: ResourceError[]): Plan[] {
  const plans: Plan[] = [];
  const all = () => true;
  if (resources.length === 0) {
    plans.push({ port: options.listenerPort, address: options.listenerAddress, protocol: 'HTTP', security: 'xfp', statPrefix: 'ingress_http', l7Depth: undefined, binds: all, origins: [], by: PROXY_PORT });
    if (options.httpsPort !== undefined && hosts.some((h) => h.tls !== undefined)) {
      plans.push({ port: options.httpsPort, address: options.listenerAddress, protocol: 'HTTPS', security: 'secure', statPrefix: 'ingress_https', l7Depth: undefined, binds: all, origins: [], by: '--https-port' });
    }
  }
  for (const listener of [...resources].sort((a, b) => a.spec.port - b.spec.port || byName(a, b))) {
    const spec: ListenerSpec = listener.spec;
    const clash = plans.find((p) => p.port === spec.port);
    if (clash) {
      errors.push({ resource: resourceKey(listener), code: 'invalid_value', path: 'spec.port', message: `port ${spec.port} is already ${clash.by}'s` });
      continue;
    }
    const protocol = spec.protocol === 'HTTP' || spec.protocol === 'HTTPS' ? spec.protocol : 'TCP';
    const tls = protocol === 'HTTPS';
    const security: Security = spec.securityModel === 'SECURE' || (spec.securityModel === 'XFP' && tls) ? 'secure' : spec.securityModel === 'INSECURE' ? 'insecure' : 'xfp';
    const namespace = listener.metadata.namespace ?? 'default';
    const selector = spec.hostBinding.selector?.matchLabels;
    const binds = (h: GatewayHost) =>
      (spec.hostBinding.namespace?.from !== 'SELF' || (h.resource.metadata.namespace ?? 'default') === namespace) &&
      (selector === undefined || labelsMatch(h.resource.metadata.labels, selector));
    plans.push({
      port: spec.port,
      address: options.listenerAddress,
      protocol,
      security,
      statPrefix: spec.statsPrefix ?? (tls ? 'ingress_https' : 'ingress_http'),
      l7Depth: spec.l7Depth,
      binds,
      origins: [origin(listener, 'spec.port')],
      by: resourceKey(listener),
    });
  }
  for (const host of hosts) {
    const port = (host.resource.spec as HostSpec).requestPolicy?.insecure?.additionalPort;
    if (port === undefined || port <= 0) continue;
    const existing = plans.find((p) => p.port === port);
    if (existing === undefined) {
      plans.push({ port, address: options.listenerAddress, protocol: 'HTTP', security: 'xfp', statPrefix: 'ingress_http', l7Depth: undefined, binds: all, origins: [origin(host.resource, 'spec.requestPolicy.insecure.additionalPort')], by: resourceKey(host.resource) });
    } else if (existing.protocol !== 'HTTP') {
      errors.push({ resource: resourceKey(host.resource), code: 'invalid_value', path: 'spec.requestPolicy.insecure.additionalPort', message: `port ${port} is the ${existing.protocol} listener of ${existing.by}, not a cleartext HTTP one` });
    }
  }
  return plans;
}

/** TCPMappings of one port by TLS server name ('' for none), in name order. */
function tcpGroups(members: TCPMapping[], errors: ResourceError[]): [string, TCPMapping[]][] {
  const groups = new Map<string, TCPMapping[]>();
  for (const m of members) {
    const key = m.spec.host?.toLowerCase() ?? '';
    const list = groups.get(key);
    if (list) list.push(m);
    else groups.set(key, [m]);
  }
  const address = members.find((m) => m.spec.address !== undefined)?.spec.address;
  for (const m of members) {
    if (m.spec.address !== undefined && m.spec.address !== address) {
      errors.push({ resource: resourceKey(m), code: 'invalid_value', path: 'spec.address', message: `port ${m.spec.port} listens on ${address} for ${resourceKey(members.find((o) => o.spec.address === address)!)}` });
    }
  }
  return [...groups].sort(([a], [b]) => compare(a, b));
}

/** The tcp_proxy of TCPMappings sharing a port and server name: weights as Emissary splits them (the rest shared equally). */
function tcpProxy(port: number, members: TCPMapping[], cluster: (m: TCPMapping) => string, errors: ResourceError[]): Json {
  const out: Json = { '@type': `${TYPE}envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`, stat_prefix: `ingress_tcp_${port}` };
  if (members.length === 1) out.cluster = cluster(members[0]!);
  else {
    const explicit = members.reduce((sum, m) => sum + (m.spec.weight ?? 0), 0);
    if (explicit > 100) {
      for (const m of members.filter((x) => x.spec.weight !== undefined)) {
        errors.push({ resource: resourceKey(m), code: 'invalid_value', path: 'spec.weight', message: `the weights of ${members.map(resourceKey).join(', ')} add up to ${explicit}, more than 100` });
      }
    }
    const weightless = members.filter((m) => m.spec.weight === undefined);
    const share = weightless.length ? Math.max(0, 100 - explicit) / weightless.length : 0;
    const clusters = members
      .map((m) => ({ name: cluster(m), weight: Math.round(m.spec.weight ?? share) }))
      .filter((c) => c.weight > 0);
    if (clusters.length === 0) {
      for (const m of members) errors.push({ resource: resourceKey(m), code: 'invalid_value', path: 'spec.weight', message: `every TCPMapping of port ${port} has weight 0: no connection could be served` });
    }
    out.weighted_clusters = { clusters };
  }
  const timeouts = members.filter((m) => m.spec.idle_timeout_ms !== undefined);
  for (const m of timeouts.slice(1)) {
    if (m.spec.idle_timeout_ms !== timeouts[0]!.spec.idle_timeout_ms) {
      errors.push({ resource: resourceKey(m), code: 'invalid_value', path: 'spec.idle_timeout_ms', message: `the connections of port ${port}${m.spec.host ? ` for ${m.spec.host}` : ''} have one idle timeout; ${resourceKey(timeouts[0]!)} says ${timeouts[0]!.spec.idle_timeout_ms}` });
    }
  }
  if (timeouts.length) out.idle_timeout = formatDuration(timeouts[0]!.spec.idle_timeout_ms!);
  return out;
}
