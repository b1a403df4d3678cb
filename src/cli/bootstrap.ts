/**
 * `portico bootstrap`: the bootstrap of a data plane that `portico start`'s control plane configures over xDS, for
 * `portico run -c` (or for Envoy itself: it is plain Envoy v3).
 */
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import YAML from 'yaml';
import { number } from './start.js';

const OPTIONS = {
  node: { type: 'string', default: 'portico-data-plane' },
  cluster: { type: 'string', default: 'portico' },
  'xds-server': { type: 'string', default: '127.0.0.1:18000' },
  delta: { type: 'boolean', default: false },
  'admin-port': { type: 'string', default: '9901' },
  'listener-port': { type: 'string' },
  format: { type: 'string', default: 'yaml' },
} as const;

export const BOOTSTRAP_USAGE = `Options of bootstrap (docs/xds.md):
      --node NAME              node.id (default portico-data-plane); the control plane lists nodes by it
      --cluster NAME           node.cluster (default portico)
      --xds-server HOST:PORT   the control plane's xDS server (default 127.0.0.1:18000)
      --delta                  incremental xDS (DELTA_GRPC) instead of state of the world
      --admin-port N           the data plane's admin port (default 9901)
      --listener-port N        serve the listeners on this port instead (node metadata listener_port), for
                               several data planes on one machine
      --format yaml|json
`;

export function bootstrapDocument(values: { node: string; cluster: string; server: string; delta: boolean; adminPort: number; listenerPort?: number }): Record<string, unknown> {
  const colon = values.server.lastIndexOf(':');
  const host = values.server.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(values.server.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`invalid --xds-server "${values.server}" (HOST:PORT)`);
  return {
    node: { id: values.node, cluster: values.cluster, ...(values.listenerPort !== undefined ? { metadata: { listener_port: values.listenerPort } } : {}) },
    dynamic_resources: {
      ads_config: { api_type: values.delta ? 'DELTA_GRPC' : 'GRPC', transport_api_version: 'V3', grpc_services: [{ envoy_grpc: { cluster_name: 'xds_cluster' } }] },
      cds_config: { ads: {}, resource_api_version: 'V3' },
      lds_config: { ads: {}, resource_api_version: 'V3' },
    },
    static_resources: {
      clusters: [
        {
          name: 'xds_cluster',
          type: isIP(host) ? 'STATIC' : 'STRICT_DNS',
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
          load_assignment: { cluster_name: 'xds_cluster', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: host, port_value: port } } } }] }] },
        },
      ],
    },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: values.adminPort } } },
  };
}

export function bootstrapCommand(argv: string[]): number {
  const { values } = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false });
  if (values.format !== 'yaml' && values.format !== 'json') throw new Error(`invalid --format "${values.format}" (yaml or json)`);
  const document = bootstrapDocument({
    node: values.node,
    cluster: values.cluster,
    server: values['xds-server'],
    delta: values.delta,
    adminPort: number(values, 'admin-port', 0, 65535),
    listenerPort: values['listener-port'] === undefined ? undefined : number(values, 'listener-port', 1, 65535),
  });
  process.stdout.write(values.format === 'json' ? `${JSON.stringify(document, null, 2)}\n` : YAML.stringify(document));
  return 0;
}
