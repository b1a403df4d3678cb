/**
 * Node's own HTTP/1.x parser (llhttp, the one node:http uses), for the downstream codec (requests) and the
 * upstream one (responses). It is exported by the `_http_common` built-in without types; this file gives it the
 * few that the codecs use.
 */
import { createRequire } from 'node:module';

export interface HttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenientFlags: number): void;
  /** Bytes parsed, or the parse error (`code` HPE_*, `bytesParsed`). Stops early after an upgrade's head. */
  execute(data: Buffer): number | (Error & { code?: string; bytesParsed?: number });
  /** End of input: completes a message read until close, or reports one cut short. */
  finish(): (Error & { code?: string }) | undefined;
  /** Frees the native parser; never from inside one of its own callbacks. */
  close(): void;
  [callback: number]: unknown;
}

interface HttpParserModule {
  HTTPParser: {
    new (): HttpParser;
    readonly REQUEST: number;
    readonly RESPONSE: number;
    /** () once the first byte of a message was parsed. */
    readonly kOnMessageBegin: number;
    /** (headers: string[], url: string): header lines beyond the first batch, and trailers. */
    readonly kOnHeaders: number;
    /**
     * (versionMajor, versionMinor, headers: string[] | undefined, method: index into `methods`, url, statusCode,
     * statusMessage, upgrade, shouldKeepAlive) => 0, or 1 to skip the body (a response to HEAD).
     */
    readonly kOnHeadersComplete: number;
    /** (chunk: Buffer) */
    readonly kOnBody: number;
    readonly kOnMessageComplete: number;
  };
  /** Method names, indexed by the number the parser reports. */
  methods: readonly string[];
}

export const { HTTPParser, methods: METHODS } = createRequire(import.meta.url)('_http_common') as HttpParserModule;
