import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { envoy } from '../../generated/envoy.js';

type LayeredRuntime = envoy.config.bootstrap.v3.LayeredRuntime;
type FractionalPercent = envoy.type.v3.FractionalPercent;

const DENOMINATORS: Record<string, number> = { HUNDRED: 100, TEN_THOUSAND: 10_000, MILLION: 1_000_000 };

/**
 * Envoy's layered runtime: key → string value, later layers overriding earlier ones. Static layers come from
 * the bootstrap, disk layers from a directory tree read at start (file path = key with '/' for '.'); the admin
 * layer starts empty. Lookups are a single Map read.
 */
export class Runtime {
  private readonly merged = new Map<string, string>();

  constructor(config: LayeredRuntime | undefined) {
    for (const layer of config?.layers ?? []) {
      if (layer.static_layer) flattenStruct(layer.static_layer, '', this.merged);
      if (layer.disk_layer?.symlink_root) {
        readDiskLayer(join(layer.disk_layer.symlink_root, layer.disk_layer.subdirectory ?? ''), '', this.merged);
      }
    }
  }

  getInteger(key: string, fallback: number): number {
    const raw = this.merged.get(key);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    return Number.isInteger(n) ? n : fallback;
  }

  /** A `RuntimeDouble`'s value: the runtime's number under `key`, or the fallback. */
  getDouble(key: string, fallback: number): number {
    const raw = this.merged.get(key);
    const n = raw === undefined || raw.trim() === '' ? NaN : Number(raw);
    return Number.isFinite(n) ? n : fallback;
  }

  /**
   * Envoy's `featureEnabled(key, FractionalPercent)`: the runtime value (an integer numerator, with the default's
   * denominator) wins over the default; `random` is a uniform number in [0, 1).
   */
  fractionEnabled(key: string | undefined, fallback: FractionalPercent | undefined, random: number): boolean {
    const denominator = DENOMINATORS[fallback?.denominator ?? 'HUNDRED'] ?? 100;
    let numerator = fallback?.numerator ?? 0;
    if (key !== undefined && key !== '') numerator = this.getInteger(key, numerator);
    return random * denominator < numerator;
  }
}

function flattenStruct(value: unknown, prefix: string, out: Map<string, string>): void {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flattenStruct(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) {
    out.set(prefix, typeof value === 'string' ? value : JSON.stringify(value));
  }
}

function readDiskLayer(dir: string, prefix: string, out: Map<string, string>): void {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return; // Envoy treats a missing disk layer directory as empty.
  }
  for (const name of entries) {
    if (name.startsWith('.')) continue;
    const path = join(dir, name);
    const key = prefix ? `${prefix}.${name}` : name;
    if (statSync(path).isDirectory()) readDiskLayer(path, key, out);
    else out.set(key, readFileSync(path, 'utf8').trim());
  }
}
