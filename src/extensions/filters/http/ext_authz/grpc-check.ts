/**
 * ext_authz over gRPC: `envoy.service.auth.v3.Authorization/Check` with a CheckRequest describing the request
 * (addresses, TLS peer, method, path, headers, optionally the body, context extensions, dynamic metadata), and its
 * CheckResponse turned into a CheckResult. `status.code` 0 allows; anything else denies, with
 * `denied_response.status` (403 when unset) as the HTTP status. A call that fails (timeout, unreachable,
 * bytes that are not a CheckResponse) is an error.
 */
import { TLSSocket } from 'node:tls';
import type { envoy } from '../../../../generated/envoy.js';
import type { AsyncRequestHandle } from '../../../../dataplane/upstream/async-client.js';
import type { GrpcServiceClient } from '../../../../grpc/grpc-service-client.js';
import { envoyMethod, fromStruct, toStruct, type ProtoMethod } from '../../../../grpc/envoy-protos.js';
import type { StringMatchFn } from '../../../../dataplane/matching/string-matcher.js';
import { type AuthzClient, type CheckCallbacks, type CheckInput, type CheckResult, CheckStatus, ERROR_RESULT, type HeaderEdit } from './check.js';
import { httpStatusCode } from './status.js';

let checkMethod: ProtoMethod | undefined;

/** Loaded on first use, so that a configuration without ext_authz over gRPC never parses the protos. */
function authorizationCheck(): ProtoMethod {
  checkMethod ??= envoyMethod('envoy/service/auth/v3/external_auth.proto', 'envoy.service.auth.v3.Authorization', 'Check');
  return checkMethod;
}

export interface GrpcCheckOptions {
  timeoutMs: number;
  includePeerCertificate: boolean;
  packAsBytes: boolean;
  /** Top-level `allowed_headers`: only these request headers go into the CheckRequest; all when undefined. */
  allowedHeaders: StringMatchFn | undefined;
  metadataNamespaces: readonly string[];
}

type PeerCertificate = ReturnType<TLSSocket['getPeerCertificate']>;

