/**
 * `envoy.filters.http.basic_auth`: HTTP Basic authentication against htpasswd users (`{SHA}` hashes, as Envoy
 * accepts them), inline or from a file; a route's BasicAuthPerRoute replaces the users. A refused request gets
 * 401 with `www-authenticate: Basic realm="http://<host>"`.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { envoy } from '../../../../generated/envoy.js';
import type { ConfigError } from '../../../../config/errors.js';
import {
  type DecoderFilterCallbacks,
  type EncoderFilterCallbacks,
  type FilterFactoryContext,
  FilterHeadersStatus,
  type HttpFilterConfig,
  type HttpFilterFactory,
  type ResponseHead,
  type StreamFilter,
} from '../../../../dataplane/http/filter.js';
import { readDataSource } from '../../../../dataplane/router/route-action.js';
import type { Runtime } from '../../../../dataplane/runtime/runtime.js';
import { defineStats, type StatScope } from '../../../../stats/store.js';

/** `http.<stat_prefix>.basic_auth.` */
export const BASIC_AUTH_STATS = defineStats({ counters: ['allowed', 'denied'], gauges: [], histograms: [] });
const S = BASIC_AUTH_STATS.c;

/** User name → SHA-1 of the password. */
type Users = ReadonlyMap<string, Buffer>;
const UNKNOWN_USER = Buffer.alloc(20);

function compileUsers(source: envoy.config.core.v3.DataSource | undefined, path: string, errors: ConfigError[]): Users {
  const users = new Map<string, Buffer>();
  if (source === undefined) {
    errors.push({ code: 'missing_required', path, message: 'basic_auth needs users' });
    return users;
  }
  const text = readDataSource(source, path, errors)?.toString() ?? '';
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    const name = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    if (colon <= 0 || !hash.startsWith('{SHA}')) {
      errors.push({ code: 'invalid_value', path: `${path} line ${i + 1}`, message: 'htpasswd lines must be "user:{SHA}<base64 SHA-1>"; other hash formats are not supported' });
      return;
    }
    const digest = Buffer.from(hash.slice(5), 'base64');
    if (digest.length !== 20) errors.push({ code: 'invalid_value', path: `${path} line ${i + 1}`, message: `the {SHA} hash of "${name}" is not a base64 SHA-1` });
    else if (users.has(name)) errors.push({ code: 'duplicate_name', path: `${path} line ${i + 1}`, message: `user "${name}" appears twice` });
    else users.set(name, digest);
  });
  return users;
}

class BasicAuthFilterConfig implements HttpFilterConfig {
  constructor(
    private readonly users: Users,
    readonly forwardUsernameHeader: string | undefined,
    readonly stats: StatScope,
    private readonly releaseStats: () => void,
  ) {}

  createFilter(callbacks: DecoderFilterCallbacks & EncoderFilterCallbacks, routeConfig: unknown): StreamFilter {
    return new BasicAuthFilter(this, (routeConfig as Users | undefined) ?? this.users, callbacks);
  }

  release(): void {
    this.releaseStats();
  }
}

class BasicAuthFilter implements StreamFilter {
  private realm: string | undefined;

  constructor(
    private readonly config: BasicAuthFilterConfig,
    private readonly users: Users,
    private readonly callbacks: DecoderFilterCallbacks & EncoderFilterCallbacks,
  ) {}

  decodeHeaders(): FilterHeadersStatus {
    const head = this.callbacks.head;
    const header = head.headers.authorization;
    if (header === undefined || !/^basic /i.test(header)) return this.deny('User authentication failed. Missing username and password.');
    const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString();
    const colon = decoded.indexOf(':');
    const user = colon < 0 ? '' : decoded.slice(0, colon);
    const expected = this.users.get(user);
    const given = createHash('sha1').update(colon < 0 ? '' : decoded.slice(colon + 1)).digest();
    // Compared in constant time, against a stand-in for an unknown user, so timing tells nothing.
    if (!timingSafeEqual(expected ?? UNKNOWN_USER, given) || expected === undefined) return this.deny('User authentication failed. Invalid username/password combination.');
    this.config.stats.counters[S.allowed]++;
    if (this.config.forwardUsernameHeader !== undefined) head.headers[this.config.forwardUsernameHeader] = user;
    return FilterHeadersStatus.Continue;
  }

  private deny(message: string): FilterHeadersStatus {
    this.config.stats.counters[S.denied]++;
    this.realm = `Basic realm="http://${this.callbacks.head.authority}"`;
    this.callbacks.sendLocalReply(401, message, 0, 'invalid_credential_for_basic_auth');
    return FilterHeadersStatus.StopIteration;
  }

  // The refusal is a local reply, which passes here: it gets its www-authenticate this way.
  encodeHeaders(response: ResponseHead): FilterHeadersStatus {
    if (this.realm !== undefined) response.headers['www-authenticate'] = this.realm;
    return FilterHeadersStatus.Continue;
  }
}

export const BASIC_AUTH_FILTER_FACTORY: HttpFilterFactory = {
  name: 'envoy.filters.http.basic_auth',
  configType: 'envoy.extensions.filters.http.basic_auth.v3.BasicAuth',
  routeConfigType: 'envoy.extensions.filters.http.basic_auth.v3.BasicAuthPerRoute',

  createFilterConfig(config: unknown, context: FilterFactoryContext, path: string, errors: ConfigError[]): HttpFilterConfig {
    const basic = config as envoy.extensions.filters.http.basic_auth.v3.BasicAuth;
    const stats = context.stats.scope(BASIC_AUTH_STATS, `http.${context.statPrefix}.basic_auth.`);
    return new BasicAuthFilterConfig(compileUsers(basic.users, `${path}.users`, errors), basic.forward_username_header?.toLowerCase() || undefined, stats, () => context.stats.release(stats));
  },

  compileRouteConfig(config: unknown, _runtime: Runtime, path: string, errors: ConfigError[]): Users {
    return compileUsers((config as envoy.extensions.filters.http.basic_auth.v3.BasicAuthPerRoute).users, `${path}.users`, errors);
  },
};
