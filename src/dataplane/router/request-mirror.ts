/**
 * Request mirroring (Envoy's shadowing, `request_mirror_policies`): a copy of a proxied request goes to another
 * cluster, fire and forget. The copy has the method, path and headers of the request as sent upstream (after
 * rewrites and header mutations), `-shadow` appended to the host part of its authority, and the request body
 * teed to it as the main upstream request reads it. Its response is read and discarded; its errors, its latency
 * and its stats never reach the client. The mirror never slows the main request either: its body is queued
 * without backpressure, and a copy that falls more than MIRROR_BUFFER_LIMIT bytes behind is abandoned
 * (`retry_or_shadow_abandoned` on the main request's cluster).
 */
import { Readable } from 'node:stream';
import type { envoy } from '../../generated/envoy.js';
import type { ConfigError } from '../../config/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { RequestHead } from '../stream-info.js';
import type { Cluster } from '../upstream/cluster.js';
import type { ClusterManager } from '../upstream/cluster-manager.js';
import type { Host } from '../upstream/host.js';
import type { UpstreamStreamController, UpstreamStreamHandler } from '../upstream/pool-types.js';
import {
  countUpstreamRequestAssigned,
  countUpstreamRequestEnd,
  countUpstreamRequestStart,
  countUpstreamFailure,
  countUpstreamResponseCode,
} from '../upstream/request-stats.js';
import { CLUSTER_STATS, HOST_STATS } from '../upstream/stats.js';

type MirrorPolicyConfig = envoy.config.route.v3.RouteAction.RequestMirrorPolicy;
type FractionalPercent = envoy.type.v3.FractionalPercent;

const CS = CLUSTER_STATS.c;
const CH = CLUSTER_STATS.h;
const HS = HOST_STATS.c;

/**
 * How far (in bytes) a mirror's body may fall behind the main request before the mirror is abandoned: Envoy's
 * default per-connection buffer limit, which also bounds its retry and shadow buffering.
 */
export const MIRROR_BUFFER_LIMIT = 1024 * 1024;

/** One compiled `request_mirror_policies` entry. */
export interface MirrorPolicy {
  /** The mirror cluster, or undefined when `clusterHeader` names it per request. */
  readonly cluster: string | undefined;
  readonly clusterHeader: string | undefined;
  /** `runtime_fraction`; undefined mirrors every request. */
  readonly fraction: FractionalPercent | undefined;
  readonly runtimeKey: string | undefined;
  readonly appendHostSuffix: boolean;
}

/** Compiles a level's `request_mirror_policies`; undefined when it has none (a route then inherits its host's). */
export function compileMirrorPolicies(
  configs: readonly MirrorPolicyConfig[] | undefined,
  path: string,
  errors: ConfigError[],
): readonly MirrorPolicy[] | undefined {
  if (configs === undefined || configs.length === 0) return undefined;
  return configs.map((config, i): MirrorPolicy => {
    const cluster = config.cluster || undefined;
    const clusterHeader = config.cluster_header?.toLowerCase() || undefined;
    if ((cluster === undefined) === (clusterHeader === undefined)) {
      errors.push({
        code: cluster === undefined ? 'missing_required' : 'oneof_conflict',
        path: `${path}[${i}]`,
        message: 'a request mirror policy needs exactly one of cluster and cluster_header',
      });
    }
    return {
      cluster,
      clusterHeader,
      // Without runtime_fraction Envoy mirrors every request; with it, default_value (0 when absent) applies.
      fraction: config.runtime_fraction === undefined ? undefined : (config.runtime_fraction.default_value ?? {}),
      runtimeKey: config.runtime_fraction?.runtime_key,
      appendHostSuffix: !(config.disable_shadow_host_suffix_append ?? false),
    };
  });
}

/** Envoy's shadow authority: `-shadow` appended to the host, before any port (`a:80` → `a-shadow:80`). */
export function shadowAuthority(authority: string): string {
  const close = authority.charCodeAt(0) === 91 /* [ */ ? authority.indexOf(']') : -1;
  const colon = authority.indexOf(':', close + 1);
  return colon < 0 ? `${authority}-shadow` : `${authority.slice(0, colon)}-shadow${authority.slice(colon)}`;
}

