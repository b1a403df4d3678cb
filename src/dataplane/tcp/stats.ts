/** The stats of a TCP proxy filter, as Envoy names them under `tcp.<stat_prefix>.`. */
import { defineStats } from '../../stats/store.js';

export const TCP_PROXY_STATS = defineStats({
  counters: [
    'downstream_cx_total',
    'downstream_cx_no_route',
    'downstream_cx_rx_bytes_total',
    'downstream_cx_tx_bytes_total',
    'downstream_flow_control_paused_reading_total',
    'downstream_flow_control_resumed_reading_total',
    'idle_timeout',
  ],
  gauges: [],
  histograms: [],
});
