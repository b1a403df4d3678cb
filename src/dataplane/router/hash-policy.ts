import type { envoy } from '../../generated/envoy.js';
import type { ConfigError } from '../../config/errors.js';
import { compileRegexRewrite } from '../matching/regex.js';
import type { RequestHead, StreamInfo } from '../stream-info.js';
import { Hash64, xxHash64 } from '../upstream/lb/hash.js';

type HashPolicyConfig = envoy.config.route.v3.RouteAction.HashPolicy;

/** The request a hash is computed for. */
export interface HashRequest {
  readonly head: RequestHead;
  readonly info: StreamInfo;
  /** Adds a `Set-Cookie` value to the upstream response sent downstream (a generated hash cookie). */
  addResponseCookie(setCookie: string): void;
}

interface HashMethod {
  readonly terminal: boolean;
  /** Writes this method's hash into `out`; false when the request has nothing to hash. */
  evaluate(request: HashRequest, out: Hash64): boolean;
}

/** One method's hash before it is combined; requests are handled one at a time, so one is enough. */
const scratch = new Hash64();

/**
 * A route's `hash_policy`, as Envoy's HashPolicyImpl: the methods' hashes are combined in order
 * (`rotl(hash, 1) ^ next`); a `terminal` method that leaves a hash stops the evaluation.
 */
export class HashPolicy {
  constructor(private readonly methods: readonly HashMethod[]) {}

  evaluate(request: HashRequest, out: Hash64): boolean {
    let found = false;
    for (const method of this.methods) {
      if (method.evaluate(request, scratch)) {
        if (found) out.combine(scratch.hi, scratch.lo);
        else out.set(scratch.hi, scratch.lo);
        found = true;
      }
      if (method.terminal && found) break;
    }
    return found;
  }
}

export function compileHashPolicy(policies: readonly HashPolicyConfig[] | undefined, path: string, errors: ConfigError[]): HashPolicy | undefined {
  if (policies === undefined || policies.length === 0) return undefined;
  const methods: HashMethod[] = [];
  policies.forEach((policy, i) => {
    const itemPath = `${path}[${i}]`;
    const terminal = policy.terminal ?? false;
    if (policy.header !== undefined) {
      const rewrite = policy.header.regex_rewrite;
      methods.push(
        new HeaderHash(
          policy.header.header_name?.toLowerCase() ?? '',
          terminal,
          rewrite ? compileRegexRewrite(rewrite, `${itemPath}.header.regex_rewrite`, errors) : undefined,
        ),
      );
    } else if (policy.cookie !== undefined) {
      methods.push(new CookieHash(policy.cookie, terminal));
    } else if (policy.connection_properties !== undefined) {
      // Envoy adds no method at all for `source_ip: false`.
      if (policy.connection_properties.source_ip) methods.push(new SourceIpHash(terminal));
    } else if (policy.query_parameter !== undefined) {
      methods.push(new QueryParameterHash(policy.query_parameter.name ?? '', terminal));
    } else {
      errors.push({ code: 'missing_required', path: itemPath, message: 'a hash policy needs header, cookie, connection_properties or query_parameter' });
    }
  });
  return new HashPolicy(methods);
}

/** `header`: the header's value (pseudo-headers `:authority`, `:path`, `:method`, `:scheme` too). */
class HeaderHash implements HashMethod {
  constructor(
    private readonly name: string,
    readonly terminal: boolean,
    private readonly rewrite: ((value: string) => string) | undefined,
  ) {}

  evaluate(request: HashRequest, out: Hash64): boolean {
    let value: string | string[] | undefined;
    const head = request.head;
    switch (this.name) {
      case ':authority':
        value = head.authority;
        break;
      case ':path':
        value = head.path;
        break;
      case ':method':
        value = head.method;
        break;
      case ':scheme':
        value = head.scheme;
        break;
      default:
        value = head.headers[this.name];
    }
    if (value === undefined) return false;
    if (typeof value === 'string') {
      xxHash64(this.rewrite ? this.rewrite(value) : value, out);
      return true;
    }
    // Repeated values Node keeps apart: hashed sorted and concatenated, so their order does not matter.
    const values = value.map((v) => (this.rewrite ? this.rewrite(v) : v)).sort();
    xxHash64(values.join(''), out);
    return true;
  }
}

