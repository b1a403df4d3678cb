/** `/clusters` in Envoy's text and JSON layouts (`source/server/admin/clusters_handler.cc`). */
import type { ClusterStatus, HostStatus } from '../dataplane/status.js';
import { HEALTH_FLAG_NAMES, HealthFlag } from '../dataplane/upstream/host.js';
import { HOST_STATS } from '../dataplane/upstream/stats.js';

const HOST_STAT_NAMES = [...HOST_STATS.counterNames, ...HOST_STATS.gaugeNames].sort();

function hostAddress(host: HostStatus): string {
  return host.address.includes(':') ? `[${host.address}]:${host.port}` : `${host.address}:${host.port}`;
}

/** Envoy's `HostUtility::healthFlagsToString`: `healthy`, or every flag set as `/name`, in Envoy's order. */
function healthFlags(host: HostStatus): string {
  let text = '';
  for (const [flag, name] of HEALTH_FLAG_NAMES) if (host.healthFlags & flag) text += `/${name}`;
  return text === '' ? 'healthy' : text;
}

/** `HostHealthStatus`: proto3-JSON leaves out the flags that are false. */
function healthStatusJson(host: HostStatus): Record<string, unknown> {
  const flags = host.healthFlags;
  const status: Record<string, unknown> = {};
  if (flags & HealthFlag.FAILED_ACTIVE_HC) status['failed_active_health_check'] = true;
  if (flags & HealthFlag.FAILED_OUTLIER_CHECK) status['failed_outlier_check'] = true;
  if (flags & HealthFlag.EXCLUDED_VIA_IMMEDIATE_HC_FAIL) status['excluded_via_immediate_hc_fail'] = true;
  if (flags & HealthFlag.ACTIVE_HC_TIMEOUT) status['active_hc_timeout'] = true;
  status['eds_health_status'] = host.edsHealthStatus;
  return status;
}

function localityJson(host: HostStatus): Record<string, string> {
  const { region, zone, subZone } = host.locality;
  return { ...(region ? { region } : {}), ...(zone ? { zone } : {}), ...(subZone ? { sub_zone: subZone } : {}) };
}

/** A `Percent` when computed (non-negative), else left out. */
function percentJson(field: string, value: number): Record<string, unknown> {
  return value >= 0 ? { [field]: { value } } : {};
}

export function renderClustersText(clusters: ClusterStatus[]): string {
  const lines: string[] = [];
  for (const cluster of clusters) {
    const name = cluster.name;
    lines.push(`${name}::observability_name::${name}`);
    const outlier = cluster.outlier;
    if (outlier !== undefined) {
      lines.push(
        `${name}::outlier::success_rate_average::${outlier.successRateAverage}`,
        `${name}::outlier::success_rate_ejection_threshold::${outlier.successRateEjectionThreshold}`,
        `${name}::outlier::local_origin_success_rate_average::${outlier.localOriginSuccessRateAverage}`,
        `${name}::outlier::local_origin_success_rate_ejection_threshold::${outlier.localOriginSuccessRateEjectionThreshold}`,
      );
    }
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
        `${prefix}region::${host.locality.region}`,
        `${prefix}zone::${host.locality.zone}`,
        `${prefix}sub_zone::${host.locality.subZone}`,
        `${prefix}canary::false`,
        `${prefix}priority::${host.priority}`,
        `${prefix}success_rate::${host.successRate}`,
        `${prefix}local_origin_success_rate::${host.localOriginSuccessRate}`,
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
      ...percentJson('success_rate_ejection_threshold', cluster.outlier?.successRateEjectionThreshold ?? -1),
      ...percentJson('local_origin_success_rate_ejection_threshold', cluster.outlier?.localOriginSuccessRateEjectionThreshold ?? -1),
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
        health_status: healthStatusJson(host),
        ...percentJson('success_rate', host.successRate),
        weight: host.weight,
        hostname: host.hostname,
        priority: host.priority,
        ...percentJson('local_origin_success_rate', host.localOriginSuccessRate),
        locality: localityJson(host),
      })),
    })),
  };
}
