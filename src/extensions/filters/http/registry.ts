/**
 * Every HTTP filter extension Portico implements, in one place; the program hands this registry to the data plane
 * where it is composed, through EXTENSIONS (src/extensions/registry.ts). A filter's config types must also be listed as
 * supported extensions (src/config/extensions.ts) and their fields in src/config/support.ts.
 */
import { HttpFilterRegistry } from '../../../dataplane/http/filter.js';
import { CORS_FILTER_FACTORY } from './cors/cors-filter.js';
import { GRPC_STATS_FILTER_FACTORY } from './grpc_stats/grpc-stats-filter.js';
import { GRPC_WEB_FILTER_FACTORY } from './grpc_web/grpc-web-filter.js';
import { LOCAL_RATE_LIMIT_FILTER_FACTORY } from './local_ratelimit/local-ratelimit-filter.js';
import { ROUTER_FILTER_FACTORY } from './router/router-filter.js';

export const HTTP_FILTERS = new HttpFilterRegistry([CORS_FILTER_FACTORY, GRPC_STATS_FILTER_FACTORY, GRPC_WEB_FILTER_FACTORY, LOCAL_RATE_LIMIT_FILTER_FACTORY, ROUTER_FILTER_FACTORY]);
