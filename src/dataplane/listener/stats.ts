/** The stats of listeners (`listener.<address>.`) and of the listener manager, as Envoy names them. */
import { defineStats } from '../../stats/store.js';

export const LISTENER_STATS = defineStats({
  counters: [
    'downstream_cx_total',
    'downstream_cx_destroy',
    'no_filter_chain_match',
    'downstream_pre_cx_timeout',
    'ssl.handshake',
    'ssl.connection_error',
  ],
  gauges: ['downstream_cx_active', 'downstream_pre_cx_active'],
  histograms: ['downstream_cx_length_ms'],
});

export const LISTENER_MANAGER_STATS = defineStats({
  counters: ['listener_added', 'listener_create_success', 'listener_create_failure'],
  gauges: ['total_listeners_active', 'workers_started'],
  sharedGauges: ['total_listeners_active', 'workers_started'],
  sharedCounters: ['listener_added'],
  histograms: [],
});
