/** The stats of clusters (`cluster.<name>.`), their hosts (`/clusters`) and the cluster manager, as Envoy names them. */
import { defineStats } from '../../stats/store.js';

export const CLUSTER_STATS = defineStats({
  counters: [
    'upstream_cx_total',
    'upstream_cx_http1_total',
    'upstream_cx_http2_total',
    'upstream_cx_close_notify',
    'upstream_cx_connect_fail',
    'upstream_cx_connect_timeout',
    'upstream_cx_destroy',
    'upstream_cx_destroy_local',
    'upstream_cx_destroy_remote',
    'upstream_cx_rx_bytes_total',
    'upstream_cx_tx_bytes_total',
    'upstream_cx_none_healthy',
    'upstream_cx_protocol_error',
    'upstream_cx_overflow',
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
    'upstream_rq_per_try_timeout',
    'upstream_rq_per_try_idle_timeout',
    'upstream_rq_pending_overflow',
    'upstream_rq_retry',
    'upstream_rq_retry_success',
    'upstream_rq_retry_overflow',
    'upstream_rq_retry_limit_exceeded',
    'upstream_rq_retry_backoff_exponential',
    'upstream_rq_retry_backoff_ratelimited',
    'retry_or_shadow_abandoned',
    // Responses that were retried rather than forwarded; 1xx to 5xx stay consecutive as above.
    'retry.upstream_rq_completed',
    'retry.upstream_rq_1xx',
    'retry.upstream_rq_2xx',
    'retry.upstream_rq_3xx',
    'retry.upstream_rq_4xx',
    'retry.upstream_rq_5xx',
    'membership_change',
    'update_attempt',
    'update_success',
    'update_empty',
    'update_no_rebuild',
    'ssl.handshake',
    'ssl.session_reused',
    'ssl.connection_error',
    'ssl.fail_verify_error',
    'ssl.fail_verify_san',
    'lb_healthy_panic',
    // The HTTP/2 codec's (Envoy's `cluster.<name>.http2.` codec stats).
    'http2.rx_reset',
    'http2.tx_reset',
    'http2.keepalive_timeout',
  ],
  gauges: [
    'upstream_cx_active',
    'upstream_rq_active',
    'upstream_rq_pending_active',
    'membership_healthy',
    'membership_total',
    'max_host_weight',
    'http2.streams_active',
  ],
  sharedGauges: ['membership_healthy', 'membership_total', 'max_host_weight'],
  histograms: ['upstream_cx_connect_ms', 'upstream_cx_length_ms', 'upstream_rq_time'],
  // Indexes used by countCode: 0 `upstream_rq_<code>`, 1 `retry.upstream_rq_<code>`.
  codeFamilies: ['upstream_rq', 'retry.upstream_rq'],
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

/** `cluster.<name>.health_check.`: the cluster's active health checker (Envoy's ALL_HEALTH_CHECKER_STATS). */
export const HEALTH_CHECK_STATS = defineStats({
  counters: ['attempt', 'success', 'failure', 'network_failure', 'passive_failure', 'verify_cluster'],
  gauges: ['healthy', 'degraded'],
  // Every worker checks the same hosts: their views agree, they do not add up.
  sharedGauges: ['healthy', 'degraded'],
  histograms: [],
});

/**
 * The kinds of ejection, as Envoy names them in `ejections_{detected,enforced}_<kind>`; the order is the
 * outlier detector's `EjectionType`.
 */
export const EJECTION_KINDS = [
  'consecutive_5xx',
  'consecutive_gateway_failure',
  'consecutive_local_origin_failure',
  'success_rate',
  'local_origin_success_rate',
  'failure_percentage',
  'failure_percentage_local_origin',
] as const;

/** `cluster.<name>.outlier_detection.` (Envoy's ALL_OUTLIER_DETECTION_STATS, deprecated counters included). */
export const OUTLIER_DETECTION_STATS = defineStats({
  counters: [
    'ejections_enforced_total',
    'ejections_overflow',
    ...EJECTION_KINDS.map((kind) => `ejections_enforced_${kind}` as const),
    ...EJECTION_KINDS.map((kind) => `ejections_detected_${kind}` as const),
    'ejections_total',
    'ejections_consecutive_5xx',
    'ejections_success_rate',
  ],
  gauges: ['ejections_active'],
  histograms: [],
});

/** `cluster.<name>.ring_hash_lb.`, for RING_HASH clusters. */
export const RING_HASH_LB_STATS = defineStats({
  counters: [],
  gauges: ['size', 'min_hashes_per_host', 'max_hashes_per_host'],
  sharedGauges: ['size', 'min_hashes_per_host', 'max_hashes_per_host'],
  histograms: [],
});

/** `cluster.<name>.maglev_lb.`, for MAGLEV clusters. */
export const MAGLEV_LB_STATS = defineStats({
  counters: [],
  gauges: ['min_entries_per_host', 'max_entries_per_host'],
  sharedGauges: ['min_entries_per_host', 'max_entries_per_host'],
  histograms: [],
});
