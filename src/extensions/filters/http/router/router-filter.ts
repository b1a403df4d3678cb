/**
 * `envoy.filters.http.router`: the terminal HTTP filter. Its work (forwarding, retries, timeouts, mirrors) is the
 * data plane's own router (src/dataplane/router/router.ts); this is the extension that puts it in a chain.
 */
import type { envoy } from '../../../../generated/envoy.js';
import type { FilterFactoryContext, HttpFilterConfig, HttpFilterFactory } from '../../../../dataplane/http/filter.js';
import type { RouterFilterCallbacks } from '../../../../dataplane/http/connection-manager.js';
import { Router, RouterConfig } from '../../../../dataplane/router/router.js';

export const ROUTER_FILTER_FACTORY: HttpFilterFactory = {
  name: 'envoy.filters.http.router',
  configType: 'envoy.extensions.filters.http.router.v3.Router',
  terminal: true,

  createFilterConfig(config: unknown, context: FilterFactoryContext): HttpFilterConfig {
    const compiled = new RouterConfig(config as envoy.extensions.filters.http.router.v3.Router, context);
    return {
      // The connection manager hands its terminal filter the router's callbacks.
      createFilter: (callbacks) => new Router(compiled, callbacks as unknown as RouterFilterCallbacks),
      release: () => compiled.release(),
    };
  },
};
