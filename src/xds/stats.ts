/** The stats of the xDS client, as Envoy names them: `control_plane.*`, `listener_manager.lds.*`, `cluster_manager.cds.*`. */
import { defineStats, type StatsStore } from '../stats/store.js';
import type { XdsClientEvents } from './client.js';
import { CLUSTER_TYPE, LISTENER_TYPE } from './protocol.js';

export const CONTROL_PLANE_STATS = defineStats({ counters: [], gauges: ['connected_state'], histograms: [] });

const UPDATE_COUNTERS = ['update_attempt', 'update_success', 'update_rejected'] as const;
export const LDS_STATS = defineStats({ counters: UPDATE_COUNTERS, gauges: [], histograms: [] });
export const CDS_STATS = defineStats({ counters: UPDATE_COUNTERS, gauges: [], histograms: [] });

/** The client's events counted in `stats`. */
export function xdsStats(stats: StatsStore): XdsClientEvents {
  const controlPlane = stats.scope(CONTROL_PLANE_STATS, 'control_plane.');
  const byType = new Map([
    [LISTENER_TYPE, stats.scope(LDS_STATS, 'listener_manager.lds.')],
    [CLUSTER_TYPE, stats.scope(CDS_STATS, 'cluster_manager.cds.')],
  ]);
  const C = LDS_STATS.c;
  return {
    connected: (connected) => controlPlane.setGauge(CONTROL_PLANE_STATS.g.connected_state, connected ? 1 : 0),
    updated: (typeUrl, outcome) => {
      const scope = byType.get(typeUrl);
      if (scope === undefined) return;
      scope.counters[C.update_attempt]++;
      scope.counters[outcome === 'success' ? C.update_success : C.update_rejected]++;
    },
  };
}
