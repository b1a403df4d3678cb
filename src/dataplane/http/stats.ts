/** The stats of an HTTP connection manager, as Envoy names them under `http.<stat_prefix>.`. */
import { defineStats } from '../../stats/store.js';

export const HCM_STATS = defineStats({
  counters: [
    'downstream_cx_total',
    'downstream_cx_ssl_total',
    'downstream_cx_http1_total',
    'downstream_cx_http2_total',
    'downstream_cx_destroy',
    'downstream_cx_destroy_remote',
    'downstream_cx_destroy_local',
    'downstream_cx_destroy_active_rq',
    'downstream_cx_destroy_remote_active_rq',
    'downstream_cx_destroy_local_active_rq',
    'downstream_cx_protocol_error',
    'downstream_cx_rx_bytes_total',
    'downstream_cx_tx_bytes_total',
    'downstream_cx_idle_timeout',
    'downstream_cx_drain_close',
    'downstream_cx_upgrades_total',
    'downstream_rq_total',
    'downstream_rq_http1_total',
    'downstream_rq_http2_total',
    'downstream_rq_completed',
    // 1xx to 5xx stay consecutive: they are counted as `1xx + class - 1`.
    'downstream_rq_1xx',
    'downstream_rq_2xx',
    'downstream_rq_3xx',
    'downstream_rq_4xx',
    'downstream_rq_5xx',
    'downstream_rq_rx_reset',
    'downstream_rq_tx_reset',
    'downstream_rq_non_relative_path',
    'downstream_rq_idle_timeout',
    'downstream_rq_timeout',
    'downstream_rq_header_timeout',
    'downstream_rq_redirected_with_normalized_path',
    'downstream_rq_ws_on_non_ws_route',
    'no_route',
    'no_cluster',
    'rq_redirect',
    'rq_direct_response',
    'rq_total',
    'rq_reset_after_downstream_response_started',
    'rq_retry_skipped_request_not_complete',
    // Portico's own: requests answered with a 500 because Portico or an HTTP filter threw (a bug).
    'rq_internal_error',
    // The downstream HTTP/2 codec's (Envoy's `http2.` codec stats): streams the client reset.
    'http2.rx_reset',
    'http2.outbound_control_flood',
  ],
  gauges: [
    'downstream_cx_active',
    'downstream_cx_ssl_active',
    'downstream_cx_http1_active',
    'downstream_cx_http2_active',
    'downstream_cx_upgrades_active',
    'downstream_rq_active',
  ],
  histograms: ['downstream_cx_length_ms', 'downstream_rq_time'],
});

/** Per-listener HTTP stats: `listener.<address>.http.<stat_prefix>.`. */
export const LISTENER_HTTP_STATS = defineStats({
  counters: ['downstream_rq_completed', 'downstream_rq_1xx', 'downstream_rq_2xx', 'downstream_rq_3xx', 'downstream_rq_4xx', 'downstream_rq_5xx'],
  gauges: [],
  histograms: [],
});
