import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/**
 * What one HTTP request looked like when it reached the router: pseudo-headers as fields, the rest as Node's
 * lower-cased header object (repeated headers joined by Node; `set-cookie` stays an array).
 */
export interface RequestHead {
  method: string;
  /** `:path`, including the query string, after path normalisation and any rewrite applied so far. */
  path: string;
  /** `:authority` (the Host header on HTTP/1.1). */
  authority: string;
  /** `:scheme`: `http` or `https`. */
  scheme: string;
  headers: IncomingHttpHeaders;
}

/**
 * Everything known about one stream, filled in as it progresses; read by header formatters (`%...%`) and, later,
 * access logs. One plain object per request with a fixed shape, so it stays cheap.
 */
export interface StreamInfo {
  /** Wall clock at the first byte of the request, in ms since the epoch. */
  startTime: number;
  /** `performance.now()` at the same moment, for durations. */
  startMonotonic: number;
  /** `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`. */
  protocol: string;
  downstreamRemoteAddress: string;
  downstreamRemotePort: number;
  downstreamDirectRemoteAddress: string;
  downstreamDirectRemotePort: number;
  downstreamLocalAddress: string;
  downstreamLocalPort: number;
  requestedServerName: string;
  request: RequestHead;
  requestId: string;
  routeName: string;
  upstreamCluster: string;
  /** `ip:port` of the upstream host chosen, empty until one is. */
  upstreamHost: string;
  upstreamLocalAddress: string;
  upstreamTransportFailureReason: string;
  /** Response status sent downstream; 0 until one is. */
  responseCode: number;
  responseCodeDetails: string;
  /** Body of the local reply being sent, for `%LOCAL_REPLY_BODY%` in `local_reply_config` formats. */
  localReplyBody: string;
  /** Bit set of `ResponseFlag`s. */
  responseFlags: number;
  responseHeaders: OutgoingHttpHeaders | undefined;
  responseTrailers: Record<string, string> | undefined;
  bytesReceived: number;
  bytesSent: number;
  /** Monotonic ms at which the last request byte arrived, the first response byte left, the last one left. */
  lastRequestByteMonotonic: number;
  firstResponseByteMonotonic: number;
  lastResponseByteMonotonic: number;
  upstreamRequestAttemptCount: number;
  /**
   * Dynamic metadata filters set for later filters and logs, by namespace (`envoy.filters.http.jwt_authn`):
   * undefined until a filter sets some.
   */
  dynamicMetadata: Record<string, Record<string, unknown>> | undefined;
  connectionId: number;
}

export function newStreamInfo(request: RequestHead, connectionId: number): StreamInfo {
  return {
    startTime: Date.now(),
    startMonotonic: performance.now(),
    protocol: 'HTTP/1.1',
    downstreamRemoteAddress: '',
    downstreamRemotePort: 0,
    downstreamDirectRemoteAddress: '',
    downstreamDirectRemotePort: 0,
    downstreamLocalAddress: '',
    downstreamLocalPort: 0,
    requestedServerName: '',
    request,
    requestId: '',
    routeName: '',
    upstreamCluster: '',
    upstreamHost: '',
    upstreamLocalAddress: '',
    upstreamTransportFailureReason: '',
    responseCode: 0,
    responseCodeDetails: '',
    localReplyBody: '',
    responseFlags: 0,
    responseHeaders: undefined,
    responseTrailers: undefined,
    bytesReceived: 0,
    bytesSent: 0,
    lastRequestByteMonotonic: 0,
    firstResponseByteMonotonic: 0,
    lastResponseByteMonotonic: 0,
    upstreamRequestAttemptCount: 0,
    dynamicMetadata: undefined,
    connectionId,
  };
}
