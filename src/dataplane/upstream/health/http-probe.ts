import http from 'node:http';
import type { envoy } from '../../../generated/envoy.js';
import type { ConfigError } from '../../../config/errors.js';
import { applyHeaderMutations, compileHeaderMutation, type HeaderMap, type HeaderMutation } from '../../router/header-mutation.js';
import { newStreamInfo, type StreamInfo } from '../../stream-info.js';
import { type HealthProbe, NETWORK_FAILURE, ProbeOutcome, type ProbeResult, type ProbeTarget } from './probe.js';

type HttpHealthCheck = envoy.config.core.v3.HealthCheck.HttpHealthCheck;

/** An HTTP check's request and what counts as healthy, compiled once per cluster. */
export interface HttpCheckSpec {
  method: string;
  path: string;
  /** `http_health_check.host`; empty: the cluster name (an endpoint's `health_check_config.hostname` wins). */
  host: string;
  /** Half-open `[start, end)` ranges. */
  expectedStatuses: ReadonlyArray<readonly [number, number]>;
  headers: HeaderMutation | undefined;
  /** Header formatters read the stream info; a check has no downstream, so one empty record serves them all. */
  info: StreamInfo;
}

/** Compiles `http_health_check`; problems go to `errors` with `path` (validation reports them). */
export function compileHttpCheck(config: HttpHealthCheck, path: string, errors: ConfigError[]): HttpCheckSpec {
  const ranges = config.expected_statuses?.length ? config.expected_statuses : [{ start: 200, end: 201 }];
  const expectedStatuses = ranges.map((range, i): [number, number] => {
    const start = Number(range.start ?? 0);
    const end = Number(range.end ?? 0);
    if (!(start >= 100 && end <= 600 && start < end)) {
      errors.push({
        code: 'invalid_value',
        path: `${path}.expected_statuses[${i}]`,
        message: `expected status range [${start}, ${end}) must lie within [100, 600) and not be empty`,
      });
    }
    return [start, end];
  });
  if (config.method === 'CONNECT') errors.push({ code: 'invalid_value', path: `${path}.method`, message: 'health checks cannot use CONNECT' });
  if (config.codec_client_type !== undefined && config.codec_client_type !== 'HTTP1') {
    errors.push({ code: 'unsupported_field', path: `${path}.codec_client_type`, message: `codec_client_type ${config.codec_client_type} is not supported yet (HTTP1 only)` });
  }
  const requestPath = config.path ?? '/';
  const method = config.method === undefined || config.method === 'METHOD_UNSPECIFIED' ? 'GET' : config.method;
  return {
    method,
    path: requestPath,
    host: config.host ?? '',
    expectedStatuses,
    headers: compileHeaderMutation(config.request_headers_to_add, config.request_headers_to_remove, path, 'request_headers_to_add', 'request_headers_to_remove', errors),
    info: newStreamInfo({ method, path: requestPath, authority: '', scheme: 'http', headers: {} }, 0),
  };
}

/** Checks over HTTP/1.1 as Envoy's HTTP health checker does: `user-agent: Envoy/HC`, the status decides. */
export class HttpProbe implements HealthProbe {
  /** One connection, kept between checks unless `reuse_connection` is false. */
  private readonly agent: http.Agent;
  private request: http.ClientRequest | undefined;

  constructor(
    private readonly spec: HttpCheckSpec,
    reuseConnection: boolean,
  ) {
    this.agent = new http.Agent({ keepAlive: reuseConnection, maxSockets: 1 });
  }

  check(target: ProbeTarget, done: (result: ProbeResult) => void): void {
    const spec = this.spec;
    const headers: HeaderMap = { host: target.authority, 'user-agent': 'Envoy/HC' };
    if (spec.headers !== undefined) applyHeaderMutations([spec.headers], headers, spec.info);
    let finished = false;
    const finish = (result: ProbeResult): void => {
      if (finished || this.request !== request) return;
      finished = true;
      this.request = undefined;
      done(result);
    };
    const request = http.request({
      host: target.address,
      port: target.port,
      method: spec.method,
      path: spec.path,
      headers: headers as http.OutgoingHttpHeaders,
      setHost: false,
      agent: this.agent,
    });
    this.request = request;
    request.on('response', (response) => {
      const status = response.statusCode ?? 0;
      const immediateFail = response.headers['x-envoy-immediate-health-check-fail'] !== undefined;
      const expected = spec.expectedStatuses.some(([start, end]) => status >= start && status < end);
      const outcome = expected && !immediateFail ? ProbeOutcome.HEALTHY : ProbeOutcome.ACTIVE_FAILURE;
      response.on('end', () => finish({ outcome, immediateFail }));
      response.on('error', () => finish(NETWORK_FAILURE));
      response.resume();
    });
    request.on('error', () => finish(NETWORK_FAILURE));
    request.end();
  }

  abort(): void {
    const request = this.request;
    this.request = undefined;
    request?.destroy();
  }

  close(): void {
    this.abort();
    this.agent.destroy();
  }
}
