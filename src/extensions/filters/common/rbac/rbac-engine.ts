/**
 * Envoy's RBAC engine (`envoy.config.rbac.v3.RBAC`), compiled once into predicates: a policy matches when one of
 * its permissions (what is asked) and one of its principals (who asks) match. ALLOW admits what a policy
 * matches, DENY refuses it, LOG admits everything and says which policy matched. Shared by the HTTP filter and,
 * for the parts that exist without a request (addresses, ports, SNI, the peer certificate), the network one.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { envoy } from '../../../../generated/envoy.js';
import type { ConfigError } from '../../../../config/errors.js';
import { cidrBlockList, inBlockList } from '../../../../dataplane/cidr.js';
import { compileHeaderMatcher } from '../../../../dataplane/matching/header-matcher.js';
import { compileStringMatcher, type StringMatchFn } from '../../../../dataplane/matching/string-matcher.js';
import type { RequestHead, StreamInfo } from '../../../../dataplane/stream-info.js';

type RbacConfig = envoy.config.rbac.v3.RBAC;
type PermissionConfig = envoy.config.rbac.v3.Permission;
type PrincipalConfig = envoy.config.rbac.v3.Principal;

/** What a rule looks at. `head` is absent at the network level: rules on requests then do not match. */
export interface RbacContext {
  readonly head: RequestHead | undefined;
  readonly info: Pick<
    StreamInfo,
    'downstreamRemoteAddress' | 'downstreamDirectRemoteAddress' | 'downstreamLocalAddress' | 'downstreamLocalPort' | 'requestedServerName' | 'dynamicMetadata'
  >;
  /** A `TLSSocket` on TLS listeners. */
  readonly connection: Socket;
}

type Rule = (ctx: RbacContext) => boolean;

export interface RbacDecision {
  allowed: boolean;
  /** The name of the policy that matched, if one did. */
  policy: string | undefined;
}

export class RbacEngine {
  private readonly action: 'ALLOW' | 'DENY' | 'LOG';
  private readonly policies: readonly { name: string; permissions: readonly Rule[]; principals: readonly Rule[] }[];

  constructor(config: RbacConfig, path: string, errors: ConfigError[]) {
    this.action = config.action ?? 'ALLOW';
    this.policies = Object.entries(config.policies ?? {})
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, policy]) => {
      const at = `${path}.policies["${name}"]`;
      if (policy.condition !== undefined || policy.checked_condition !== undefined) {
        errors.push({ code: 'unsupported_field', path: `${at}.condition`, message: 'RBAC conditions (CEL expressions) are not supported' });
      }
      return {
        name,
        permissions: (policy.permissions ?? []).map((p, i) => compilePermission(p, `${at}.permissions[${i}]`, errors)),
        principals: (policy.principals ?? []).map((p, i) => compilePrincipal(p, `${at}.principals[${i}]`, errors)),
      };
    });
  }

  decide(ctx: RbacContext): RbacDecision {
    let matched: string | undefined;
    // Policies are tried in name order, as Envoy's map iterates, so the one reported is stable.
    for (const policy of this.policies) {
      if (anyOf(policy.permissions, ctx) && anyOf(policy.principals, ctx)) {
        matched = policy.name;
        break;
      }
    }
    switch (this.action) {
      case 'ALLOW':
        return { allowed: matched !== undefined, policy: matched };
      case 'DENY':
        return { allowed: matched === undefined, policy: matched };
      default:
        return { allowed: true, policy: matched };
    }
  }
}

function anyOf(rules: readonly Rule[], ctx: RbacContext): boolean {
  for (let i = 0; i < rules.length; i++) if (rules[i]!(ctx)) return true;
  return false;
}

function allOf(rules: readonly Rule[], ctx: RbacContext): boolean {
  for (let i = 0; i < rules.length; i++) if (!rules[i]!(ctx)) return false;
  return true;
}

const ALWAYS: Rule = () => true;
const NEVER: Rule = () => false;

