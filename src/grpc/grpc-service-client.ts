/**
 * Unary calls to a `GrpcService` (`envoy.config.core.v3.GrpcService`), as the filters that consult a service
 * make them (ext_authz's Check, the rate limit service's ShouldRateLimit). Both of Envoy's transports:
 * - `envoy_grpc`: Portico's own async HTTP client over the named cluster, which must speak HTTP/2: its load
 *   balancer, health, circuit breakers, TLS and stats apply, as they do for Envoy's own gRPC client;
 * - `google_grpc`: an `@grpc/grpc-js` channel to `target_uri` (insecure, or TLS with `ssl_credentials`).
 */
import { readFileSync } from 'node:fs';
import grpc from '@grpc/grpc-js';
import type { envoy } from '../generated/envoy.js';
import type { ConfigError } from '../config/errors.js';
import { AsyncHttpClient, type AsyncFailure, type AsyncHttpResponse, type AsyncRequestHandle } from '../dataplane/upstream/async-client.js';
import type { ClusterManager } from '../dataplane/upstream/cluster-manager.js';
import { GrpcStatus, httpToGrpcStatus } from '../dataplane/grpc.js';
import { decodeMessage, encodeMessage, type ProtoMethod } from './envoy-protos.js';

export interface GrpcUnaryCallbacks {
  onSuccess(response: any): void;
  /** `code` is a gRPC status (never 0). */
  onFailure(code: number, message: string): void;
}

export interface GrpcServiceClient {
  /** `timeoutMs` 0 takes the service's own `timeout` (none when it has none either). */
  unary(method: ProtoMethod, request: object, timeoutMs: number, callbacks: GrpcUnaryCallbacks, metadata?: Record<string, string>): AsyncRequestHandle;
  /** The configuration that made the client is gone. */
  close(): void;
}

/** Compiles a `grpc_service`; undefined (with errors) when it names no usable transport. */
export function compileGrpcService(
  config: envoy.config.core.v3.GrpcService,
  clusters: ClusterManager,
  path: string,
  errors: ConfigError[],
): GrpcServiceClient | undefined {
  const metadata: Record<string, string> = {};
  for (const header of config.initial_metadata ?? []) {
    if (header.key) metadata[header.key.toLowerCase()] = header.value ?? Buffer.from(header.raw_value ?? []).toString();
  }
  const timeoutMs = config.timeout ?? 0;
  if (config.envoy_grpc !== undefined) {
    const name = config.envoy_grpc.cluster_name ?? '';
    const cluster = clusters.get(name);
    if (cluster === undefined) {
      errors.push({ code: 'unknown_cluster', path: `${path}.envoy_grpc.cluster_name`, message: `unknown gRPC service cluster "${name}"` });
      return undefined;
    }
    if (cluster.settings.protocol === 'http1') {
      errors.push({
        code: 'invalid_value',
        path: `${path}.envoy_grpc.cluster_name`,
        message: `cluster "${name}" speaks HTTP/1.1: a gRPC service cluster needs HTTP/2 (typed_extension_protocol_options with http2_protocol_options)`,
      });
      return undefined;
    }
    return new EnvoyGrpcClient(new AsyncHttpClient(clusters), name, config.envoy_grpc.authority || name, timeoutMs, metadata);
  }
  if (config.google_grpc !== undefined) {
    const target = config.google_grpc.target_uri ?? '';
    if (target === '') {
      errors.push({ code: 'missing_required', path: `${path}.google_grpc.target_uri`, message: 'google_grpc needs a target_uri' });
      return undefined;
    }
    const credentials = channelCredentials(config.google_grpc.channel_credentials, `${path}.google_grpc.channel_credentials`, errors);
    return credentials === undefined ? undefined : new GoogleGrpcClient(new grpc.Client(target, credentials), timeoutMs, metadata);
  }
  errors.push({ code: 'missing_required', path, message: 'a grpc_service needs envoy_grpc or google_grpc' });
  return undefined;
}

function channelCredentials(
  config: envoy.config.core.v3.GrpcService.GoogleGrpc.ChannelCredentials | undefined,
  path: string,
  errors: ConfigError[],
): grpc.ChannelCredentials | undefined {
  const ssl = config?.ssl_credentials;
  if (ssl === undefined) return grpc.credentials.createInsecure();
  const read = (source: envoy.config.core.v3.DataSource | undefined, field: string): Buffer | null => {
    if (source === undefined) return null;
    try {
      if (source.filename !== undefined) return readFileSync(source.filename);
      if (source.inline_string !== undefined) return Buffer.from(source.inline_string);
      if (source.inline_bytes !== undefined) return Buffer.from(source.inline_bytes);
    } catch (err) {
      errors.push({ code: 'io_error', path: `${path}.ssl_credentials.${field}`, message: `cannot read ${source.filename}: ${(err as Error).message}` });
    }
    return null;
  };
  const before = errors.length;
  const roots = read(ssl.root_certs, 'root_certs');
  const key = read(ssl.private_key, 'private_key');
  const chain = read(ssl.cert_chain, 'cert_chain');
  return errors.length === before ? grpc.credentials.createSsl(roots, key, chain) : undefined;
}

