/**
 * `envoy.filters.http.grpc_stats`: per gRPC method, on the route's target cluster, how many calls succeeded
 * (`grpc-status: 0`) or failed, and how many messages went each way. As Envoy names them:
 * `cluster.<name>.grpc.<service>.<method>.{success,failure,total,request_message_count,response_message_count}`
 * for methods in `individual_method_stats_allowlist` (or every method with `stats_for_all_methods`), and
 * `cluster.<name>.grpc.{...}` for the others. Scopes are made on a method's first call and kept by the filter
 * config; messages are counted by walking the gRPC frames of the streamed bodies, without buffering them.
 */
import type { envoy } from '../../../../generated/envoy.js';
import type { ConfigError } from '../../../../config/errors.js';
import { isGrpcContentType } from '../../../../dataplane/grpc.js';
import {
  type DecoderFilterCallbacks,
  FilterDataStatus,
  type FilterFactoryContext,
  FilterHeadersStatus,
  FilterTrailersStatus,
  type HttpFilterConfig,
  type HttpFilterFactory,
  type ResponseHead,
  type StreamFilter,
} from '../../../../dataplane/http/filter.js';
import type { HeaderMap } from '../../../../dataplane/router/header-mutation.js';
import type { RequestHead } from '../../../../dataplane/stream-info.js';
import { defineStats, type StatScope, type StatsStore } from '../../../../stats/store.js';

type GrpcStatsConfig = envoy.extensions.filters.http.grpc_stats.v3.FilterConfig;

/** `cluster.<name>.grpc.[<service>.<method>.]` */
export const GRPC_STATS = defineStats({
  counters: ['success', 'failure', 'total', 'request_message_count', 'response_message_count'],
  gauges: [],
  histograms: [],
});
const S = GRPC_STATS.c;

/** Counts the messages of a gRPC body as its chunks pass: 5-byte frame headers, then payloads. */
class FrameCounter {
  /** Bytes of the current frame's header seen (0-4), or 5 once in its payload. */
  private headerSeen = 0;
  private header = Buffer.alloc(4);
  private payloadLeft = 0;

  count(chunk: Buffer): number {
    let frames = 0;
    let at = 0;
    while (at < chunk.length) {
      if (this.payloadLeft > 0) {
        const take = Math.min(this.payloadLeft, chunk.length - at);
        this.payloadLeft -= take;
        at += take;
        continue;
      }
      // Byte 0 is the flags; bytes 1-4 the payload length.
      if (this.headerSeen > 0) this.header[this.headerSeen - 1] = chunk[at]!;
      at++;
      if (++this.headerSeen === 5) {
        frames++;
        this.headerSeen = 0;
        this.payloadLeft = this.header.readUInt32BE(0);
      }
    }
    return frames;
  }
}

class GrpcStatsFilterConfig implements HttpFilterConfig {
  private readonly scopes = new Map<string, StatScope>();
  private readonly allowlist: ReadonlyMap<string, ReadonlySet<string>> | undefined;
  private readonly allMethods: boolean;
  private readonly replaceDots: boolean;

  constructor(
    config: GrpcStatsConfig,
    private readonly stats: StatsStore,
  ) {
    this.allMethods = config.stats_for_all_methods ?? false;
    this.replaceDots = config.replace_dots_in_grpc_service_name ?? false;
    const services = config.individual_method_stats_allowlist?.services;
    this.allowlist = services === undefined ? undefined : new Map(services.map((s) => [s.name ?? '', new Set(s.method_names ?? [])]));
  }

  createFilter(callbacks: DecoderFilterCallbacks): StreamFilter {
    return new GrpcStatsFilter(this, callbacks);
  }

