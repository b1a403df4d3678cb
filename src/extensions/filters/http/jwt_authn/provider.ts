/**
 * One `providers` entry of jwt_authn, compiled: where its tokens are found, the claims they must carry, and its
 * keys, inline or from a file (`local_jwks`) or fetched from a cluster (`remote_jwks`: fetched when the
 * configuration starts, before its listeners serve with `async_fetch` unless `fast_listener`, kept
 * `cache_duration`, fetched again for a `kid` it does not know, and kept serving while the JWKS host is down).
 */
import type { envoy } from '../../../../generated/envoy.js';
import type { ConfigError } from '../../../../config/errors.js';
import { parseQuery } from '../../../../dataplane/matching/query-matcher.js';
import { readDataSource } from '../../../../dataplane/router/route-action.js';
import type { RequestHead } from '../../../../dataplane/stream-info.js';
import type { InitManager } from '../../../../dataplane/init-manager.js';
import type { AsyncHttpClient } from '../../../../dataplane/upstream/async-client.js';
import type { Logger } from '../../../../util/logger.js';
import { isSupportedAlgorithm, Jwks } from './jwks.js';

type ProviderConfig = envoy.extensions.filters.http.jwt_authn.v3.JwtProvider;

/** Envoy's texts for why a token was refused (jwt_verify_lib's status messages). */
export const enum Failure {
  Missing = 'Jwt is missing',
  BadFormat = 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections',
  HeaderBase64 = 'Jwt header is an invalid Base64url encoded',
  HeaderJson = 'Jwt header is an invalid JSON',
  NoAlg = 'Jwt header [alg] field is required and must be a string',
  BadAlg = 'Jwt header [alg] is not supported',
  BadKid = 'Jwt header [kid] field is not a string',
  PayloadBase64 = 'Jwt payload is an invalid Base64url encoded',
  PayloadJson = 'Jwt payload is an invalid JSON',
  SignatureBase64 = 'Jwt signature is an invalid Base64url encoded',
  Expired = 'Jwt is expired',
  NotYetValid = 'Jwt not yet valid',
  NoExpiration = 'Jwt doesn\'t have expiration',
  LifetimeTooLong = 'Jwt lifetime exceeds the maximum allowed',
  UnknownIssuer = 'Jwt issuer is not configured',
  AudienceNotAllowed = 'Audiences in Jwt are not allowed',
  NoKeys = 'Jwks remote fetch is failed',
  NoMatchingKey = 'Jwks doesn\'t have key to match kid or alg from Jwt',
  Verification = 'Jwt verification fails',
}

export interface Verified {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  /** The payload segment as it came, for `forward_payload_header`. */
  payloadSegment: string;
}

/** Where a token came from, so that `forward: false` can take it out. */
interface Location {
  header: string | undefined;
  token: string;
}

const DEFAULT_CACHE_MS = 600_000;
/** A kid the JWKS does not know is fetched again at most this often; so are failed fetches, by default. */
const REFETCH_MS = 1000;

export class Provider {
  readonly issuer: string | undefined;
  readonly audiences: readonly string[] | undefined;
  readonly forward: boolean;
  readonly forwardPayloadHeader: string | undefined;
  readonly padPayload: boolean;
  readonly payloadInMetadata: string | undefined;
  readonly headerInMetadata: string | undefined;
  readonly claimToHeaders: readonly { header: string; claim: string }[];
  private readonly clockSkewS: number;
  private readonly maxLifetimeS: number | undefined;
  private readonly requireExpiration: boolean;
  private readonly fromHeaders: readonly { name: string; prefix: string }[];
  private readonly fromParams: readonly string[];
  private readonly fromCookies: readonly string[];
  private jwks: Jwks | undefined;
  /** Remote keys: where and how long; undefined for local ones. */
  private readonly remote:
    | { cluster: string; path: string; authority: string; timeoutMs: number; cacheMs: number; failedRefetchMs: number; holdListeners: boolean }
    | undefined;
  /** `jwt_cache_config`: tokens whose signature verified, so that a token seen again skips the signature check. */
  private readonly verifiedTokens: Map<string, Verified> | undefined;
  private readonly cacheSize: number;
  private fetchedAt = 0;
  private fetching: Promise<void> | undefined;

