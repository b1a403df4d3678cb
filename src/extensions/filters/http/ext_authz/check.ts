/**
 * What both transports of ext_authz (grpc-check.ts, http-check.ts) hand the filter: a check to start for one
 * request, and its outcome in one shape, so that the filter applies an answer the same way whichever service
 * gave it.
 */
import type { AsyncRequestHandle } from '../../../../dataplane/upstream/async-client.js';
import type { DecoderFilterCallbacks } from '../../../../dataplane/http/filter.js';

export const enum CheckStatus {
  Ok,
  Denied,
  /** The service could not be asked or gave no usable answer: `failure_mode_allow` decides. */
  Error,
}

/** A header the answer sets on the upstream request or on the response; `append` adds to a value present. */
export interface HeaderEdit {
  name: string;
  value: string;
  append: boolean;
}

export interface CheckResult {
  status: CheckStatus;
  /** Ok: edits of the upstream request's headers, and headers it loses. */
  upstreamHeaders?: HeaderEdit[];
  headersToRemove?: string[];
  /** Ok (gRPC): query parameters of the upstream request's path to set (replacing every same-named one) and to remove. */
  queryToSet?: [string, string][];
  queryToRemove?: string[];
  /** Ok: added to the upstream's response. Denied: the local reply's headers. */
  responseHeaders?: HeaderEdit[];
  /** Denied: the local reply's status and body. */
  httpStatus?: number;
  body?: string;
  /** Ok: `ok_response.dynamic_metadata` (gRPC) or `dynamic_metadata_from_headers` (HTTP). */
  dynamicMetadata?: Record<string, unknown>;
}

/** What one request's check is made of, beyond the stream itself. */
export interface CheckInput {
  stream: DecoderFilterCallbacks;
  /** The buffered request body, with `with_request_body`. */
  body: Buffer | undefined;
  /** The route's `check_settings.context_extensions` (gRPC only). */
  contextExtensions: Record<string, string> | undefined;
}

/** Told the outcome of a check, once, unless it was cancelled. The filter itself, so a check allocates no closure. */
export interface CheckCallbacks {
  onCheckComplete(result: CheckResult): void;
}

export interface AuthzClient {
  check(input: CheckInput, callbacks: CheckCallbacks): AsyncRequestHandle;
  close(): void;
}

export const ERROR_RESULT: CheckResult = { status: CheckStatus.Error };
