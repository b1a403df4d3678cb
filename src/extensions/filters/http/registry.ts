/**
 * Every HTTP filter extension Portico implements, in one place; the program hands this registry to the data plane
 * where it is composed, through EXTENSIONS (src/extensions/registry.ts). A filter's config types must also be listed as
 * supported extensions (src/config/extensions.ts) and their fields in src/config/support.ts.
 */
import { HttpFilterRegistry } from '../../../dataplane/http/filter.js';
import { API_KEY_AUTH_FILTER_FACTORY } from './api_key_auth/api-key-auth-filter.js';
import { BASIC_AUTH_FILTER_FACTORY } from './basic_auth/basic-auth-filter.js';
import { CORS_FILTER_FACTORY } from './cors/cors-filter.js';
import { EXT_AUTHZ_FILTER_FACTORY } from './ext_authz/ext-authz-filter.js';
import { GRPC_STATS_FILTER_FACTORY } from './grpc_stats/grpc-stats-filter.js';
import { GRPC_WEB_FILTER_FACTORY } from './grpc_web/grpc-web-filter.js';
import { JWT_AUTHN_FILTER_FACTORY } from './jwt_authn/jwt-authn-filter.js';
import { LOCAL_RATELIMIT_FILTER_FACTORY } from './local_ratelimit/local-ratelimit-filter.js';
import { RATELIMIT_FILTER_FACTORY } from './ratelimit/ratelimit-filter.js';
import { RBAC_FILTER_FACTORY } from './rbac/rbac-filter.js';
import { ROUTER_FILTER_FACTORY } from './router/router-filter.js';

export const HTTP_FILTERS = new HttpFilterRegistry([
  API_KEY_AUTH_FILTER_FACTORY,
  BASIC_AUTH_FILTER_FACTORY,
  CORS_FILTER_FACTORY,
  EXT_AUTHZ_FILTER_FACTORY, GRPC_STATS_FILTER_FACTORY, GRPC_WEB_FILTER_FACTORY, JWT_AUTHN_FILTER_FACTORY, LOCAL_RATELIMIT_FILTER_FACTORY, RATELIMIT_FILTER_FACTORY, RBAC_FILTER_FACTORY, ROUTER_FILTER_FACTORY]);
