import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { envoy } from '../../generated/envoy.js';

type LayeredRuntime = envoy.config.bootstrap.v3.LayeredRuntime;
type FractionalPercent = envoy.type.v3.FractionalPercent;

const DENOMINATORS: Record<string, number> = { HUNDRED: 100, TEN_THOUSAND: 10_000, MILLION: 1_000_000 };

/**
 * Envoy's layered runtime: key → string value, later layers overriding earlier ones. Static layers come from
 * the bootstrap, disk layers from a directory tree (file path = key with '/' for '.'), the admin layer from
 * `/runtime_modify`. Lookups are a single Map read.
 */
export class Runtime {
  private readonly layers: { name: string; kind: 'static' | 'disk' | 'admin'; values: Map<string, string> }[] = [];
  private merged = new Map<string, string>();

  constructor(config: LayeredRuntime | undefined) {
    for (const layer of config?.layers ?? []) {
      const values = new Map<string, string>();
      if (layer.static_layer) flattenStruct(layer.static_layer, '', values);
      if (layer.disk_layer?.symlink_root) {
        const root = join(layer.disk_layer.symlink_root, layer.disk_layer.subdirectory ?? '');
        readDiskLayer(root, '', values);
      }
      const kind = layer.static_layer ? 'static' : layer.disk_layer ? 'disk' : 'admin';
      this.layers.push({ name: layer.name ?? '', kind, values });
    }
    this.rebuild();
  }

  get(key: string): string | undefined {
    return this.merged.get(key);
  }

  getInteger(key: string, fallback: number): number {
    const raw = this.merged.get(key);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    return Number.isInteger(n) ? n : fallback;
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

  /** Applies `/runtime_modify` overrides to the admin layer; an empty value removes the override. */
  modify(changes: Record<string, string>): void {
    const admin = this.layers.find((l) => l.kind === 'admin');
    if (!admin) throw new Error('no admin layer configured in layered_runtime');
    for (const [key, value] of Object.entries(changes)) {
      if (value === '') admin.values.delete(key);
      else admin.values.set(key, value);
    }
    this.rebuild();
  }

  /** The layers and the merged entries, for the admin `/runtime` endpoint. */
  snapshot(): { layers: string[]; entries: Record<string, { final_value: string; layer_values: string[] }> } {
    const entries: Record<string, { final_value: string; layer_values: string[] }> = {};
    for (const [key, value] of [...this.merged].sort(([a], [b]) => (a < b ? -1 : 1))) {
      entries[key] = { final_value: value, layer_values: this.layers.map((l) => l.values.get(key) ?? '') };
    }
    return { layers: this.layers.map((l) => l.name), entries };
  }

  private rebuild(): void {
    const merged = new Map<string, string>();
    for (const layer of this.layers) for (const [k, v] of layer.values) merged.set(k, v);
    this.merged = merged;
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
