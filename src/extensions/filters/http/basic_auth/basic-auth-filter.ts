/**
 * `envoy.filters.http.basic_auth`: lets a request through only with `Authorization: Basic base64(user:password)`
 * matching the htpasswd users (htpasswd.ts) of the filter, or of the most specific `BasicAuthPerRoute`. As Envoy's
 * filter: a refusal is a 401 with `www-authenticate: Basic realm="<scheme>://<host><path>"` (the path cut at 256
 * characters), counted in `basic_auth.denied`; a success counts `basic_auth.allowed` and, with
 * `forward_username_header`, tells the upstream who the user is.
 */
import type { envoy } from '../../../../generated/envoy.js';
import type { ConfigError } from '../../../../config/errors.js';
import { defineStats, type StatScope } from '../../../../stats/store.js';
import {
  type DecoderFilterCallbacks,
  type FilterFactoryContext,
  FilterHeadersStatus,
  type HttpFilterConfig,
  type HttpFilterFactory,
  type ResponseHead,
  type StreamFilter,
} from '../../../../dataplane/http/filter.js';
import type { RequestHead } from '../../../../dataplane/stream-info.js';
import { Htpasswd } from './htpasswd.js';

/** `http.<stat_prefix>.basic_auth.` */
export const BASIC_AUTH_STATS = defineStats({ counters: ['allowed', 'denied'], gauges: [], histograms: [] });
const S = BASIC_AUTH_STATS.c;

/** Envoy's limit on the path in the realm. */
const REALM_PATH_LIMIT = 256;
const BASIC = 'Basic ';
/** Standard base64, padded or not: anything else is not a credential (Node's decoder would skip bad characters). */
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

class BasicAuthFilterConfig implements HttpFilterConfig {
  constructor(
    private readonly users: Htpasswd,
    /** `forward_username_header`, lower-cased; '' when unset. */
    readonly forwardUsernameHeader: string,
    readonly stats: StatScope,
    private readonly context: FilterFactoryContext,
  ) {}

  createFilter(stream: DecoderFilterCallbacks, routeConfig: unknown): StreamFilter {
    return new BasicAuthFilter(this, stream, (routeConfig as Htpasswd | undefined) ?? this.users);
  }

  release(): void {
    this.context.stats.release(this.stats);
  }
}

class BasicAuthFilter implements StreamFilter {
  /** The request was refused: its 401 gets the `www-authenticate` challenge. */
  private denied = false;

  constructor(
    private readonly config: BasicAuthFilterConfig,
    private readonly stream: DecoderFilterCallbacks,
    private readonly users: Htpasswd,
  ) {}

  decodeHeaders(head: RequestHead): FilterHeadersStatus {
    const authorization = head.headers.authorization;
    if (authorization === undefined) return this.deny('User authentication failed. Missing username and password.', 'no_credential_for_basic_auth');
    if (!authorization.startsWith(BASIC)) {
      return this.deny("User authentication failed. Expected 'Basic' authentication scheme.", 'invalid_scheme_for_basic_auth');
    }
    const token = authorization.slice(BASIC.length);
    const decoded = BASE64.test(token) ? Buffer.from(token, 'base64').toString('utf8') : '';
    const colon = decoded.indexOf(':');
    if (colon < 0) return this.deny('User authentication failed. Invalid basic credential format.', 'invalid_format_for_basic_auth');
    const user = decoded.slice(0, colon);
    if (!this.users.verify(user, decoded.slice(colon + 1))) {
      return this.deny('User authentication failed. Invalid username/password combination.', 'invalid_credential_for_basic_auth');
    }
    if (this.config.forwardUsernameHeader !== '') head.headers[this.config.forwardUsernameHeader] = user;
    this.config.stats.counters[S.allowed]++;
    return FilterHeadersStatus.Continue;
  }

  encodeHeaders(response: ResponseHead): FilterHeadersStatus {
    if (this.denied) {
      const head = this.stream.head;
      const path = head.path.length > REALM_PATH_LIMIT ? head.path.slice(0, REALM_PATH_LIMIT) : head.path;
      response.headers['www-authenticate'] = `Basic realm="${head.scheme}://${head.authority}${path}"`;
    }
    return FilterHeadersStatus.Continue;
  }

  private deny(body: string, details: string): FilterHeadersStatus {
    this.config.stats.counters[S.denied]++;
    this.denied = true;
    this.stream.sendLocalReply(401, body, 0, details);
    return FilterHeadersStatus.StopIteration;
  }
}

export const BASIC_AUTH_FILTER_FACTORY: HttpFilterFactory = {
  name: 'envoy.filters.http.basic_auth',
  configType: 'envoy.extensions.filters.http.basic_auth.v3.BasicAuth',
  routeConfigType: 'envoy.extensions.filters.http.basic_auth.v3.BasicAuthPerRoute',

  createFilterConfig(config: unknown, context: FilterFactoryContext, path: string, errors: ConfigError[]): HttpFilterConfig {
    const basicAuth = config as envoy.extensions.filters.http.basic_auth.v3.BasicAuth;
    return new BasicAuthFilterConfig(
      Htpasswd.compile(basicAuth.users, path, errors),
      (basicAuth.forward_username_header ?? '').toLowerCase(),
      context.stats.scope(BASIC_AUTH_STATS, `http.${context.statPrefix}.basic_auth.`),
      context,
    );
  },

  compileRouteConfig(config: unknown, _runtime, path: string, errors: ConfigError[]): Htpasswd {
    return Htpasswd.compile((config as envoy.extensions.filters.http.basic_auth.v3.BasicAuthPerRoute).users, path, errors);
  },
};