function compilePermission(config: PermissionConfig, path: string, errors: ConfigError[]): Rule {
  if (config.any === true) return ALWAYS;
  if (config.and_rules !== undefined) {
    const rules = (config.and_rules.rules ?? []).map((r, i) => compilePermission(r, `${path}.and_rules.rules[${i}]`, errors));
    return (ctx) => allOf(rules, ctx);
  }
  if (config.or_rules !== undefined) {
    const rules = (config.or_rules.rules ?? []).map((r, i) => compilePermission(r, `${path}.or_rules.rules[${i}]`, errors));
    return (ctx) => anyOf(rules, ctx);
  }
  if (config.not_rule !== undefined) {
    const rule = compilePermission(config.not_rule, `${path}.not_rule`, errors);
    return (ctx) => !rule(ctx);
  }
  if (config.header !== undefined) return headerRule(config.header, `${path}.header`, errors);
  if (config.url_path !== undefined) return pathRule(config.url_path, `${path}.url_path`, errors);
  if (config.destination_ip !== undefined) {
    const list = cidrBlockList([config.destination_ip]);
    return (ctx) => inBlockList(list, ctx.info.downstreamLocalAddress);
  }
  if (config.destination_port !== undefined) {
    const port = config.destination_port;
    return (ctx) => ctx.info.downstreamLocalPort === port;
  }
  if (config.destination_port_range !== undefined) {
    const { start = 0, end = 0 } = config.destination_port_range;
    return (ctx) => ctx.info.downstreamLocalPort >= start && ctx.info.downstreamLocalPort < end;
  }
  if (config.requested_server_name !== undefined) {
    const matches = compileStringMatcher(config.requested_server_name, `${path}.requested_server_name`, errors);
    return (ctx) => matches(ctx.info.requestedServerName);
  }
  if (config.metadata !== undefined) return metadataRule(config.metadata, `${path}.metadata`, errors);
  return unsupported(config, path, errors, 'permission');
}

function compilePrincipal(config: PrincipalConfig, path: string, errors: ConfigError[]): Rule {
  if (config.any === true) return ALWAYS;
  if (config.and_ids !== undefined) {
    const ids = (config.and_ids.ids ?? []).map((p, i) => compilePrincipal(p, `${path}.and_ids.ids[${i}]`, errors));
    return (ctx) => allOf(ids, ctx);
  }
  if (config.or_ids !== undefined) {
    const ids = (config.or_ids.ids ?? []).map((p, i) => compilePrincipal(p, `${path}.or_ids.ids[${i}]`, errors));
    return (ctx) => anyOf(ids, ctx);
  }
  if (config.not_id !== undefined) {
    const id = compilePrincipal(config.not_id, `${path}.not_id`, errors);
    return (ctx) => !id(ctx);
  }
  if (config.authenticated !== undefined) {
    const name = config.authenticated.principal_name;
    return authenticatedRule(name === undefined ? undefined : compileStringMatcher(name, `${path}.authenticated.principal_name`, errors));
  }
  if (config.direct_remote_ip !== undefined || config.source_ip !== undefined) {
    const list = cidrBlockList([(config.direct_remote_ip ?? config.source_ip)!]);
    return (ctx) => inBlockList(list, ctx.info.downstreamDirectRemoteAddress);
  }
  if (config.remote_ip !== undefined) {
    const list = cidrBlockList([config.remote_ip]);
    return (ctx) => inBlockList(list, ctx.info.downstreamRemoteAddress);
  }
  if (config.header !== undefined) return headerRule(config.header, `${path}.header`, errors);
  if (config.url_path !== undefined) return pathRule(config.url_path, `${path}.url_path`, errors);
  if (config.metadata !== undefined) return metadataRule(config.metadata, `${path}.metadata`, errors);
  return unsupported(config, path, errors, 'principal');
}

function unsupported(config: object, path: string, errors: ConfigError[], what: string): Rule {
  const field = Object.keys(config).find((k) => (config as Record<string, unknown>)[k] !== undefined);
  errors.push({ code: 'unsupported_field', path: field === undefined ? path : `${path}.${field}`, message: `RBAC ${what} ${field ?? '(empty)'} is not supported` });
  return NEVER;
}

