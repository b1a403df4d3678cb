/** The listener filters Portico implements, by config type; the listener builds its `listener_filters` from here. */
import { HTTP_INSPECTOR } from './http_inspector/http-inspector.js';
import type { ListenerFilterFactory } from './listener-filter.js';
import { TLS_INSPECTOR } from './tls_inspector/tls-inspector.js';

export const TLS_INSPECTOR_TYPE = 'envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector';

export const LISTENER_FILTERS: ReadonlyMap<string, ListenerFilterFactory> = new Map([
  [TLS_INSPECTOR_TYPE, TLS_INSPECTOR],
  ['envoy.extensions.filters.listener.http_inspector.v3.HttpInspector', HTTP_INSPECTOR],
]);

/** A filter configured by its name alone (no `typed_config`), as Envoy still accepts. */
export function listenerFilterByName(name: string): ListenerFilterFactory | undefined {
  for (const factory of LISTENER_FILTERS.values()) if (factory.name === name) return factory;
  return undefined;
}