/** A gRPC message as the wire carries it: uncompressed flag, 4-byte length, the message. */
function frame(message: Buffer): Buffer {
  const framed = Buffer.allocUnsafe(5 + message.length);
  framed[0] = 0;
  framed.writeUInt32BE(message.length, 1);
  message.copy(framed, 5);
  return framed;
}

function header(headers: AsyncHttpResponse['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** How Envoy's async gRPC client reports a request that got no gRPC answer. */
function failureStatus(reason: AsyncFailure): GrpcStatus {
  if (reason === 'timeout') return GrpcStatus.DeadlineExceeded;
  if (reason === 'reset' || reason === 'response_too_large') return GrpcStatus.Internal;
  return GrpcStatus.Unavailable;
}

class EnvoyGrpcClient implements GrpcServiceClient {
  constructor(
    private readonly http: AsyncHttpClient,
    private readonly cluster: string,
    private readonly authority: string,
    private readonly timeoutMs: number,
    private readonly metadata: Record<string, string>,
  ) {}

  unary(method: ProtoMethod, request: object, timeoutMs: number, callbacks: GrpcUnaryCallbacks, metadata?: Record<string, string>): AsyncRequestHandle {
    const timeout = timeoutMs || this.timeoutMs;
    const headers: Record<string, string> = { ...this.metadata, ...metadata, 'content-type': 'application/grpc', te: 'trailers' };
    if (timeout > 0) headers['grpc-timeout'] = `${Math.ceil(timeout)}m`;
    let body: Buffer;
    try {
      body = frame(encodeMessage(method.requestType, request));
    } catch (err) {
      callbacks.onFailure(GrpcStatus.Internal, `cannot encode ${method.requestType.name}: ${(err as Error).message}`);
      return { cancel() {} };
    }
    return this.http.send(
      this.cluster,
      { method: 'POST', path: method.path, authority: this.authority, headers, body, timeoutMs: timeout },
      {
        onSuccess: (response) => EnvoyGrpcClient.complete(method, response, callbacks),
        onFailure: (reason, message) => callbacks.onFailure(failureStatus(reason), message),
      },
    );
  }

  /** A whole HTTP/2 response as a unary gRPC answer: status from trailers (or the headers of a trailers-only one). */
  private static complete(method: ProtoMethod, response: AsyncHttpResponse, callbacks: GrpcUnaryCallbacks): void {
    if (response.status !== 200) {
      callbacks.onFailure(httpToGrpcStatus(response.status), `gRPC service answered HTTP ${response.status}`);
      return;
    }
    const statusText = header(response.trailers, 'grpc-status') ?? header(response.headers, 'grpc-status');
    const status = statusText === undefined ? Number.NaN : Number(statusText);
    if (!Number.isInteger(status)) {
      callbacks.onFailure(GrpcStatus.Internal, 'gRPC response without grpc-status');
      return;
    }
    if (status !== 0) {
      const message = header(response.trailers, 'grpc-message') ?? header(response.headers, 'grpc-message') ?? '';
      callbacks.onFailure(status, decodeURIComponent(message));
      return;
    }
    const body = response.body;
    if (body.length < 5 || body[0] !== 0 || body.readUInt32BE(1) !== body.length - 5) {
      callbacks.onFailure(GrpcStatus.Internal, 'a unary gRPC response needs exactly one uncompressed message');
      return;
    }
    let decoded: unknown;
    try {
      decoded = decodeMessage(method.responseType, body.subarray(5));
    } catch (err) {
      callbacks.onFailure(GrpcStatus.Internal, `cannot decode ${method.responseType.name}: ${(err as Error).message}`);
      return;
    }
    callbacks.onSuccess(decoded);
  }

  close(): void {}
}

class GoogleGrpcClient implements GrpcServiceClient {
  constructor(
    private readonly client: grpc.Client,
    private readonly timeoutMs: number,
    private readonly metadata: Record<string, string>,
  ) {}

  unary(method: ProtoMethod, request: object, timeoutMs: number, callbacks: GrpcUnaryCallbacks, metadata?: Record<string, string>): AsyncRequestHandle {
    const md = new grpc.Metadata();
    for (const key in this.metadata) md.set(key, this.metadata[key]!);
    if (metadata !== undefined) for (const key in metadata) md.set(key, metadata[key]!);
    const timeout = timeoutMs || this.timeoutMs;
    const options: grpc.CallOptions = timeout > 0 ? { deadline: Date.now() + timeout } : {};
    let cancelled = false;
    const call = this.client.makeUnaryRequest(
      method.path,
      (message: object) => encodeMessage(method.requestType, message),
      (bytes: Buffer) => decodeMessage(method.responseType, bytes),
      request,
      md,
      options,
      (err, response) => {
        if (cancelled) return;
        if (err) callbacks.onFailure(err.code, err.details);
        else callbacks.onSuccess(response);
      },
    );
    return {
      cancel() {
        cancelled = true;
        call.cancel();
      },
    };
  }

  close(): void {
    this.client.close();
  }
}
