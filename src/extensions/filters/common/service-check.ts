/**
 * What a filter that asks a service about a request and waits for the answer (ext_authz, ratelimit) does around
 * the call: it pauses the request unless the answer came while its own callback was still running, resumes or
 * answers locally once it comes, puts the service's headers on the response (local replies included, as they
 * pass the filter's encodeHeaders too), and cancels the call if the stream ends first.
 */
import type { DecoderFilterCallbacks, EncoderFilterCallbacks, ResponseHead } from '../../../dataplane/http/filter.js';
import { FilterHeadersStatus } from '../../../dataplane/http/filter.js';
import type { HeaderMap } from '../../../dataplane/router/header-mutation.js';
import type { AsyncRequestHandle } from '../../../dataplane/upstream/async-client.js';

export abstract class ServiceCheckFilter {
  protected call: AsyncRequestHandle | undefined;
  /** Headers for the response, from the service's answer. */
  protected responseHeaders: HeaderMap | undefined;
  /** The call is in flight: the request waits for it. */
  private waiting = false;
  /** The filter's callback is running: an answer that comes now is its return value, not a resume. */
  private inline = false;
  /** The stream was answered locally. */
  private answered = false;

  constructor(protected readonly callbacks: DecoderFilterCallbacks & EncoderFilterCallbacks) {}

  /** Makes the call (`start` returns its handle); true when its answer came at once and lets the request on. */
  protected ask(start: () => AsyncRequestHandle): boolean {
    this.waiting = this.inline = true;
    this.call = start();
    this.inline = false;
    return !this.waiting && !this.answered;
  }

  /** Still waiting for the answer (the request's later data is buffered meanwhile). */
  protected get pending(): boolean {
    return this.waiting;
  }

  /** Answered locally, by the check or its failure. */
  protected get refused(): boolean {
    return this.answered;
  }

  /** The answer came and the request goes on. */
  protected resume(): void {
    this.call = undefined;
    this.waiting = false;
    if (!this.inline) this.callbacks.continueDecoding();
  }

  /** The answer came and the request is answered from the gateway. */
  protected answer(status: number, body: string, flags: number, details: string, grpcStatus?: number): void {
    this.call = undefined;
    this.waiting = false;
    this.answered = true;
    this.callbacks.sendLocalReply(status, body, flags, details, undefined, grpcStatus);
  }

  encodeHeaders(response: ResponseHead): FilterHeadersStatus {
    const add = this.responseHeaders;
    if (add !== undefined) for (const name in add) response.headers[name] = add[name];
    return FilterHeadersStatus.Continue;
  }

  onDestroy(): void {
    this.call?.cancel();
    this.call = undefined;
  }
}
