/** What the data plane knows of gRPC: which requests are gRPC, and the statuses its local replies carry. */

/** gRPC status codes the data plane sets itself. */
export const enum GrpcStatus {
  Unknown = 2,
  DeadlineExceeded = 4,
  PermissionDenied = 7,
  ResourceExhausted = 8,
  Unimplemented = 12,
  Internal = 13,
  Unavailable = 14,
  Unauthenticated = 16,
}

/**
 * Envoy's Grpc::Common::hasGrpcContentType: exactly `application/grpc` or `application/grpc+...`; in particular
 * `application/grpc-web` is not gRPC.
 */
export function isGrpcContentType(value: string | string[] | undefined): boolean {
  if (typeof value !== 'string' || !value.startsWith('application/grpc')) return false;
  return value.length === 16 || value.charCodeAt(16) === 43 /* + */;
}

/** Envoy's Grpc::Utility::httpToGrpcStatus, for local replies to gRPC requests. */
export function httpToGrpcStatus(status: number): GrpcStatus {
  switch (status) {
    case 400:
      return GrpcStatus.Internal;
    case 401:
      return GrpcStatus.Unauthenticated;
    case 403:
      return GrpcStatus.PermissionDenied;
    case 404:
      return GrpcStatus.Unimplemented;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcStatus.Unavailable;
    default:
      return GrpcStatus.Unknown;
  }
}

/** `grpc-message` is percent-encoded (gRPC over HTTP/2): anything outside printable ASCII, and `%` itself. */
export function grpcMessage(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text)) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const GRPC_TIMEOUT = /^(\d{1,8})([HMSmun])$/;
const GRPC_TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** A `grpc-timeout` header (up to 8 digits and a unit) in ms, rounded up; undefined when absent or malformed. */
export function parseGrpcTimeout(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string') return undefined;
  const match = GRPC_TIMEOUT.exec(value);
  if (match === null) return undefined;
  return Math.ceil(Number(match[1]) * GRPC_TIMEOUT_UNIT_MS[match[2]!]!);
}