  constructor(
    readonly name: string,
    config: ProviderConfig,
    path: string,
    errors: ConfigError[],
    private readonly http: AsyncHttpClient,
    private readonly log: Logger,
    private readonly onFetch: (success: boolean) => void,
  ) {
    this.issuer = config.issuer || undefined;
    this.audiences = config.audiences?.length ? config.audiences : undefined;
    this.forward = config.forward ?? false;
    this.forwardPayloadHeader = config.forward_payload_header?.toLowerCase() || undefined;
    this.padPayload = config.pad_forward_payload_header ?? false;
    this.payloadInMetadata = config.payload_in_metadata || undefined;
    this.headerInMetadata = config.header_in_metadata || undefined;
    this.claimToHeaders = (config.claim_to_headers ?? []).map((c) => ({ header: (c.header_name ?? '').toLowerCase(), claim: c.claim_name ?? '' }));
    this.clockSkewS = config.clock_skew_seconds ?? 60;
    this.maxLifetimeS = config.max_lifetime === undefined ? undefined : config.max_lifetime / 1000;
    this.requireExpiration = (config.require_expiration ?? false) || this.maxLifetimeS !== undefined;
    const defaults = config.from_headers === undefined && config.from_params === undefined && config.from_cookies === undefined;
    // Without any location, Envoy looks in `Authorization: Bearer` and the `access_token` parameter.
    this.fromHeaders = defaults ? [{ name: 'authorization', prefix: 'Bearer ' }] : (config.from_headers ?? []).map((h) => ({ name: (h.name ?? '').toLowerCase(), prefix: h.value_prefix ?? '' }));
    this.fromParams = defaults ? ['access_token'] : (config.from_params ?? []);
    this.fromCookies = config.from_cookies ?? [];
    this.cacheSize = config.jwt_cache_config === undefined ? 0 : config.jwt_cache_config.jwt_cache_size || 100;
    this.verifiedTokens = this.cacheSize > 0 ? new Map() : undefined;
    if (config.local_jwks !== undefined) {
      const text = readDataSource(config.local_jwks, `${path}.local_jwks`, errors);
      if (text !== undefined) {
        try {
          this.jwks = Jwks.parse(text.toString());
        } catch (err) {
          errors.push({ code: 'invalid_value', path: `${path}.local_jwks`, message: `invalid JWKS: ${(err as Error).message}` });
        }
      }
    } else if (config.remote_jwks !== undefined) {
      const uri = config.remote_jwks.http_uri;
      let url: URL | undefined;
      try {
        url = new URL(uri?.uri ?? '');
      } catch {
        errors.push({ code: 'invalid_value', path: `${path}.remote_jwks.http_uri.uri`, message: `invalid URI "${uri?.uri ?? ''}"` });
      }
      if (url !== undefined) {
        this.remote = {
          cluster: uri?.cluster ?? '',
          path: `${url.pathname}${url.search}`,
          authority: url.host,
          timeoutMs: uri?.timeout ?? 1000,
          cacheMs: config.remote_jwks.cache_duration ?? DEFAULT_CACHE_MS,
          failedRefetchMs: config.remote_jwks.async_fetch?.failed_refetch_duration ?? REFETCH_MS,
          holdListeners: config.remote_jwks.async_fetch !== undefined && !(config.remote_jwks.async_fetch.fast_listener ?? false),
        };
      }
    } else {
      errors.push({ code: 'missing_required', path, message: `provider "${name}" needs local_jwks or remote_jwks` });
    }
  }

  /**
   * Remote keys are fetched as the configuration starts (its clusters have hosts by then). With `async_fetch` the
   * listeners wait for that fetch, failed or not, unless `fast_listener`; otherwise a request that comes first
   * waits for it itself.
   */
  fetchOnInit(init: InitManager): void {
    const remote = this.remote;
    if (remote === undefined) return;
    init.add(() => {
      const fetched = this.refresh();
      return remote.holdListeners ? fetched : Promise.resolve();
    });
  }

  /** Keys must be fetched before `token` can be checked (none yet, expired, or an unknown kid). */
  needsFetch(kid: string | undefined): boolean {
    const remote = this.remote;
    if (remote === undefined) return false;
    const now = performance.now();
    if (this.jwks === undefined) return this.fetchedAt === 0 || now - this.fetchedAt > remote.failedRefetchMs || this.fetching !== undefined;
    if (now - this.fetchedAt > remote.cacheMs) return true;
    return kid !== undefined && !this.jwks.hasKid(kid) && now - this.fetchedAt > REFETCH_MS;
  }

  /** Fetches the remote JWKS once at a time; on failure the keys held so far stay. */
  refresh(): Promise<void> {
    const remote = this.remote!;
    this.fetching ??= this.http
      .fetch(remote.cluster, { method: 'GET', path: remote.path, authority: remote.authority, timeoutMs: remote.timeoutMs })
      .then((response) => {
        if (response.status !== 200) throw new Error(`HTTP ${response.status}`);
        this.jwks = Jwks.parse(response.body.toString());
        this.onFetch(true);
      })
      .catch((err: Error) => {
        this.onFetch(false);
        this.log.warn(`jwt_authn provider ${this.name}: JWKS fetch from cluster ${remote.cluster} failed: ${err.message}`);
      })
      .finally(() => {
        this.fetchedAt = performance.now();
        this.fetching = undefined;
      });
    return this.fetching;
  }