/**
 * `cookie`: the named cookie's value (quotes stripped). Absent or empty with `ttl` set, Envoy generates one
 * from the connection's addresses, sends it with `Set-Cookie` (Max-Age from the ttl unless 0, Path, the
 * attributes, HttpOnly) and hashes it.
 */
class CookieHash implements HashMethod {
  readonly name: string;
  /** Everything of the Set-Cookie value after the cookie's own value. */
  private readonly suffix: string | undefined;

  constructor(
    config: envoy.config.route.v3.RouteAction.HashPolicy.Cookie,
    readonly terminal: boolean,
  ) {
    this.name = config.name ?? '';
    if (config.ttl === undefined) return;
    const maxAge = Math.floor(config.ttl / 1000);
    let suffix = '"';
    if (maxAge !== 0) suffix += `; Max-Age=${maxAge}`;
    if (config.path) suffix += `; Path=${config.path}`;
    for (const attribute of config.attributes ?? []) {
      suffix += attribute.value ? `; ${attribute.name ?? ''}=${attribute.value}` : `; ${attribute.name ?? ''}`;
    }
    this.suffix = `${suffix}; HttpOnly`;
  }

  evaluate(request: HashRequest, out: Hash64): boolean {
    const header = request.head.headers.cookie;
    if (header !== undefined && this.hashCookie(header, out)) return true;
    if (this.suffix === undefined) return false;
    const info = request.info;
    const connection = hostPort(info.downstreamRemoteAddress, info.downstreamRemotePort) + hostPort(info.downstreamLocalAddress, info.downstreamLocalPort);
    const value = xxHash64(connection, out).toHex();
    request.addResponseCookie(`${this.name}="${value}${this.suffix}`);
    xxHash64(value, out);
    return true;
  }

  /** Envoy's parseCookieValue over `name=value` pairs separated by `;`, hashing the value in place. */
  private hashCookie(header: string, out: Hash64): boolean {
    const name = this.name;
    let start = 0;
    while (start <= header.length) {
      let end = header.indexOf(';', start);
      if (end < 0) end = header.length;
      let keyStart = start;
      while (keyStart < end && header.charCodeAt(keyStart) === 32) keyStart++;
      if (header.startsWith(name, keyStart) && header.charCodeAt(keyStart + name.length) === 61 /* = */) {
        let valueStart = keyStart + name.length + 1;
        let valueEnd = end;
        if (valueEnd - valueStart >= 2 && header.charCodeAt(valueStart) === 34 && header.charCodeAt(valueEnd - 1) === 34) {
          valueStart++;
          valueEnd--;
        }
        // An empty value counts as no cookie.
        if (valueEnd === valueStart) return false;
        xxHash64(header, out, valueStart, valueEnd);
        return true;
      }
      start = end + 1;
    }
    return false;
  }
}

function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** `connection_properties.source_ip`: the client address (after `x-forwarded-for` handling). */
class SourceIpHash implements HashMethod {
  constructor(readonly terminal: boolean) {}

  evaluate(request: HashRequest, out: Hash64): boolean {
    const address = request.info.downstreamRemoteAddress;
    if (address === '') return false;
    xxHash64(address, out);
    return true;
  }
}

/** `query_parameter`: the raw (undecoded) value of the first parameter with that name; `?a` has value "". */
class QueryParameterHash implements HashMethod {
  constructor(
    private readonly name: string,
    readonly terminal: boolean,
  ) {}

  evaluate(request: HashRequest, out: Hash64): boolean {
    const path = request.head.path;
    const name = this.name;
    let start = path.indexOf('?');
    if (start < 0) return false;
    start++;
    while (start < path.length) {
      let end = path.indexOf('&', start);
      if (end < 0) end = path.length;
      const nameEnd = start + name.length;
      if (path.startsWith(name, start) && (nameEnd === end || path.charCodeAt(nameEnd) === 61 /* = */)) {
        xxHash64(path, out, nameEnd === end ? end : nameEnd + 1, end);
        return true;
      }
      start = end + 1;
    }
    return false;
  }
}
