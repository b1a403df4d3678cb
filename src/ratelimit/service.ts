/**
 * `portico ratelimit`: a rate limit service speaking Envoy's RLS protocol
 * (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`) on @grpc/grpc-js, so that any Envoy-compatible
 * gateway can use it, counting fixed windows in Redis (shared by every service on it) or in memory. Its
 * configuration (config.ts) is reloaded when its files change; a bad change is refused and the old one kept.
 * `portico start` runs one in its own process without files: its control plane hands it the configuration its
 * `RateLimit` resources translate to, through update().
 * Stats `ratelimit.service.rate_limit.<domain>.<key>.{total_hits,over_limit,near_limit,within_limit,shadow_mode}`
 * and a health check are served on an admin port.
 */
import { type FSWatcher, watch } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { envoyMethod, grpcDefinition } from '../grpc/envoy-protos.js';
import { emptySnapshot } from '../stats/store.js';
import { renderPrometheus, renderText } from '../stats/render.js';
import type { Logger } from '../util/logger.js';
import { type ConfigProblem, type DescriptorEntry, findLimit, type Limit, loadRateLimitConfig, type RateLimitConfig, UNIT_SECONDS } from './config.js';
import { MemoryCounters, RedisCounters, type WindowCounters } from './counters.js';

/** envoyproxy/ratelimit's default: over 80% of the limit is "near". */
const NEAR_LIMIT_RATIO = 0.8;
const RELOAD_DEBOUNCE_MS = 100;
const STAT_NAMES = ['total_hits', 'over_limit', 'near_limit', 'within_limit', 'shadow_mode'] as const;
type StatName = (typeof STAT_NAMES)[number];

interface RateLimitRequest {
  domain?: string;
  descriptors?: { entries?: DescriptorEntry[] }[];
  hits_addend?: number;
}

interface DescriptorStatus {
  code: 'OK' | 'OVER_LIMIT';
  current_limit?: { requests_per_unit: number; unit: string; name?: string };
  limit_remaining?: number;
  duration_until_reset?: { seconds: number };
}

export interface RateLimitServiceOptions {
  /** The file or directory to read and follow; without one, the configuration is what update() was last given. */
  configPath?: string;
  redisUrl?: string;
  host?: string;
  grpcPort?: number;
  /** null: no admin port (in `portico start`, whose API shows the stats). */
  adminPort?: number | null;
  log: Logger;
}

export type LimitStats = Record<StatName, number>;

const SHOULD_RATE_LIMIT = () => envoyMethod('envoy/service/ratelimit/v3/rls.proto', 'envoy.service.ratelimit.v3.RateLimitService', 'ShouldRateLimit');

export class RateLimitService {
  private config: RateLimitConfig;
  private readonly stats = new Map<string, number>();
  private readonly counters: WindowCounters;
  private grpcServer: grpc.Server | undefined;
  private admin: http.Server | undefined;
  private watcher: FSWatcher | undefined;
  private reloadTimer: NodeJS.Timeout | undefined;
  grpcPort = 0;
  adminPort = 0;
  /** Successful and refused reloads, for the admin page and tests. */
  reloads = 0;
  reloadFailures = 0;

  private constructor(
    private readonly options: RateLimitServiceOptions,
    config: RateLimitConfig,
  ) {
    this.config = config;
    const log = options.log;
    this.counters = options.redisUrl === undefined ? new MemoryCounters() : new RedisCounters(options.redisUrl, (err) => log.debug(`redis: ${err.message}`));
  }

  /** Loads the configuration, if from files (refusing to start on a bad one), then serves gRPC and the admin port. */
  static async start(options: RateLimitServiceOptions): Promise<RateLimitService> {
    let config: RateLimitConfig = { domains: new Map() };
    if (options.configPath !== undefined) {
      const loaded = loadRateLimitConfig(options.configPath);
      if (loaded.config === undefined) throw new Error(`invalid rate limit configuration:\n${formatProblems(loaded.problems)}`);
      config = loaded.config;
    }
    const service = new RateLimitService(options, config);
    try {
      if (service.counters instanceof RedisCounters) await service.counters.connected(5000);
      await service.listen();
    } catch (err) {
      await service.close();
      throw err;
    }
    if (options.configPath !== undefined) service.watchConfig(options.configPath);
    return service;
  }

