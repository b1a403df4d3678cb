import type { Host } from '../host.js';
import { Hash64, xxHash64 } from './hash.js';
import { type LevelBalancer, normalizedWeights } from './policy.js';

/**
 * `MAGLEV`: Envoy's weighted Maglev table. Hosts, sorted by `ip:port` so the table does not depend on their
 * order, take turns filling a prime-sized table along their own permutation (offset = xxHash64(key) % size,
 * skip = xxHash64(key, seed 1) % (size - 1) + 1); a host whose normalised weight is a fraction of the largest
 * skips turns in proportion. A request goes to entry `hash % table_size`.
 */
export class MaglevTable implements LevelBalancer {
  private readonly table: Int32Array;
  private readonly hosts: Host[];
  /** The fewest and the most table entries any host has (Envoy's `maglev_lb.{min,max}_entries_per_host`). */
  readonly minEntriesPerHost: number;
  readonly maxEntriesPerHost: number;

  constructor(hosts: readonly Host[], private readonly size: number) {
    const sorted = [...hosts].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const weights = normalizedWeights(sorted);
    const maxWeight = Math.max(...weights);
    const n = sorted.length;
    const position = new Float64Array(n);
    const skip = new Float64Array(n);
    const target = new Float64Array(n);
    const hash = new Hash64();
    sorted.forEach((host, i) => {
      position[i] = xxHash64(host.key, hash).mod(size);
      skip[i] = xxHash64(host.key, hash, 0, host.key.length, 1).mod(size - 1) + 1;
    });
    const table = new Int32Array(size).fill(-1);
    let filled = 0;
    for (let iteration = 1; filled < size; iteration++) {
      for (let i = 0; i < n && filled < size; i++) {
        if (iteration * weights[i]! < target[i]!) continue;
        target[i]! += maxWeight;
        let c = position[i]!;
        while (table[c] !== -1) c = (c + skip[i]!) % size;
        table[c] = i;
        position[i] = (c + skip[i]!) % size;
        filled++;
      }
    }
    this.table = table;
    this.hosts = sorted;
    const perHost = new Int32Array(n);
    for (let c = 0; c < size; c++) perHost[table[c]!]!++;
    this.minEntriesPerHost = Math.min(...perHost);
    this.maxEntriesPerHost = Math.max(...perHost);
  }

  choose(hash: Hash64): Host {
    return this.hosts[this.table[hash.mod(this.size)]!]!;
  }
}
