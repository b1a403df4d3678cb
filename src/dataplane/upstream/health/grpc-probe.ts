/**
 * gRPC health checks (`grpc_health_check`), as Envoy's gRPC health checker runs them: the standard
 * `grpc.health.v1.Health/Check` call over HTTP/2 (plaintext, h2c), healthy when the host answers SERVING with
 * `grpc-status: 0`. The two messages are one field each, so they are encoded and read by hand.
 */
import http2, { type ClientHttp2Session } from 'node:http2';
import type { envoy } from '../../../generated/envoy.js';
import { HEALTHY, type HealthProbe, NETWORK_FAILURE, ProbeOutcome, type ProbeResult, type ProbeTarget } from './probe.js';

type GrpcHealthCheck = envoy.config.core.v3.HealthCheck.GrpcHealthCheck;

const CHECK_PATH = '/grpc.health.v1.Health/Check';
/** HealthCheckResponse.ServingStatus.SERVING */
const SERVING = 1;
const ACTIVE_FAILURE: ProbeResult = { outcome: ProbeOutcome.ACTIVE_FAILURE, immediateFail: false };

export interface GrpcCheckSpec {
  /** The framed HealthCheckRequest, with `service_name` as its `service`. */
  request: Buffer;
  /** `authority`; empty: the host's (an endpoint's `health_check_config.hostname`, else the cluster name). */
  authority: string;
}

export function compileGrpcCheck(config: GrpcHealthCheck): GrpcCheckSpec {
  const service = Buffer.from(config.service_name ?? '');
  // Field 1 (service), length-delimited.
  const length = varint(service.length);
  const message = service.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a]), length, service]);
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  return { request: frame, authority: config.authority ?? '' };
}

function varint(value: number): Buffer {
  const bytes: number[] = [];
  while (value > 0x7f) {
    bytes.push((value & 0x7f) | 0x80);
    value >>>= 7;
  }
  bytes.push(value);
  return Buffer.from(bytes);
}

/** The `status` of a framed HealthCheckResponse; 0 (UNKNOWN) when it is not there. */
function servingStatus(body: Buffer): number {
  if (body.length < 5) return 0;
  const message = body.subarray(5, 5 + body.readUInt32BE(1));
  // The status is field 1, a varint (tag 0x08); the message has no other field.
  return message[0] === 0x08 && message.length >= 2 ? message[1]! : 0;
}

export class GrpcProbe implements HealthProbe {
  private session: ClientHttp2Session | undefined;
  private finish: ((result: ProbeResult) => void) | undefined;

  constructor(
    private readonly spec: GrpcCheckSpec,
    private readonly reuseConnection: boolean,
  ) {}

  check(target: ProbeTarget, done: (result: ProbeResult) => void): void {
    let session = this.session;
    if (session === undefined || session.destroyed || session.closed) {
      session = http2.connect(`http://${target.address.includes(':') ? `[${target.address}]` : target.address}:${target.port}`);
      session.on('error', () => this.finish?.(NETWORK_FAILURE));
      this.session = session;
    }
    let finished = false;
    this.finish = (result) => {
      if (finished) return;
      finished = true;
      this.finish = undefined;
      if (!this.reuseConnection || result === NETWORK_FAILURE) this.closeSession();
      done(result);
    };
    const stream = session.request({
      ':method': 'POST',
      ':path': CHECK_PATH,
      ':authority': this.spec.authority || target.authority,
      'content-type': 'application/grpc',
      te: 'trailers',
      'user-agent': 'Envoy/HC',
    });
    let status = 0;
    let grpcStatus: string | undefined;
    const chunks: Buffer[] = [];
    stream.on('response', (headers) => {
      status = Number(headers[':status']);
      if (headers['grpc-status'] !== undefined) grpcStatus = String(headers['grpc-status']);
    });
    stream.on('trailers', (trailers) => {
      if (trailers['grpc-status'] !== undefined) grpcStatus = String(trailers['grpc-status']);
    });
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => {
      const serving = status === 200 && grpcStatus === '0' && servingStatus(Buffer.concat(chunks)) === SERVING;
      this.finish?.(serving ? HEALTHY : ACTIVE_FAILURE);
    });
    stream.on('error', () => this.finish?.(NETWORK_FAILURE));
    stream.end(this.spec.request);
  }

  abort(): void {
    this.finish = undefined;
    this.closeSession();
  }

  close(): void {
    this.abort();
  }

  private closeSession(): void {
    const session = this.session;
    this.session = undefined;
    session?.destroy();
  }
}