  /** The scope a call to `path` on `cluster` counts in. */
  scopeFor(cluster: string, path: string): StatScope {
    let prefix = `cluster.${cluster}.grpc.`;
    const slash = path.indexOf('/', 1);
    const q = path.indexOf('?');
    if (path.charCodeAt(0) === 47 && slash > 1) {
      const service = path.slice(1, slash);
      const method = path.slice(slash + 1, q < 0 ? path.length : q);
      if (method !== '' && !method.includes('/') && (this.allMethods || this.allowlist?.get(service)?.has(method) === true)) {
        prefix += `${this.replaceDots ? service.replaceAll('.', '_') : service}.${method}.`;
      }
    }
    let scope = this.scopes.get(prefix);
    if (scope === undefined) {
      scope = this.stats.scope(GRPC_STATS, prefix);
      this.scopes.set(prefix, scope);
    }
    return scope;
  }

  release(): void {
    for (const scope of this.scopes.values()) this.stats.release(scope);
    this.scopes.clear();
  }
}

class GrpcStatsFilter implements StreamFilter {
  private readonly requestFrames = new FrameCounter();
  private readonly responseFrames = new FrameCounter();
  private requestMessages = 0;
  private responseMessages = 0;
  /** The call's grpc-status, once the response carried it (in its headers, or its trailers). */
  private status: string | undefined;
  private responseEnded = false;
  /** The path as it reached this filter, before the router's rewrites: the method the stats are named after. */
  private path = '';
  /** A gRPC call as it reaches this filter (after a gRPC-Web filter before it, say); others are not counted. */
  private grpc = false;

  constructor(
    private readonly config: GrpcStatsFilterConfig,
    private readonly callbacks: DecoderFilterCallbacks,
  ) {}

  decodeHeaders(head: RequestHead): FilterHeadersStatus {
    this.grpc = isGrpcContentType(head.headers['content-type']);
    this.path = head.path;
    return FilterHeadersStatus.Continue;
  }

  decodeData(chunk: Buffer): FilterDataStatus {
    if (this.grpc) this.requestMessages += this.requestFrames.count(chunk);
    return FilterDataStatus.Continue;
  }

  encodeHeaders(response: ResponseHead, endStream: boolean): FilterHeadersStatus {
    const status = response.headers['grpc-status'];
    if (status !== undefined) this.status = String(status);
    if (endStream) this.responseEnded = true;
    return FilterHeadersStatus.Continue;
  }

  encodeData(chunk: Buffer, endStream: boolean): FilterDataStatus {
    if (this.grpc) this.responseMessages += this.responseFrames.count(chunk);
    if (endStream) this.responseEnded = true;
    return FilterDataStatus.Continue;
  }

  encodeTrailers(trailers: HeaderMap): FilterTrailersStatus {
    const status = trailers['grpc-status'];
    if (status !== undefined) this.status = String(status);
    this.responseEnded = true;
    return FilterTrailersStatus.Continue;
  }

  onDestroy(): void {
    const cluster = this.callbacks.info.upstreamCluster;
    // A call answered before a cluster was chosen (no route) has no cluster to count on.
    if (!this.grpc || cluster === '' || (!this.responseEnded && this.status === undefined)) return;
    const counters = this.config.scopeFor(cluster, this.path).counters;
    counters[this.status === '0' ? S.success : S.failure]++;
    counters[S.total]++;
    counters[S.request_message_count] += this.requestMessages;
    counters[S.response_message_count] += this.responseMessages;
  }
}

export const GRPC_STATS_FILTER_FACTORY: HttpFilterFactory = {
  name: 'envoy.filters.http.grpc_stats',
  configType: 'envoy.extensions.filters.http.grpc_stats.v3.FilterConfig',

  createFilterConfig(config: unknown, context: FilterFactoryContext, path: string, errors: ConfigError[]): HttpFilterConfig {
    const typed = config as GrpcStatsConfig;
    if (typed.stats_for_all_methods === true && typed.individual_method_stats_allowlist !== undefined) {
      errors.push({
        code: 'oneof_conflict',
        path: `${path}.stats_for_all_methods`,
        message: 'stats_for_all_methods and individual_method_stats_allowlist are exclusive',
      });
    }
    return new GrpcStatsFilterConfig(typed, context.stats);
  },
};