/** Envoy's principal of a peer: its first URI SAN, else its first DNS SAN, else its subject. */
function principal(cert: PeerCertificate | null): string {
  if (cert === null || Object.keys(cert).length === 0) return '';
  const sans = (cert.subjectaltname ?? '').split(', ');
  const uri = sans.find((s) => s.startsWith('URI:'));
  if (uri !== undefined) return uri.slice(4);
  const dns = sans.find((s) => s.startsWith('DNS:'));
  if (dns !== undefined) return dns.slice(4);
  return Object.entries(cert.subject ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

function pem(der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END CERTIFICATE-----\n`;
}

function edits(options: readonly envoy.config.core.v3.HeaderValueOption[] | undefined): HeaderEdit[] {
  const out: HeaderEdit[] = [];
  for (const option of options ?? []) {
    const header = option.header;
    if (header?.key === undefined || header.key === '') continue;
    // `append` is a BoolValue (decoded as {value}); it defaults to false in ext_authz answers, as Envoy documents.
    const append = (option.append as unknown as { value?: boolean } | undefined)?.value === true || option.append_action === 'APPEND_IF_EXISTS_OR_ADD';
    const value = header.value ?? (header.raw_value !== undefined ? Buffer.from(header.raw_value).toString() : '');
    out.push({ name: header.key.toLowerCase(), value, append });
  }
  return out;
}

interface DecodedCheckResponse {
  status?: { code?: number };
  ok_response?: {
    headers?: envoy.config.core.v3.HeaderValueOption[];
    headers_to_remove?: string[];
    response_headers_to_add?: envoy.config.core.v3.HeaderValueOption[];
    query_parameters_to_set?: { key?: string; value?: string }[];
    query_parameters_to_remove?: string[];
  };
  denied_response?: { status?: { code?: string | number }; headers?: envoy.config.core.v3.HeaderValueOption[]; body?: string };
  dynamic_metadata?: { fields?: Record<string, Record<string, unknown>> };
}

/** A CheckResponse as a CheckResult. */
export function checkResult(response: DecodedCheckResponse): CheckResult {
  const metadata = response.dynamic_metadata === undefined ? undefined : fromStruct(response.dynamic_metadata);
  if ((response.status?.code ?? 0) === 0) {
    const ok = response.ok_response;
    return {
      status: CheckStatus.Ok,
      upstreamHeaders: edits(ok?.headers),
      headersToRemove: (ok?.headers_to_remove ?? []).map((h) => h.toLowerCase()),
      responseHeaders: edits(ok?.response_headers_to_add),
      queryToSet: (ok?.query_parameters_to_set ?? []).filter((p) => p.key).map((p) => [p.key!, p.value ?? '']),
      queryToRemove: ok?.query_parameters_to_remove ?? [],
      dynamicMetadata: metadata,
    };
  }
  const denied = response.denied_response;
  return {
    status: CheckStatus.Denied,
    httpStatus: httpStatusCode(denied?.status?.code) ?? 403,
    responseHeaders: edits(denied?.headers),
    body: denied?.body ?? '',
  };
}

export class GrpcAuthzClient implements AuthzClient {
  constructor(
    private readonly client: GrpcServiceClient,
    private readonly options: GrpcCheckOptions,
  ) {
    authorizationCheck();
  }

  check(input: CheckInput, callbacks: CheckCallbacks): AsyncRequestHandle {
    return this.client.unary(authorizationCheck(), this.checkRequest(input), this.options.timeoutMs, {
      onSuccess: (response) => callbacks.onCheckComplete(checkResult(response as DecodedCheckResponse)),
      onFailure: () => callbacks.onCheckComplete(ERROR_RESULT),
    });
  }

  private checkRequest({ stream, body, contextExtensions }: CheckInput): object {
    const { info, head } = stream;
    const allowed = this.options.allowedHeaders;
    const headers: Record<string, string> = { ':authority': head.authority, ':method': head.method, ':path': head.path, ':scheme': head.scheme };
    for (const name in head.headers) {
      if (allowed !== undefined && !allowed(name)) continue;
      const value = head.headers[name];
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(',') : value;
    }
    const contentLength = head.headers['content-length'];
    const http: Record<string, unknown> = {
      id: info.requestId,
      method: head.method,
      headers,
      path: head.path,
      host: head.authority,
      scheme: head.scheme,
      protocol: info.protocol,
      size: contentLength === undefined ? -1 : Number(contentLength),
    };
    if (body !== undefined) {
      if (this.options.packAsBytes) http.raw_body = body;
      else http.body = body.toString();
    }
    const source: Record<string, unknown> = { address: { socket_address: { address: info.downstreamRemoteAddress, port_value: info.downstreamRemotePort } } };
    const destination: Record<string, unknown> = { address: { socket_address: { address: info.downstreamLocalAddress, port_value: info.downstreamLocalPort } } };
    const connection = stream.connection;
    if (connection instanceof TLSSocket) {
      const peer = connection.getPeerCertificate();
      source.principal = principal(peer);
      if (this.options.includePeerCertificate && peer?.raw !== undefined) source.certificate = encodeURIComponent(pem(peer.raw));
      destination.principal = principal(connection.getCertificate() as PeerCertificate | null);
    }
    const attributes: Record<string, unknown> = {
      source,
      destination,
      request: { time: { seconds: Math.floor(info.startTime / 1000), nanos: (info.startTime % 1000) * 1e6 }, http },
    };
    if (contextExtensions !== undefined) attributes.context_extensions = contextExtensions;
    const namespaces = this.options.metadataNamespaces;
    if (namespaces.length > 0 && info.dynamicMetadata !== undefined) {
      const filterMetadata: Record<string, unknown> = {};
      for (const ns of namespaces) {
        const value = info.dynamicMetadata[ns];
        if (value !== undefined) filterMetadata[ns] = toStruct(value);
      }
      attributes.metadata_context = { filter_metadata: filterMetadata };
    }
    return { attributes };
  }

  close(): void {
    this.client.close();
  }
}
