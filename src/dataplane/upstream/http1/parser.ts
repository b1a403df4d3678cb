/**
 * Node's own HTTP/1.x parser (llhttp, the one node:http uses), for reading upstream responses. It is exported
 * by the `_http_common` built-in without types; this file gives it the few that the upstream codec uses.
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
    readonly RESPONSE: number;
    /** (headers: string[], url: string): header lines beyond the first batch, and trailers. */
    readonly kOnHeaders: number;
    /**
     * (versionMajor, versionMinor, headers: string[] | undefined, method, url, statusCode, statusMessage, upgrade,
     * shouldKeepAlive) => 0, or 1 to skip the body (a response to HEAD).
     */
    readonly kOnHeadersComplete: number;
    /** (chunk: Buffer) */
    readonly kOnBody: number;
    readonly kOnMessageComplete: number;
  };
}

export const { HTTPParser } = createRequire(import.meta.url)('_http_common') as HttpParserModule;
