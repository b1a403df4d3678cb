/** `/clusters` in Envoy's text and JSON layouts (`source/server/admin/clusters_handler.cc`). */
import type { ClusterStatus, HostStatus } from '../dataplane/status.js';
import { HOST_STATS } from '../dataplane/upstream/stats.js';

const HOST_STAT_NAMES = [...HOST_STATS.counterNames, ...HOST_STATS.gaugeNames].sort();

function hostAddress(host: HostStatus): string {
  return host.address.includes(':') ? `[${host.address}]:${host.port}` : `${host.address}:${host.port}`;
}

function healthFlags(host: HostStatus): string {
  return host.healthy ? 'healthy' : '/failed_eds_health';
}

export function renderClustersText(clusters: ClusterStatus[]): string {
  const lines: string[] = [];
  for (const cluster of clusters) {
    const name = cluster.name;
    lines.push(`${name}::observability_name::${name}`);
    ['default_priority', 'high_priority'].forEach((priority, i) => {
      for (const [threshold, value] of cluster.thresholds[i]!) lines.push(`${name}::${priority}::${threshold}::${value}`);
    });
    lines.push(`${name}::added_via_api::false`);
    for (const host of cluster.hosts) {
      const prefix = `${name}::${hostAddress(host)}::`;
      for (const stat of HOST_STAT_NAMES) lines.push(`${prefix}${stat}::${host.stats[stat] ?? 0}`);
      lines.push(
        `${prefix}hostname::${host.hostname}`,
        `${prefix}health_flags::${healthFlags(host)}`,
        `${prefix}weight::${host.weight}`,
        `${prefix}region::`,
        `${prefix}zone::`,
        `${prefix}sub_zone::`,
        `${prefix}canary::false`,
        `${prefix}priority::${host.priority}`,
        `${prefix}success_rate::-1`,
        `${prefix}local_origin_success_rate::-1`,
      );
    }
  }
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

/** `envoy.admin.v3.Clusters`, with uint64 stat values as strings as proto3-JSON prints them. */
export function renderClustersJson(clusters: ClusterStatus[]): unknown {
  const gauges = new Set<string>(HOST_STATS.gaugeNames);
  return {
    cluster_statuses: clusters.map((cluster) => ({
      name: cluster.name,
      observability_name: cluster.name,
      added_via_api: false,
      circuit_breakers: {
        thresholds: ['DEFAULT', 'HIGH'].map((priority, i) => ({
          ...(priority === 'HIGH' ? { priority } : {}),
          ...Object.fromEntries(cluster.thresholds[i]!),
        })),
      },
      host_statuses: cluster.hosts.map((host) => ({
        address: { socket_address: { address: host.address, port_value: host.port } },
        stats: HOST_STAT_NAMES.map((stat) =>
          gauges.has(stat) ? { name: stat, type: 'GAUGE', value: String(host.stats[stat] ?? 0) } : { name: stat, value: String(host.stats[stat] ?? 0) },
        ),
        health_status: { eds_health_status: host.healthy ? 'HEALTHY' : 'UNHEALTHY' },
        weight: host.weight,
        hostname: host.hostname,
        priority: host.priority,
        locality: {},
      })),
    })),
  };
}
