/** The stats of clusters (`cluster.<name>.`), their hosts (`/clusters`) and the cluster manager, as Envoy names them. */
import { defineStats } from '../../stats/store.js';

export const CLUSTER_STATS = defineStats({
  counters: [
    'upstream_cx_total',
    'upstream_cx_http1_total',
    'upstream_cx_connect_fail',
    'upstream_cx_connect_timeout',
    'upstream_cx_destroy',
    'upstream_cx_destroy_local',
    'upstream_cx_destroy_remote',
    'upstream_cx_rx_bytes_total',
    'upstream_cx_tx_bytes_total',
    'upstream_cx_none_healthy',
    'upstream_cx_protocol_error',
    'upstream_rq_total',
    'upstream_rq_pending_total',
    'upstream_rq_completed',
    // 1xx to 5xx stay consecutive: they are counted as `1xx + class - 1`.
    'upstream_rq_1xx',
    'upstream_rq_2xx',
    'upstream_rq_3xx',
    'upstream_rq_4xx',
    'upstream_rq_5xx',
    'upstream_rq_timeout',
    'upstream_rq_rx_reset',
    'upstream_rq_tx_reset',
    'retry_or_shadow_abandoned',
    'membership_change',
    'update_attempt',
    'update_success',
    'update_empty',
    'update_no_rebuild',
  ],
  gauges: [
    'upstream_cx_active',
    'upstream_rq_active',
    'upstream_rq_pending_active',
    'membership_healthy',
    'membership_total',
    'max_host_weight',
  ],
  sharedGauges: ['membership_healthy', 'membership_total', 'max_host_weight'],
  histograms: ['upstream_cx_connect_ms', 'upstream_cx_length_ms', 'upstream_rq_time'],
  codeFamilies: ['upstream_rq'],
});

/** Per-host counters shown by `/clusters` (`<cluster>::<ip:port>::<stat>::<n>`), never emitted as stats. */
export const HOST_STATS = defineStats({
  counters: ['cx_total', 'cx_connect_fail', 'rq_total', 'rq_success', 'rq_error', 'rq_timeout'],
  gauges: ['cx_active', 'rq_active'],
  histograms: [],
});

export const CLUSTER_MANAGER_STATS = defineStats({
  counters: ['cluster_added'],
  sharedCounters: ['cluster_added'],
  gauges: ['active_clusters', 'warming_clusters'],
  sharedGauges: ['active_clusters', 'warming_clusters'],
  histograms: [],
});
