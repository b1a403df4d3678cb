/** `server.*` gauges that belong to each process and add up across the primary and its workers. */
import type { StatsStore } from './store.js';

export function collectProcessStats(stats: StatsStore, connections: () => number): void {
  stats.addCollector((into) => {
    const memory = process.memoryUsage();
    into.gauges.push(
      ['server.memory_allocated', memory.heapUsed, true, true],
      ['server.memory_heap_size', memory.heapTotal, true, true],
      ['server.memory_physical_size', memory.rss, true, true],
      ['server.total_connections', connections(), true, true],
    );
  });
}
