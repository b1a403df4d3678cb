/** What the admin endpoints `/clusters` and `/listeners` show about a data plane, in a form that crosses processes. */
import type { Cluster } from './upstream/cluster.js';
import type { OutlierSuccessRateFigures } from './upstream/health/outlier-detector.js';
import type { EdsHealthStatus, HostLocality } from './upstream/host.js';
import type { Listener } from './listener/listener.js';

export interface HostStatus {
  address: string;
  port: number;
  hostname: string;
  weight: number;
  priority: number;
  /** `HealthFlag` bits. */
  healthFlags: number;
  edsHealthStatus: EdsHealthStatus;
  locality: HostLocality;
  /** From outlier detection's last sweep; -1 when not computed. */
  successRate: number;
  localOriginSuccessRate: number;
  /** `cx_active`, `rq_total`, ... (HOST_STATS) by name. */
  stats: Record<string, number>;
}

export interface ClusterStatus {
  name: string;
  /** Circuit breaker limits by name, for the DEFAULT and HIGH priorities. */
  thresholds: [Array<[string, number]>, Array<[string, number]>];
  /** Present when the cluster has outlier detection. */
  outlier?: OutlierSuccessRateFigures;
  hosts: HostStatus[];
}

export interface ListenerStatus {
  name: string;
  address: string;
  port: number;
}

export function clusterStatus(cluster: Cluster): ClusterStatus {
  const figures = cluster.outlierDetector?.figures;
  return {
    name: cluster.name,
    thresholds: [cluster.resources.forPriority(false).limits(), cluster.resources.forPriority(true).limits()],
    ...(figures === undefined ? {} : { outlier: { ...figures } }),
    hosts: cluster.allHosts().map((host) => {
      const stats: Record<string, number> = {};
      const schema = host.stats.schema;
      schema.counterNames.forEach((name, i) => (stats[name] = host.stats.counters[i]!));
      schema.gaugeNames.forEach((name, i) => (stats[name] = host.stats.gauges[i]!));
      return {
        address: host.address,
        port: host.port,
        hostname: host.hostname,
        weight: host.weight,
        priority: host.priority,
        healthFlags: host.healthFlags,
        edsHealthStatus: host.edsHealthStatus,
        locality: host.locality,
        successRate: host.outlier?.external.rate ?? -1,
        localOriginSuccessRate: host.outlier?.localOrigin.rate ?? -1,
        stats,
      };
    }),
  };
}

export function listenerStatus(listener: Listener): ListenerStatus {
  const bound = listener.boundAddress();
  return { name: listener.name, address: bound?.address ?? listener.host, port: bound?.port ?? listener.port };
}

/** Adds the per-host stats of the same clusters seen by several worker processes. */
export function mergeClusterStatuses(perWorker: ClusterStatus[][]): ClusterStatus[] {
  const [first, ...rest] = perWorker;
  if (first === undefined) return [];
  const merged: ClusterStatus[] = structuredClone(first);
  for (const statuses of rest) {
    for (const status of statuses) {
      const target = merged.find((c) => c.name === status.name);
      if (target === undefined) {
        merged.push(structuredClone(status));
        continue;
      }
      for (const host of status.hosts) {
        const same = target.hosts.find((h) => h.address === host.address && h.port === host.port);
        if (same === undefined) target.hosts.push(structuredClone(host));
        else for (const [name, value] of Object.entries(host.stats)) same.stats[name] = (same.stats[name] ?? 0) + value;
      }
    }
  }
  return merged;
}