/** What mirroring needs from the data plane. */
export interface MirrorContext {
  readonly clusters: ClusterManager;
  readonly runtime: Runtime;
}

/**
 * Starts the copies that a request's mirror policies select, after its main upstream request was dispatched.
 * `headers` is the flat header list sent upstream; with `hasBody`, the caller then passes the body's chunks to
 * `write()` as they arrive, and says when it is complete with `end()`. Returns undefined when
 * no copy is sent (runtime fraction, missing header, unknown cluster, no healthy host), so a request that
 * mirrors nothing allocates nothing more.
 */
export function startMirrors(
  policies: readonly MirrorPolicy[],
  context: MirrorContext,
  head: RequestHead,
  headers: readonly string[],
  hasBody: boolean,
  timeoutMs: number,
  mainCluster: Cluster,
): RequestMirrors | undefined {
  let mirrors: RequestMirrors | undefined;
  for (const policy of policies) {
    if (policy.fraction !== undefined && !context.runtime.fractionEnabled(policy.runtimeKey, policy.fraction, Math.random())) continue;
    const name = policy.cluster ?? headerValue(head.headers[policy.clusterHeader!]);
    // As in Envoy, a missing header or an unknown cluster means no copy, and no error.
    const cluster = name === undefined ? undefined : context.clusters.get(name);
    if (cluster === undefined) continue;
    const host = cluster.chooseHost();
    if (host === undefined) {
      cluster.stats.counters[CS.upstream_cx_none_healthy]++;
      continue;
    }
    mirrors ??= new RequestMirrors(mainCluster, hasBody);
    mirrors.add(new MirrorRequest(cluster, host, timeoutMs, hasBody), head, headers, policy.appendHostSuffix);
  }
  return mirrors;
}

function headerValue(value: string | string[] | number | undefined): string | undefined {
  const first = Array.isArray(value) ? value[0] : value;
  return first === undefined || first === '' ? undefined : String(first);
}

/** The copies of one request: tees its body to them and lets them go once it is complete. */
export class RequestMirrors {
  private readonly copies: MirrorRequest[] = [];
  private bodyComplete = false;

  constructor(
    private readonly mainCluster: Cluster,
    hasBody: boolean,
  ) {
    this.bodyComplete = !hasBody;
  }

  add(copy: MirrorRequest, head: RequestHead, headers: readonly string[], appendHostSuffix: boolean): void {
    this.copies.push(copy);
    copy.dispatch(head, headers, appendHostSuffix);
  }

  /** A chunk of the request body, as it arrives. */
  write(chunk: Buffer): void {
    for (const copy of this.copies) {
      if (!copy.write(chunk)) this.mainCluster.stats.counters[CS.retry_or_shadow_abandoned]++;
    }
  }

  /** The request body is complete. */
  end(): void {
    if (this.bodyComplete) return;
    this.bodyComplete = true;
    for (const copy of this.copies) copy.endBody();
  }

  /**
   * The main stream is over. Copies whose body is complete carry on on their own; the others can never be
   * completed and are reset, as Envoy cancels the shadow streams of a destroyed router.
   */
  release(): void {
    if (this.bodyComplete) return;
    for (const copy of this.copies) copy.cancel('downstream request ended before its body was complete');
  }
}

function readNothing(): void {}

function onMirrorTimeout(copy: MirrorRequest): void {
  copy.onTimeout();
}

/** One mirrored copy: an upstream request whose response is discarded. It is its own pool handler. */
class MirrorRequest implements UpstreamStreamHandler {
  /** The body as handed to the pool; chunks are queued on it without backpressure. */
  private readonly body: Readable | undefined;
  private controller: UpstreamStreamController | undefined;
  private timer: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private pending = true;
  private responseStarted = false;
  /** The response status, once it started; the host counts 5xx as errors. */
  private status = 0;
  /** Accounting is over (response complete, failed, timed out, cancelled); only the pool's callbacks remain. */
  private finished = false;