function headerRule(config: envoy.config.route.v3.HeaderMatcher, path: string, errors: ConfigError[]): Rule {
  const matches = compileHeaderMatcher(config, path, errors);
  return (ctx) => ctx.head !== undefined && matches(ctx.head);
}

/** `url_path`: the path without its query, as Envoy's PathMatcher sees it. */
function pathRule(config: envoy.type.matcher.v3.PathMatcher, path: string, errors: ConfigError[]): Rule {
  const matches = compileStringMatcher(config.path, `${path}.path`, errors);
  return (ctx) => {
    if (ctx.head === undefined) return false;
    const full = ctx.head.path;
    const q = full.indexOf('?');
    return matches(q < 0 ? full : full.slice(0, q));
  };
}

/**
 * `authenticated`: a verified client certificate; with `principal_name`, its URI SANs, then its DNS SANs, then
 * (without SANs) its subject must match, as Envoy checks them.
 */
function authenticatedRule(name: StringMatchFn | undefined): Rule {
  return (ctx) => {
    const connection = ctx.connection as Partial<TLSSocket>;
    if (typeof connection.getPeerCertificate !== 'function') return false;
    // The listener asks for a client certificate only where it verifies one (an unverified one fails the
    // handshake), so a certificate here is a verified one.
    const cert = connection.getPeerCertificate();
    if (cert === undefined || Object.keys(cert).length === 0) return false;
    if (name === undefined) return true;
    const sans = (cert.subjectaltname ?? '').split(', ').filter((s) => s !== '');
    const uris = sans.filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
    const dns = sans.filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4));
    if (uris.length > 0 || dns.length > 0) return uris.some(name) || dns.some(name);
    const subject = cert.subject === undefined ? '' : Object.entries(cert.subject).map(([k, v]) => `${k}=${String(v)}`).join(',');
    return name(subject);
  };
}

/** A MetadataMatcher on the stream's dynamic metadata (the JWT payload jwt_authn puts there, say). */
function metadataRule(config: envoy.type.matcher.v3.MetadataMatcher, path: string, errors: ConfigError[]): Rule {
  const filter = config.filter ?? '';
  const steps = (config.path ?? []).map((s) => s.key ?? '');
  const invert = config.invert ?? false;
  const matches = compileValueMatcher(config.value, `${path}.value`, errors);
  return (ctx) => {
    let value: unknown = ctx.info.dynamicMetadata?.[filter];
    for (const step of steps) value = value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>)[step] : undefined;
    return matches(value) !== invert;
  };
}

function compileValueMatcher(config: envoy.type.matcher.v3.ValueMatcher | undefined, path: string, errors: ConfigError[]): (value: unknown) => boolean {
  if (config === undefined) {
    errors.push({ code: 'missing_required', path, message: 'a metadata matcher needs a value' });
    return () => false;
  }
  if (config.present_match !== undefined) {
    const present = config.present_match;
    return (value) => (value !== undefined && value !== null) === present;
  }
  if (config.null_match !== undefined) return (value) => value === null || value === undefined;
  if (config.bool_match !== undefined) {
    const want = config.bool_match;
    return (value) => value === want;
  }
  if (config.string_match !== undefined) {
    const matches = compileStringMatcher(config.string_match, `${path}.string_match`, errors);
    return (value) => typeof value === 'string' && matches(value);
  }
  if (config.double_match !== undefined) {
    const { exact, range } = config.double_match;
    return (value) => typeof value === 'number' && (exact !== undefined ? value === exact : range !== undefined && value >= (range.start ?? -Infinity) && value < (range.end ?? Infinity));
  }
  if (config.list_match !== undefined) {
    const one = compileValueMatcher(config.list_match.one_of, `${path}.list_match.one_of`, errors);
    return (value) => Array.isArray(value) && value.some(one);
  }
  errors.push({ code: 'unsupported_field', path, message: 'this value matcher is not supported' });
  return () => false;
}
