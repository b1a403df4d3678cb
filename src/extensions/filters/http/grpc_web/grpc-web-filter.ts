/**
 * `envoy.filters.http.grpc_web`: lets browsers speak gRPC. A gRPC-Web request (`application/grpc-web`, or
 * `application/grpc-web-text` with a base64 body) goes upstream as gRPC (`application/grpc`, `te: trailers`), and
 * the response comes back as gRPC-Web: the same message frames, then the trailers as one more frame (flag 0x80,
 * `name:value\r\n` lines), base64 again for `-text` clients. Bodies stream: base64 is decoded and encoded chunk by
 * chunk, carrying over the bytes that do not fill a group. Other requests pass untouched.
 */
import {
  type DecoderFilterCallbacks,
  type EncoderFilterCallbacks,
  FilterDataStatus,
  FilterHeadersStatus,
  FilterTrailersStatus,
  type HttpFilterConfig,
  type HttpFilterFactory,
  type ResponseHead,
  type StreamFilter,
} from '../../../../dataplane/http/filter.js';
import type { HeaderMap } from '../../../../dataplane/router/header-mutation.js';
import type { RequestHead } from '../../../../dataplane/stream-info.js';

const GRPC_WEB = 'application/grpc-web';
const GRPC_WEB_TEXT = 'application/grpc-web-text';
const EMPTY = Buffer.alloc(0);
/** The flag byte of the frame that carries the trailers. */
const TRAILER_FRAME = 0x80;

type Callbacks = DecoderFilterCallbacks & EncoderFilterCallbacks;

class GrpcWebFilter implements StreamFilter {
  /** A `-text` client: bodies are base64 both ways. */
  private text = false;
  /** Request base64 characters that did not fill a group of four yet. */
  private decodeCarry = '';
  /** Response bytes that did not fill a group of three yet. */
  private encodeCarry: Buffer = EMPTY;

  constructor(private readonly callbacks: Callbacks) {}

  decodeHeaders(head: RequestHead): FilterHeadersStatus {
    const headers = head.headers;
    const type = headers['content-type'] as string;
    this.text = type.startsWith(GRPC_WEB_TEXT);
    // `application/grpc-web+proto` → `application/grpc+proto`; the body's length changes with base64.
    headers['content-type'] = 'application/grpc' + type.slice(this.text ? GRPC_WEB_TEXT.length : GRPC_WEB.length);
    headers.te = 'trailers';
    if (this.text) delete headers['content-length'];
    return FilterHeadersStatus.Continue;
  }

  decodeData(chunk: Buffer, endStream: boolean): FilterDataStatus {
    if (!this.text) return FilterDataStatus.Continue;
    const chars = this.decodeCarry + chunk.toString('latin1').replace(/\s/g, '');
    const whole = endStream ? chars.length : chars.length - (chars.length % 4);
    this.decodeCarry = chars.slice(whole);
    this.callbacks.injectDecodedDataToFilterChain(Buffer.from(chars.slice(0, whole), 'base64'), endStream);
    return FilterDataStatus.StopIterationNoBuffer;
  }

  encodeHeaders(response: ResponseHead): FilterHeadersStatus {
    const headers = response.headers;
    // Only gRPC answers are re-framed: anything else (an upstream's HTML error page) goes back as it came.
    const type = headers['content-type'];
    if (typeof type === 'string' && type.startsWith('application/grpc')) {
      headers['content-type'] = this.text ? `${GRPC_WEB_TEXT}+proto` : `${GRPC_WEB}+proto`;
      delete headers['content-length'];
    }
    return FilterHeadersStatus.Continue;
  }

  encodeData(chunk: Buffer, endStream: boolean): FilterDataStatus {
    if (!this.text) return FilterDataStatus.Continue;
    this.callbacks.injectEncodedDataToFilterChain(this.base64(chunk, endStream), endStream);
    return FilterDataStatus.StopIterationNoBuffer;
  }

  encodeTrailers(trailers: HeaderMap): FilterTrailersStatus {
    let lines = '';
    for (const name in trailers) {
      const value = trailers[name];
      if (value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [String(value)]) lines += `${name}:${v}\r\n`;
    }
    const payload = Buffer.from(lines, 'latin1');
    const frame = Buffer.allocUnsafe(5 + payload.length);
    frame[0] = TRAILER_FRAME;
    frame.writeUInt32BE(payload.length, 1);
    payload.copy(frame, 5);
    this.callbacks.injectEncodedDataToFilterChain(this.text ? this.base64(frame, true) : frame, true);
    return FilterTrailersStatus.StopIteration;
  }

  /** Base64 of what came so far, keeping back the bytes that do not fill a group of three unless it is the end. */
  private base64(chunk: Buffer, last: boolean): Buffer {
    const bytes = this.encodeCarry.length === 0 ? chunk : Buffer.concat([this.encodeCarry, chunk]);
    const whole = last ? bytes.length : bytes.length - (bytes.length % 3);
    this.encodeCarry = bytes.subarray(whole);
    return Buffer.from(bytes.subarray(0, whole).toString('base64'), 'latin1');
  }
}

function isGrpcWeb(type: string | string[] | undefined): boolean {
  return typeof type === 'string' && type.startsWith(GRPC_WEB);
}

const CONFIG: HttpFilterConfig = {
  createFilter: (callbacks) => (isGrpcWeb(callbacks.head.headers['content-type']) ? new GrpcWebFilter(callbacks) : undefined),
  release: () => {},
};

export const GRPC_WEB_FILTER_FACTORY: HttpFilterFactory = {
  name: 'envoy.filters.http.grpc_web',
  configType: 'envoy.extensions.filters.http.grpc_web.v3.GrpcWeb',
  createFilterConfig: () => CONFIG,
};