  constructor(
    private readonly cluster: Cluster,
    private readonly host: Host,
    private readonly timeoutMs: number,
    hasBody: boolean,
  ) {
    this.body = hasBody ? new Readable({ read: readNothing }) : undefined;
  }

  dispatch(head: RequestHead, headers: readonly string[], appendHostSuffix: boolean): void {
    const copy = headers.slice();
    if (appendHostSuffix) {
      for (let i = 0; i < copy.length; i += 2) if (copy[i] === 'host') copy[i + 1] = shadowAuthority(copy[i + 1]!);
    }
    this.startedAt = performance.now();
    countUpstreamRequestStart(this.cluster, this.host);
    this.host.pool().dispatch({ path: head.path, method: head.method, headers: copy, body: this.body ?? null, upgrade: undefined }, this);
    // Envoy's route timeout runs from the end of the request, here the end of its head when it has no body.
    if (this.body === undefined) this.startTimer();
  }

  /** Queues a body chunk; false when that made the copy fall too far behind and it was abandoned. */
  write(chunk: Buffer): boolean {
    const body = this.body!;
    if (this.finished) return true;
    body.push(chunk);
    if (body.readableLength <= MIRROR_BUFFER_LIMIT) return true;
    this.cancel('mirror fell behind the request body');
    return false;
  }

  endBody(): void {
    if (this.finished) return;
    this.body!.push(null);
    this.startTimer();
  }

  /** Resets the copy before it completed (`upstream_rq_tx_reset`, as any upstream request the proxy resets). */
  cancel(reason: string): void {
    if (this.finished) return;
    this.cluster.stats.counters[CS.upstream_rq_tx_reset]++;
    this.finish(false);
    this.abort(reason);
  }

  onTimeout(): void {
    this.timer = undefined;
    if (this.finished) return;
    this.cluster.stats.counters[CS.upstream_rq_timeout]++;
    this.host.stats.counters[HS.rq_timeout]++;
    if (!this.responseStarted) countUpstreamResponseCode(this.cluster, 504);
    this.finish(false);
    this.abort('mirror route timeout');
  }

  private startTimer(): void {
    if (this.timeoutMs > 0 && !this.finished) this.timer = setTimeout(onMirrorTimeout, this.timeoutMs, this);
  }

  /** Ends the accounting, once; `success` says how the host counts it. */
  private finish(success: boolean): void {
    this.finished = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending) this.assigned();
    countUpstreamRequestEnd(this.cluster, this.host, success);
    // Frees whatever is still queued; the pool, seeing it end early, fails the request, which is already counted.
    this.body?.destroy();
  }

  private assigned(): void {
    this.pending = false;
    countUpstreamRequestAssigned(this.cluster);
  }

  private abort(reason: string): void {
    this.controller?.abort(new Error(reason));
  }

  // ---- the pool's handler ---------------------------------------------------------------------------------

  onRequestStart(controller: UpstreamStreamController): void {
    this.controller = controller;
    if (this.finished) {
      controller.abort(new Error('mirror request already ended'));
      return;
    }
    if (this.pending) this.assigned();
  }

  onResponseStart(_controller: UpstreamStreamController, statusCode: number): void {
    if (this.finished) return;
    this.responseStarted = true;
    this.status = statusCode;
    countUpstreamResponseCode(this.cluster, statusCode);
  }

  onResponseData(): void {}

  onResponseEnd(): void {
    if (this.finished) return;
    this.cluster.stats.histograms[CH.upstream_rq_time]!.record(performance.now() - this.startedAt);
    this.finish(this.status < 500);
  }

  onResponseError(_controller: UpstreamStreamController, error: Error & { code?: string }): void {
    if (this.finished) return;
    countUpstreamFailure(this.cluster, error, this.responseStarted);
    this.finish(false);
  }
}