  private async listen(): Promise<void> {
    const host = this.options.host ?? '127.0.0.1';
    const method = SHOULD_RATE_LIMIT();
    const server = new grpc.Server();
    server.addService(
      {
        ShouldRateLimit: grpcDefinition(method),
      },
      {
        ShouldRateLimit: (call: grpc.ServerUnaryCall<RateLimitRequest, object>, callback: grpc.sendUnaryData<object>) => {
          this.shouldRateLimit(call.request).then(
            (response) => callback(null, response),
            (err: Error) => callback({ code: grpc.status.UNAVAILABLE, details: `rate limit store: ${err.message}` }),
          );
        },
      },
    );
    this.grpcServer = server;
    const target = host.includes(':') ? `[${host}]:${this.options.grpcPort ?? 8081}` : `${host}:${this.options.grpcPort ?? 8081}`;
    this.grpcPort = await new Promise<number>((resolve, reject) =>
      server.bindAsync(target, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
    );
    if (this.options.adminPort === null) return;
    const admin = http.createServer((req, res) => this.serveAdmin(req, res));
    this.admin = admin;
    await new Promise<void>((resolve, reject) => {
      admin.once('error', reject);
      admin.listen(this.options.adminPort ?? 6070, host, () => resolve());
    });
    this.adminPort = (admin.address() as AddressInfo).port;
  }

  /** Counts one request's descriptors, all in one round trip to the store, and decides. */
  async shouldRateLimit(request: RateLimitRequest): Promise<object> {
    const config = this.config;
    const domain = request.domain ?? '';
    const hits = request.hits_addend || 1;
    const descriptors = request.descriptors ?? [];
    const nowSeconds = Math.floor(Date.now() / 1000);
    const limits: (Limit | undefined)[] = [];
    const keys: string[] = [];
    const ttls: number[] = [];
    const windowEnds: number[] = [];
    for (const descriptor of descriptors) {
      const entries = descriptor.entries ?? [];
      const limit = findLimit(config, domain, entries);
      const counted = limit !== undefined && !limit.unlimited ? limit : undefined;
      limits.push(counted);
      if (counted === undefined) continue;
      const unitSeconds = UNIT_SECONDS[counted.unit];
      const windowStart = nowSeconds - (nowSeconds % unitSeconds);
      let key = domain;
      for (const entry of entries) key += `_${entry.key}_${entry.value}`;
      keys.push(`${key}_${windowStart}`);
      ttls.push(unitSeconds);
      windowEnds.push(windowStart + unitSeconds);
    }
    const counts = keys.length === 0 ? [] : await this.counters.increment(keys, ttls, hits);
    let over = false;
    let k = 0;
    const statuses = descriptors.map((descriptor, i): DescriptorStatus => {
      const limit = limits[i];
      if (limit === undefined) return { code: 'OK' };
      const after = counts[k]!;
      const windowEnd = windowEnds[k++]!;
      const statKey = limit.detailedMetric ? detailedStatKey(domain, descriptor.entries ?? []) : limit.statKey;
      this.count(statKey, 'total_hits', hits);
      const allowed = limit.requestsPerUnit;
      const exceeded = after > allowed;
      if (exceeded) {
        this.count(statKey, 'over_limit', Math.min(hits, after - allowed));
        if (limit.shadowMode) this.count(statKey, 'shadow_mode', hits);
        else over = true;
      } else {
        this.count(statKey, 'within_limit', hits);
        if (after > Math.floor(allowed * NEAR_LIMIT_RATIO)) this.count(statKey, 'near_limit', hits);
      }
      const currentLimit = limit.name === undefined ? { requests_per_unit: allowed, unit: limit.unit } : { requests_per_unit: allowed, unit: limit.unit, name: limit.name };
      return {
        code: exceeded && !limit.shadowMode ? 'OVER_LIMIT' : 'OK',
        current_limit: currentLimit,
        limit_remaining: Math.max(0, allowed - after),
        duration_until_reset: { seconds: Math.max(1, windowEnd - nowSeconds) },
      };
    });
    return { overall_code: over ? 'OVER_LIMIT' : 'OK', statuses };
  }

  private count(statKey: string, name: StatName, amount: number): void {
    const full = `ratelimit.service.rate_limit.${statKey}.${name}`;
    this.stats.set(full, (this.stats.get(full) ?? 0) + amount);
  }

  /** One limit's stats (`statKey` as config.ts names the limit's node), since this service started. */
  statsOf(statKey: string): LimitStats {
    const out = {} as LimitStats;
    for (const name of STAT_NAMES) out[name] = this.stats.get(`ratelimit.service.rate_limit.${statKey}.${name}`) ?? 0;
    return out;
  }

  /** The stats as the data plane's renderers take them. */
  snapshot(): ReturnType<typeof emptySnapshot> {
    const snapshot = emptySnapshot();
    for (const [name, value] of [...this.stats].sort((a, b) => (a[0] < b[0] ? -1 : 1))) snapshot.counters.push([name, value, true, true]);
    snapshot.counters.push(['ratelimit.service.config_load_success', this.reloads, true, true], ['ratelimit.service.config_load_error', this.reloadFailures, true, true]);
    return snapshot;
  }

  private serveAdmin(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthcheck') {
      const healthy = this.counters.ready();
      res.writeHead(healthy ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(healthy ? 'OK\n' : 'rate limit store unreachable\n');
    } else if (path === '/stats') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(renderText(this.snapshot(), { usedOnly: false, filter: undefined, type: 'All', histogramBuckets: 'summary' }));
    } else if (path === '/stats/prometheus') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      res.end(renderPrometheus(this.snapshot(), { usedOnly: false, filter: undefined }));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('/healthcheck, /stats, /stats/prometheus\n');
    }
  }

  private watchConfig(path: string): void {
    try {
      this.watcher = watch(path, () => {
        if (this.reloadTimer !== undefined) clearTimeout(this.reloadTimer);
        this.reloadTimer = setTimeout(() => this.reload(), RELOAD_DEBOUNCE_MS);
      });
    } catch (err) {
      this.options.log.warn(`cannot watch ${path}: ${(err as Error).message}; the configuration will not reload`);
    }
  }

  /** Re-reads the configuration files. */
  reload(): boolean {
    this.reloadTimer = undefined;
    if (this.options.configPath === undefined) return false;
    const { config, problems } = loadRateLimitConfig(this.options.configPath);
    if (config === undefined) {
      this.reloadFailures++;
      this.options.log.error(`rate limit configuration refused, the previous one stays:\n${formatProblems(problems)}`);
      return false;
    }
    this.update(config);
    this.options.log.info(`rate limit configuration reloaded (${config.domains.size} domains)`);
    return true;
  }

  /**
   * Serves `config` from the next check on. Counts live in the store under keys made of the descriptor and the
   * window, and stats under the limit's node, neither under the limit itself: a limit whose rate changes
   * mid-window keeps both.
   */
  update(config: RateLimitConfig): void {
    this.config = config;
    this.reloads++;
  }

  async close(): Promise<void> {
    this.watcher?.close();
    if (this.reloadTimer !== undefined) clearTimeout(this.reloadTimer);
    this.grpcServer?.forceShutdown();
    await new Promise((resolve) => (this.admin?.listening ? this.admin.close(resolve) : resolve(undefined)));
    await this.counters.close();
  }
}

function formatProblems(problems: readonly ConfigProblem[]): string {
  return problems.map((p) => `  ${p.path}: ${p.message}`).join('\n');
}

/** With `detailed_metric`, stats carry the request's own keys and values. */
function detailedStatKey(domain: string, entries: readonly DescriptorEntry[]): string {
  let key = domain;
  for (const entry of entries) key += `.${entry.key}_${entry.value}`;
  return key;
}
