/**
 * `envoy.filters.http.rbac`: allows or denies each request by its `rules` (403 `RBAC: access denied`), after
 * evaluating its `shadow_rules`, which only count and record their result in dynamic metadata
 * (`envoy.filters.http.rbac`: `shadow_effective_policy_id`, `shadow_engine_result`). A route's `RBACPerRoute`
 * replaces both rule sets for that route (an empty one lets every request through); the stats stay the
 * filter's. The policy engine is shared with the network filter (src/extensions/filters/common/rbac/).
 */
import type { Socket } from 'node:net';
import type { envoy } from '../../../../generated/envoy.js';
import { childPath, type ConfigError } from '../../../../config/errors.js';
import {
  type DecoderFilterCallbacks,
  type FilterFactoryContext,
  FilterHeadersStatus,
  type HttpFilterConfig,
  type HttpFilterFactory,
  type StreamFilter,
} from '../../../../dataplane/http/filter.js';
import type { Runtime } from '../../../../dataplane/runtime/runtime.js';
import type { RequestHead, StreamInfo } from '../../../../dataplane/stream-info.js';
import type { RbacSubject } from '../../common/rbac/engine.js';
import { RbacEngines, RbacReporter } from '../../common/rbac/rbac-config.js';

const NAME = 'envoy.filters.http.rbac';
type RbacConfig = envoy.extensions.filters.http.rbac.v3.RBAC;

class RbacFilterConfig implements HttpFilterConfig {
  constructor(
    private readonly engines: RbacEngines,
    private readonly reporter: RbacReporter,
  ) {}

  createFilter(callbacks: DecoderFilterCallbacks, routeConfig: unknown): StreamFilter | undefined {
    const engines = (routeConfig as RbacEngines | undefined) ?? this.engines;
    if (engines.enforced === undefined && engines.shadow === undefined) return undefined;
    return new RbacFilter(engines, this.reporter, callbacks);
  }

  release(): void {
    this.reporter.release();
  }
}

/** One request: the filter is also what the policies are evaluated against. */
class RbacFilter implements StreamFilter, RbacSubject {
  readonly info: StreamInfo;
  readonly connection: Socket;
  head: RequestHead | undefined;

  constructor(
    private readonly engines: RbacEngines,
    private readonly reporter: RbacReporter,
    private readonly callbacks: DecoderFilterCallbacks,
  ) {
    this.info = callbacks.info;
    this.connection = callbacks.connection;
  }

  decodeHeaders(head: RequestHead): FilterHeadersStatus {
    this.head = head;
    this.reporter.shadow(this.engines, this);
    const denied = this.reporter.enforce(this.engines, this);
    if (denied === undefined) return FilterHeadersStatus.Continue;
    this.callbacks.sendLocalReply(403, 'RBAC: access denied', 0, denied);
    return FilterHeadersStatus.StopIteration;
  }
}

export const RBAC_FILTER_FACTORY: HttpFilterFactory = {
  name: NAME,
  configType: 'envoy.extensions.filters.http.rbac.v3.RBAC',
  routeConfigType: 'envoy.extensions.filters.http.rbac.v3.RBACPerRoute',

  createFilterConfig(config: unknown, context: FilterFactoryContext, path: string, errors: ConfigError[]): HttpFilterConfig {
    const c = config as RbacConfig;
    const reporter = new RbacReporter(context.stats, `http.${context.statPrefix}.`, c.rules_stat_prefix ?? '', c.shadow_rules_stat_prefix ?? '', NAME);
    return new RbacFilterConfig(new RbacEngines(c, path, errors), reporter);
  },

  compileRouteConfig(config: unknown, _runtime: Runtime, path: string, errors: ConfigError[]): RbacEngines {
    // The xDS matcher tree (`matcher`, `shadow_matcher`) is refused by name when the configuration is checked.
    const rbac = (config as envoy.extensions.filters.http.rbac.v3.RBACPerRoute).rbac ?? {};
    return new RbacEngines(rbac, childPath(path, 'rbac'), errors);
  },
};
