/**
 * Envoy's RBAC policy engine (`envoy.config.rbac.v3.RBAC`), shared by the HTTP and network RBAC filters and
 * compiled once: every permission and principal becomes a predicate over an `RbacSubject`. As Envoy's engine:
 * - a policy matches when one of its permissions and one of its principals match;
 * - ALLOW allows when a policy matches, DENY when none does, LOG always allows and records whether one matched
 *   (`access_log_hint` under `envoy.common`);
 * - the effective policy is the first matching one in name order (Envoy keeps policies in a sorted map).
 * At L4 there is no request: `header`, `url_path` and `metadata` match nothing.
 */
import { BlockList } from 'node:net';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { envoy } from '../../../../generated/envoy.js';
import { childPath, type ConfigError } from '../../../../config/errors.js';
import { cidrBlockList, inBlockList } from '../../../../dataplane/cidr.js';
import { compileHeaderMatcher } from '../../../../dataplane/matching/header-matcher.js';
import { compileStringMatcher } from '../../../../dataplane/matching/string-matcher.js';
import type { RequestHead, StreamInfo } from '../../../../dataplane/stream-info.js';
import { compileMetadataMatcher, type Metadata } from './metadata-matcher.js';

/** What policies are evaluated against: the stream's info (a connection's, at L4), its request and connection. */
export interface RbacSubject {
  readonly info: Pick<
    StreamInfo,
    'downstreamRemoteAddress' | 'downstreamDirectRemoteAddress' | 'downstreamLocalAddress' | 'downstreamLocalPort' | 'requestedServerName'
  > & { dynamicMetadata: Metadata };
  /** Undefined at L4. */
  readonly head: RequestHead | undefined;
  readonly connection: Socket;
}

type Matcher = (s: RbacSubject) => boolean;

const always: Matcher = () => true;
const never: Matcher = () => false;

export const enum RbacAction {
  Allow,
  Deny,
  Log,
}

/** Namespace and key of the LOG action's metadata, as Envoy's. */
export const COMMON_METADATA_NAMESPACE = 'envoy.common';
const ACCESS_LOG_HINT = 'access_log_hint';

export function setMetadata(info: RbacSubject['info'], namespace: string, key: string, value: unknown): void {
  const all = (info.dynamicMetadata ??= {});
  (all[namespace] ??= {})[key] = value;
}

interface CompiledPolicy {
  readonly name: string;
  readonly permission: Matcher;
  readonly principal: Matcher;
}

export class RbacEngine {
  private readonly action: RbacAction;
  private readonly policies: readonly CompiledPolicy[];
  /** The name of the policy the last `allowed` call matched, undefined when none did. */
  matchedPolicy: string | undefined;

  constructor(config: envoy.config.rbac.v3.RBAC, path: string, errors: ConfigError[]) {
    this.action = config.action === 'DENY' ? RbacAction.Deny : config.action === 'LOG' ? RbacAction.Log : RbacAction.Allow;
    const policiesPath = childPath(path, 'policies');
    this.policies = Object.keys(config.policies ?? {})
      .sort()
      .map((name) => {
        const policy = config.policies![name]!;
        const at = `${policiesPath}[${JSON.stringify(name)}]`;
        return {
          name,
          permission: or(compileAll(policy.permissions, childPath(at, 'permissions'), compilePermission, errors)),
          principal: or(compileAll(policy.principals, childPath(at, 'principals'), compilePrincipal, errors)),
        };
      });
  }

  /**
   * Whether the subject is allowed; `matchedPolicy` is then the effective policy. Single-threaded, so the engine
   * can hold it rather than allocate a result per call.
   */
  allowed(subject: RbacSubject): boolean {
    let matched: string | undefined;
    for (const policy of this.policies) {
      if (policy.permission(subject) && policy.principal(subject)) {
        matched = policy.name;
        break;
      }
    }
    this.matchedPolicy = matched;
    switch (this.action) {
      case RbacAction.Allow:
        return matched !== undefined;
      case RbacAction.Deny:
        return matched === undefined;
      case RbacAction.Log:
        setMetadata(subject.info, COMMON_METADATA_NAMESPACE, ACCESS_LOG_HINT, matched !== undefined);
        return true;
    }
  }
}

