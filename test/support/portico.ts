/**
 * Starts Portico's data plane in the test process from a bootstrap written as YAML, with listeners on
 * ephemeral ports, and offers the URL of each listener.
 */
import { type Bootstrap, checkBootstrap, parseDocument } from '../../src/config/load.js';
import { type ConfigError, formatConfigErrors } from '../../src/config/errors.js';
import { DataPlane, type DataPlaneOptions } from '../../src/dataplane/data-plane.js';
import { createLogger } from '../../src/util/logger.js';
import { EXTENSIONS } from '../../src/extensions/registry.js';

export interface RunningPortico {
  plane: DataPlane;
  /** Port of the listener at that index of static_resources.listeners. */
  port(index?: number): number;
  /** `http://127.0.0.1:<port>` of a listener. */
  url(index?: number): string;
  close(): Promise<void>;
}

/** Decodes and checks a bootstrap given as YAML; returns every error instead of throwing. */
export function checkYaml(yaml: string): ConfigError[] {
  const errors: ConfigError[] = [];
  const json = parseDocument(yaml, 'test.yaml', errors);
  if (errors.length) return errors;
  return checkBootstrap(json).errors;
}

/**
 * Access log files are flushed this often in tests (Portico's default is Envoy's 10 s), so that a test reading
 * one polls for tens of milliseconds, not seconds.
 */
export const TEST_FILE_FLUSH_INTERVAL_MS = 50;

/** Decodes and checks a bootstrap given as YAML (or JSON); throws with every problem. */
export function parseBootstrap(yaml: string): Bootstrap {
  const errors: ConfigError[] = [];
  const json = parseDocument(yaml, 'test.yaml', errors);
  const checked = checkBootstrap(json);
  errors.push(...checked.errors);
  if (errors.length) throw new Error(`invalid test configuration:\n${formatConfigErrors(errors)}`);
  return checked.bootstrap;
}

export async function startPortico(yaml: string, options: Partial<DataPlaneOptions> = {}): Promise<RunningPortico> {
  const plane = await DataPlane.start(parseBootstrap(yaml), createLogger('error'), {
    fileFlushIntervalMs: TEST_FILE_FLUSH_INTERVAL_MS,
    ...EXTENSIONS,
    ...options,
  });
  const port = (index = 0): number => {
    const bound = plane.listeners[index]?.boundAddress();
    if (!bound) throw new Error(`no listener ${index}`);
    return bound.port;
  };
  return { plane, port, url: (index = 0) => `http://127.0.0.1:${port(index)}`, close: () => plane.close(0) };
}

/** A counter's or gauge's current value in a running data plane's stats; undefined when there is no such stat. */
export function stat(gw: RunningPortico, name: string): number | undefined {
  const snapshot = gw.plane.stats.snapshot();
  return [...snapshot.counters, ...snapshot.gauges].find(([n]) => n === name)?.[1];
}

/** A one-listener bootstrap routing everything under `routes` to clusters, for compact tests. */
export function simpleBootstrap(options: {
  routes: string;
  clusters: string;
  hcmExtra?: string;
  routeConfigExtra?: string;
  domains?: string;
  /** Listener port; 0 (the default) picks a free one. */
  listenerPort?: number;
  /** Adds an admin endpoint on this port. */
  adminPort?: number;
  /** YAML list items: HTTP filters before the router. */
  httpFilters?: string;
}): string {
  const admin = options.adminPort === undefined ? '' : `admin: { address: { socket_address: { address: 127.0.0.1, port_value: ${options.adminPort} } } }`;
  return `${admin}
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: ${options.listenerPort ?? 0} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
${indent(options.hcmExtra ?? '', 10)}
          route_config:
            name: local_route
${indent(options.routeConfigExtra ?? '', 12)}
            virtual_hosts:
            - name: backend
              domains: ${options.domains ?? '["*"]'}
              routes:
${indent(options.routes, 14)}
          http_filters:
${indent(options.httpFilters ?? '', 10)}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
${indent(options.clusters, 2)}
`;
}

/** A STATIC cluster on loopback ports. */
export function staticCluster(name: string, ...ports: number[]): string {
  const endpoints = ports
    .map((port) => `      - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${port} } } }`)
    .join('\n');
  return `- name: ${name}
  connect_timeout: 1s
  load_assignment:
    cluster_name: ${name}
    endpoints:
    - lb_endpoints:
${endpoints || '      []'}
`;
}

/** A STATIC cluster on loopback ports that originates TLS (an empty UpstreamTlsContext: no verification). */
export function tlsCluster(name: string, ...ports: number[]): string {
  return staticCluster(name, ...ports).replace(
    '  load_assignment:',
    `  transport_socket:
    name: envoy.transport_sockets.tls
    typed_config: { "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext }
  load_assignment:`,
  );
}

/** A counter's or gauge's value by its full name; undefined when no such stat exists. */
export function statValue(gw: RunningPortico, name: string): number | undefined {
  const snapshot = gw.plane.stats.snapshot();
  return [...snapshot.counters, ...snapshot.gauges].find(([n]) => n === name)?.[1];
}

function indent(text: string, spaces: number): string {
  const pad = ' '.repeat(spaces);
  return text
    .split('\n')
    .map((line) => (line.trim() === '' ? '' : pad + line))
    .join('\n');
}

export type Json = Record<string, unknown>;

/**
 * A plain-HTTP listener on a free port whose connection manager serves `routeConfig` (JSON form), with
 * `httpFilters` before the router.
 */
export function httpListener(routeConfig: Json, hcmExtra: Json = {}, httpFilters: Json[] = []): Json {
  return {
    address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
              stat_prefix: 'ingress_http',
              ...hcmExtra,
              route_config: routeConfig,
              http_filters: [
                ...httpFilters,
                {
                  name: 'envoy.filters.http.router',
                  typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
                },
              ],
            },
          },
        ],
      },
    ],
  };
}
