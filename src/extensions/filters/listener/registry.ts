/**
 * The listener filters Portico implements, by config type; the program hands this registry to the data plane
 * where it is composed, with the HTTP filters' (src/extensions/registry.ts).
 */
import { ListenerFilterRegistry } from '../../../dataplane/listener/listener-filter.js';
import { HTTP_INSPECTOR } from './http_inspector/http-inspector.js';
import { TLS_INSPECTOR } from './tls_inspector/tls-inspector.js';

const TLS_INSPECTOR_TYPE = 'envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector';

export const LISTENER_FILTERS = new ListenerFilterRegistry(
  new Map([
    [TLS_INSPECTOR_TYPE, TLS_INSPECTOR],
    ['envoy.extensions.filters.listener.http_inspector.v3.HttpInspector', HTTP_INSPECTOR],
  ]),
  TLS_INSPECTOR,
  TLS_INSPECTOR_TYPE,
);