type Compile<T> = (config: T, path: string, errors: ConfigError[]) => Matcher;

/** The schema requires the lists of policies and sets to be non-empty (checked before compiling). */
function compileAll<T>(list: readonly T[] | undefined, path: string, compile: Compile<T>, errors: ConfigError[]): Matcher[] {
  return (list ?? []).map((item, i) => compile(item, childPath(path, i), errors));
}

function or(fns: readonly Matcher[]): Matcher {
  if (fns.length === 1) return fns[0]!;
  return (s) => {
    for (let i = 0; i < fns.length; i++) if (fns[i]!(s)) return true;
    return false;
  };
}

function and(fns: readonly Matcher[]): Matcher {
  if (fns.length === 1) return fns[0]!;
  return (s) => {
    for (let i = 0; i < fns.length; i++) if (!fns[i]!(s)) return false;
    return true;
  };
}

function cidr(range: envoy.config.core.v3.CidrRange, pick: (s: RbacSubject) => string): Matcher {
  const list: BlockList = cidrBlockList([range]);
  return (s) => inBlockList(list, pick(s));
}

function header(m: envoy.config.route.v3.HeaderMatcher, path: string, errors: ConfigError[]): Matcher {
  const match = compileHeaderMatcher(m, path, errors);
  return (s) => s.head !== undefined && match(s.head);
}

/** PathMatcher: the path without its query string or fragment, as Envoy's. */
function urlPath(m: envoy.type.matcher.v3.PathMatcher, path: string, errors: ConfigError[]): Matcher {
  const match = compileStringMatcher(m.path, childPath(path, 'path'), errors);
  return (s) => {
    if (s.head === undefined) return false;
    const p = s.head.path;
    const end = p.search(/[?#]/);
    return match(end < 0 ? p : p.slice(0, end));
  };
}

function metadata(m: envoy.type.matcher.v3.MetadataMatcher, path: string, errors: ConfigError[]): Matcher {
  const match = compileMetadataMatcher(m, path, errors);
  return (s) => s.head !== undefined && match(s.info.dynamicMetadata);
}

function compilePermission(p: envoy.config.rbac.v3.Permission, path: string, errors: ConfigError[]): Matcher {
  if (p.any === true) return always;
  if (p.and_rules !== undefined) return and(compileAll(p.and_rules.rules, childPath(childPath(path, 'and_rules'), 'rules'), compilePermission, errors));
  if (p.or_rules !== undefined) return or(compileAll(p.or_rules.rules, childPath(childPath(path, 'or_rules'), 'rules'), compilePermission, errors));
  if (p.not_rule !== undefined) {
    const inner = compilePermission(p.not_rule, childPath(path, 'not_rule'), errors);
    return (s) => !inner(s);
  }
  if (p.header !== undefined) return header(p.header, childPath(path, 'header'), errors);
  if (p.url_path !== undefined) return urlPath(p.url_path, childPath(path, 'url_path'), errors);
  if (p.destination_ip !== undefined) return cidr(p.destination_ip, (s) => s.info.downstreamLocalAddress);
  if (p.destination_port !== undefined) {
    const port = p.destination_port;
    return (s) => s.info.downstreamLocalPort === port;
  }
  if (p.destination_port_range !== undefined) {
    // Int32Range: start inclusive, end exclusive.
    const start = p.destination_port_range.start ?? 0;
    const end = p.destination_port_range.end ?? 0;
    return (s) => s.info.downstreamLocalPort >= start && s.info.downstreamLocalPort < end;
  }
  if (p.requested_server_name !== undefined) {
    const match = compileStringMatcher(p.requested_server_name, childPath(path, 'requested_server_name'), errors);
    return (s) => match(s.info.requestedServerName);
  }
  if (p.metadata !== undefined) return metadata(p.metadata, childPath(path, 'metadata'), errors);
  // Refused by name when the configuration is checked (src/config/support.ts).
  if (p.matcher !== undefined || p.uri_template !== undefined) return never;
  errors.push({ code: 'missing_required', path, message: 'a Permission needs a rule' });
  return never;
}

function compilePrincipal(p: envoy.config.rbac.v3.Principal, path: string, errors: ConfigError[]): Matcher {
  if (p.any === true) return always;
  if (p.and_ids !== undefined) return and(compileAll(p.and_ids.ids, childPath(childPath(path, 'and_ids'), 'ids'), compilePrincipal, errors));
  if (p.or_ids !== undefined) return or(compileAll(p.or_ids.ids, childPath(childPath(path, 'or_ids'), 'ids'), compilePrincipal, errors));
  if (p.not_id !== undefined) {
    const inner = compilePrincipal(p.not_id, childPath(path, 'not_id'), errors);
    return (s) => !inner(s);
  }
  if (p.authenticated !== undefined) return authenticated(p.authenticated, childPath(path, 'authenticated'), errors);
  if (p.direct_remote_ip !== undefined) return cidr(p.direct_remote_ip, (s) => s.info.downstreamDirectRemoteAddress);
  // `source_ip` is the deprecated name of `direct_remote_ip`.
  if (p.source_ip !== undefined) return cidr(p.source_ip, (s) => s.info.downstreamDirectRemoteAddress);
  if (p.remote_ip !== undefined) return cidr(p.remote_ip, (s) => s.info.downstreamRemoteAddress);
  if (p.header !== undefined) return header(p.header, childPath(path, 'header'), errors);
  if (p.url_path !== undefined) return urlPath(p.url_path, childPath(path, 'url_path'), errors);
  if (p.metadata !== undefined) return metadata(p.metadata, childPath(path, 'metadata'), errors);
  if (p.filter_state !== undefined) return never;
  errors.push({ code: 'missing_required', path, message: 'a Principal needs an identity' });
  return never;
}

/** What `authenticated` matches of a TLS peer, worked out once per connection. */
interface PeerIdentity {
  readonly uris: readonly string[];
  readonly dns: readonly string[];
  readonly subject: string;
}

const NO_PEER: PeerIdentity = { uris: [], dns: [], subject: '' };
const identities = new WeakMap<Socket, PeerIdentity>();

function peerIdentity(tls: TLSSocket): PeerIdentity {
  let identity = identities.get(tls);
  if (identity !== undefined) return identity;
  const cert = tls.getPeerX509Certificate();
  if (cert === undefined) {
    identity = NO_PEER;
  } else {
    const sans = splitSans(cert.subjectAltName);
    identity = {
      uris: sans.filter((s) => s.startsWith('URI:')).map((s) => s.slice(4)),
      dns: sans.filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4)),
      subject: rfc2253(cert.subject),
    };
  }
  identities.set(tls, identity);
  return identity;
}