  /** The token this provider finds in the request, first location first. */
  extract(head: RequestHead): Location | undefined {
    for (const { name, prefix } of this.fromHeaders) {
      const raw = head.headers[name];
      const value = Array.isArray(raw) ? raw[0] : raw;
      if (value === undefined || !value.startsWith(prefix)) continue;
      // What follows the prefix, up to a comma or a space (a header may carry more after the token).
      const rest = value.slice(prefix.length).trim();
      const end = rest.search(/[ ,]/);
      const token = end < 0 ? rest : rest.slice(0, end);
      if (token !== '') return { header: name, token };
    }
    if (this.fromParams.length > 0 && head.path.includes('?')) {
      const query = parseQuery(head.path);
      for (const param of this.fromParams) {
        const token = query.get(param);
        if (token) return { header: undefined, token };
      }
    }
    if (this.fromCookies.length > 0) {
      const cookie = head.headers.cookie;
      if (cookie !== undefined) {
        for (const part of cookie.split(';')) {
          const eq = part.indexOf('=');
          const name = part.slice(0, eq).trim();
          if (eq > 0 && this.fromCookies.includes(name)) return { header: undefined, token: part.slice(eq + 1).trim() };
        }
      }
    }
    return undefined;
  }

  /** Takes the token out of the request, when it came in a header (`forward: false`). */
  strip(head: RequestHead, location: Location): void {
    if (location.header !== undefined) delete head.headers[location.header];
  }

  /** Checks a token: its form, its claims, then its signature; a Verified, or why not. */
  verify(token: string, audiences: readonly string[] | undefined): Verified | Failure {
    const first = token.indexOf('.');
    const second = first < 0 ? -1 : token.indexOf('.', first + 1);
    if (first <= 0 || second < 0 || token.indexOf('.', second + 1) >= 0) return Failure.BadFormat;
    const headerSegment = token.slice(0, first);
    const payloadSegment = token.slice(first + 1, second);
    const header = parseSegment(headerSegment, Failure.HeaderBase64, Failure.HeaderJson);
    if (typeof header === 'string') return header;
    const alg = header.alg;
    if (typeof alg !== 'string') return Failure.NoAlg;
    // `none` is not in the table: an unsigned token is never accepted.
    if (!isSupportedAlgorithm(alg)) return Failure.BadAlg;
    if (header.kid !== undefined && typeof header.kid !== 'string') return Failure.BadKid;
    const payload = parseSegment(payloadSegment, Failure.PayloadBase64, Failure.PayloadJson);
    if (typeof payload === 'string') return payload;
    const signatureSegment = token.slice(second + 1);
    if (!BASE64URL.test(signatureSegment)) return Failure.SignatureBase64;
    if (this.issuer !== undefined && payload.iss !== this.issuer) return Failure.UnknownIssuer;
    const allowed = audiences ?? this.audiences;
    if (allowed !== undefined && !audienceAllowed(payload.aud, allowed)) return Failure.AudienceNotAllowed;
    const now = Date.now() / 1000;
    const exp = typeof payload.exp === 'number' ? payload.exp : undefined;
    const nbf = typeof payload.nbf === 'number' ? payload.nbf : undefined;
    if (exp === undefined && this.requireExpiration) return Failure.NoExpiration;
    if (exp !== undefined && now > exp + this.clockSkewS) return Failure.Expired;
    if (nbf !== undefined && now + this.clockSkewS < nbf) return Failure.NotYetValid;
    if (this.maxLifetimeS !== undefined && exp !== undefined) {
      const issued = typeof payload.iat === 'number' ? payload.iat : now;
      if (exp - issued > this.maxLifetimeS) return Failure.LifetimeTooLong;
    }
    // The claims were checked again above (time passes); only the signature's verdict is kept.
    const cache = this.verifiedTokens;
    const cached = cache?.get(token);
    if (cached !== undefined) return cached;
    const jwks = this.jwks;
    if (jwks === undefined) return Failure.NoKeys;
    const verdict = jwks.verify(alg, header.kid as string | undefined, token.slice(0, second), Buffer.from(signatureSegment, 'base64url'));
    if (verdict !== true) return verdict === 'no_key' ? Failure.NoMatchingKey : Failure.Verification;
    const verified = { header, payload, payloadSegment };
    if (cache !== undefined) {
      // Oldest first out: a Map iterates in insertion order.
      if (cache.size >= this.cacheSize) cache.delete(cache.keys().next().value!);
      cache.set(token, verified);
    }
    return verified;
  }

  /** The token's `kid`, read before the keys are needed (to know whether to fetch). */
  static kidOf(token: string): string | undefined {
    const header = parseSegment(token.slice(0, Math.max(0, token.indexOf('.'))), Failure.HeaderBase64, Failure.HeaderJson);
    return typeof header !== 'string' && typeof header.kid === 'string' ? header.kid : undefined;
  }
}

const BASE64URL = /^[A-Za-z0-9_-]+={0,2}$/;

/** A header or payload segment as a JSON object, or which of Envoy's two reasons it is not. */
function parseSegment(segment: string, badBase64: Failure, badJson: Failure): Record<string, unknown> | Failure {
  if (!BASE64URL.test(segment)) return badBase64;
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString());
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : badJson;
  } catch {
    return badJson;
  }
}

function audienceAllowed(aud: unknown, allowed: readonly string[]): boolean {
  if (typeof aud === 'string') return allowed.includes(aud);
  if (Array.isArray(aud)) return aud.some((a) => typeof a === 'string' && allowed.includes(a));
  return false;
}
