import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { envoy } from '../../generated/envoy.js';

type LayeredRuntime = envoy.config.bootstrap.v3.LayeredRuntime;
type FractionalPercent = envoy.type.v3.FractionalPercent;

const DENOMINATORS: Record<string, number> = { HUNDRED: 100, TEN_THOUSAND: 10_000, MILLION: 1_000_000 };

interface Layer {
  name: string;
  values: Map<string, string>;
}

/** What `/runtime` shows: each layer's name, and per key its value in every layer and the final one. */
export interface RuntimeDump {
  layers: string[];
  entries: Record<string, { layer_values: string[]; final_value: string }>;
}

/**
 * Envoy's layered runtime: key → string value, later layers overriding earlier ones. Static layers come from
 * the bootstrap, disk layers from a directory tree read at start (file path = key with '/' for '.'); the admin
 * layer starts empty and is changed by `/runtime_modify`. Lookups are a single Map read of the merged view.
 */
export class Runtime {
  private readonly layers: Layer[] = [];
  private readonly adminLayer: Layer | undefined;
  private merged = new Map<string, string>();

  constructor(config: LayeredRuntime | undefined) {
    for (const layer of config?.layers ?? []) {
      const values = new Map<string, string>();
      if (layer.static_layer) flattenStruct(layer.static_layer, '', values);
      if (layer.disk_layer?.symlink_root) {
        readDiskLayer(join(layer.disk_layer.symlink_root, layer.disk_layer.subdirectory ?? ''), '', values);
      }
      this.layers.push({ name: layer.name ?? '', values });
      if (layer.admin_layer && this.adminLayer === undefined) this.adminLayer = this.layers.at(-1);
    }
    // Without layered_runtime, Envoy's default runtime has an admin layer only.
    if (config === undefined) this.layers.push((this.adminLayer = { name: 'admin', values: new Map() }));
    this.merge();
  }

  private merge(): void {
    const merged = new Map<string, string>();
    for (const layer of this.layers) for (const [key, value] of layer.values) merged.set(key, value);
    this.merged = merged;
  }

  /**
   * `/runtime_modify`: sets keys in the admin layer; an empty value removes the override. False when the
   * runtime has no admin layer (Envoy answers 503 then).
   */
  modify(changes: Record<string, string>): boolean {
    const admin = this.adminLayer;
    if (admin === undefined) return false;
    for (const [key, value] of Object.entries(changes)) {
      if (value === '') admin.values.delete(key);
      else admin.values.set(key, value);
    }
    this.merge();
    return true;
  }

  /** The admin layer's keys and values (what `/runtime_modify` set). */
  adminOverrides(): Record<string, string> {
    return Object.fromEntries(this.adminLayer?.values ?? []);
  }

  dump(): RuntimeDump {
    const entries: RuntimeDump['entries'] = {};
    for (const key of [...this.merged.keys()].sort()) {
      entries[key] = { layer_values: this.layers.map((l) => l.values.get(key) ?? ''), final_value: this.merged.get(key)! };
    }
    return { layers: this.layers.map((l) => l.name), entries };
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
