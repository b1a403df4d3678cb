/**
 * Envoy's default tag extraction, for Prometheus: each rule's first capture group is cut out of the stat name and
 * its innermost group becomes a label (`cluster.backend.upstream_rq_200` →
 * `envoy_cluster_upstream_rq{envoy_response_code="200",envoy_cluster_name="backend"}`). The rules and their order
 * are Envoy's well-known tag names, limited to the stats Portico emits.
 */
interface TagRule {
  label: string;
  pattern: RegExp;
}

const ADDRESS = String.raw`(?:(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[[a-fA-F_\d]+\])_\d+)`;

const RULES: TagRule[] = [
  { label: 'envoy_response_code', pattern: /_rq(_(\d{3}))$/d },
  { label: 'envoy_response_code_class', pattern: /_rq_(\d)xx$/d },
  { label: 'envoy_http_user_agent', pattern: /^http(?=\.).*?\.user_agent\.((.*?)\.)\w+?$/d },
  { label: 'envoy_virtual_cluster', pattern: /^vhost(?=\.).*?\.vcluster\.((.*?)\.)\w+?$/d },
  { label: 'envoy_fault_downstream_cluster', pattern: /^http(?=\.).*?\.fault\.((.*?)\.)\w+?$/d },
  { label: 'envoy_ssl_cipher', pattern: /^listener(?=\.).*?\.ssl\.cipher(\.(.*?))$/d },
  { label: 'envoy_ssl_cipher_suite', pattern: /^cluster(?=\.).*?\.ssl\.ciphers(\.(.*?))$/d },
  { label: 'envoy_tcp_prefix', pattern: /^tcp\.((.*?)\.)\w+?$/d },
  { label: 'envoy_ratelimit_prefix', pattern: /^ratelimit\.((.*?)\.)\w+?$/d },
  { label: 'envoy_cluster_name', pattern: /^cluster\.((.*?)\.)/d },
  { label: 'envoy_http_conn_manager_prefix', pattern: /^(?:|listener(?=\.).*?\.)http\.((.*?)\.)/d },
  { label: 'envoy_listener_address', pattern: new RegExp(String.raw`^listener\.((${ADDRESS})\.)`, 'd') },
  { label: 'envoy_virtual_host', pattern: /^vhost\.((.*?)\.)/d },
  { label: 'envoy_worker_id', pattern: /^listener_manager\.((worker_\d+)\.)/d },
];

export interface TaggedName {
  /** The name with every tag cut out (`cluster.upstream_rq`). */
  name: string;
  /** `[label, value]` in extraction order. */
  tags: Array<[string, string]>;
}

export function extractTags(statName: string): TaggedName {
  let name = statName;
  const tags: Array<[string, string]> = [];
  for (const rule of RULES) {
    const match = rule.pattern.exec(name);
    if (match === null || match.indices === undefined) continue;
    const cut = match.indices[1];
    if (cut === undefined) continue;
    const value = match[2] ?? match[1]!;
    tags.push([rule.label, value]);
    name = name.slice(0, cut[0]) + name.slice(cut[1]);
  }
  return { name, tags };
}

/** Envoy's Prometheus metric name: `envoy_` and the tag-free name with anything but `[a-zA-Z0-9_]` as `_`. */
export function prometheusName(taggedName: string): string {
  return `envoy_${taggedName.replace(/[^a-zA-Z0-9_]/g, '_')}`;
}
