/**
 * The non-terminal network filters Portico implements (the terminal ones, http_connection_manager and tcp_proxy,
 * are the data plane's own); the program hands this registry to the data plane with the others
 * (src/extensions/registry.ts). A filter's config type must also be listed in src/config/extensions.ts and its
 * fields in src/config/support.ts.
 */
import { NetworkFilterRegistry } from '../../../dataplane/listener/network-filter.js';
import { NETWORK_LOCAL_RATELIMIT_FILTER_FACTORY } from './local_ratelimit/local-ratelimit-filter.js';
import { NETWORK_RBAC_FILTER_FACTORY } from './rbac/rbac-filter.js';

export const NETWORK_FILTERS = new NetworkFilterRegistry([NETWORK_LOCAL_RATELIMIT_FILTER_FACTORY, NETWORK_RBAC_FILTER_FACTORY]);