/**
 * `authenticated`: a TLS connection; with `principal_name`, one of the peer certificate's URI SANs, else one of
 * its DNS SANs, else its subject (RFC 2253 order) must match.
 */
function authenticated(a: envoy.config.rbac.v3.Principal.Authenticated, path: string, errors: ConfigError[]): Matcher {
  if (a.principal_name === undefined) return (s) => (s.connection as TLSSocket).encrypted === true;
  const match = compileStringMatcher(a.principal_name, childPath(path, 'principal_name'), errors);
  return (s) => {
    const tls = s.connection as TLSSocket;
    if (tls.encrypted !== true) return false;
    const peer = peerIdentity(tls);
    if (peer === NO_PEER) return false;
    return peer.uris.some(match) || peer.dns.some(match) || match(peer.subject);
  };
}

/** Node's `subjectAltName` (`DNS:a, URI:b`; values with commas are JSON-quoted). */
function splitSans(sans: string | undefined): string[] {
  if (sans === undefined || sans === '') return [];
  const out: string[] = [];
  for (const m of sans.matchAll(/([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g)) {
    const value = m[2]!;
    out.push(`${m[1]}:${value.startsWith('"') ? (JSON.parse(value) as string) : value}`);
  }
  return out;
}

/** Node gives the subject one attribute a line, most significant first; RFC 2253 lists them the other way. */
function rfc2253(subject: string): string {
  return subject.split('\n').reverse().join(',');
}
