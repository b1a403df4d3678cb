/**
 * `envoy.filters.http.jwt_authn`: JWT authentication. A request's requirement comes from its route
 * (`requirement_name` in a PerRouteConfig) or from the first matching `rules` entry; requirements combine
 * providers (`provider_name`, `provider_and_audiences`, `requires_any`, `requires_all`, `allow_missing`,
 * `allow_missing_or_failed`). A refused request gets 401 (403 for a disallowed audience) with
 * `www-authenticate: Bearer realm=...`, as Envoy answers. With the keys at hand a request is decided at once;
 * only one that waits for a JWKS fetch pauses.
 */
import type { envoy } from '../../../../generated/envoy.js';
import type { ConfigError } from '../../../../config/errors.js';
import {
  type DecoderFilterCallbacks,
  type EncoderFilterCallbacks,
  type FilterFactoryContext,
  FilterHeadersStatus,
  type HttpFilterConfig,
  type HttpFilterFactory,
  type ResponseHead,
  type StreamFilter,
} from '../../../../dataplane/http/filter.js';
import { newMatchContext, RouteMatchConditions } from '../../../../dataplane/router/route-table.js';
import { AsyncHttpClient } from '../../../../dataplane/upstream/async-client.js';
import { defineStats, type StatScope } from '../../../../stats/store.js';
import { Failure, Provider, type Verified } from './provider.js';

type JwtAuthenticationConfig = envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication;
type RequirementConfig = envoy.extensions.filters.http.jwt_authn.v3.JwtRequirement;

/** `http.<stat_prefix>.jwt_authn.` */
export const JWT_AUTHN_STATS = defineStats({
  counters: ['allowed', 'denied', 'cors_preflight_bypassed', 'jwks_fetch_success', 'jwks_fetch_failed'],
  gauges: [],
  histograms: [],
});
const S = JWT_AUTHN_STATS.c;
const METADATA_NAMESPACE = 'envoy.filters.http.jwt_authn';

/** A requirement, compiled: how a request's tokens are judged. */
type Requirement =
  | { kind: 'provider'; provider: Provider; audiences: readonly string[] | undefined }
  | { kind: 'any' | 'all'; requirements: readonly Requirement[] }
  | { kind: 'allow_missing' | 'allow_missing_or_failed' };

/** A requirement's outcome: passed, or refused with Envoy's reason. */
type Outcome = true | Failure;

class JwtAuthnConfig implements HttpFilterConfig {
  readonly providers = new Map<string, Provider>();
  private readonly rules: { match: RouteMatchConditions; requirement: Requirement | undefined }[] = [];
  readonly requirementMap = new Map<string, Requirement>();
  readonly bypassCorsPreflight: boolean;
  readonly stats: StatScope;
  private readonly release_: () => void;

  constructor(config: JwtAuthenticationConfig, context: FilterFactoryContext, path: string, errors: ConfigError[]) {
    const stats = (this.stats = context.stats.scope(JWT_AUTHN_STATS, `http.${context.statPrefix}.jwt_authn.`));
    this.release_ = () => context.stats.release(stats);
    const http = new AsyncHttpClient(context.clusters);
    const counters = this.stats.counters;
    const onFetch = (success: boolean) => counters[success ? S.jwks_fetch_success : S.jwks_fetch_failed]++;
    for (const [name, provider] of Object.entries(config.providers ?? {})) {
      this.providers.set(name, new Provider(name, provider, `${path}.providers["${name}"]`, errors, http, context.log, onFetch));
    }
    for (const [name, requirement] of Object.entries(config.requirement_map ?? {})) {
      this.requirementMap.set(name, this.compileRequirement(requirement, `${path}.requirement_map["${name}"]`, errors));
    }
    (config.rules ?? []).forEach((rule, i) => {
      const at = `${path}.rules[${i}]`;
      let requirement: Requirement | undefined;
      if (rule.requires !== undefined) requirement = this.compileRequirement(rule.requires, `${at}.requires`, errors);
      else if (rule.requirement_name !== undefined) requirement = this.named(rule.requirement_name, `${at}.requirement_name`, errors);
      this.rules.push({ match: new RouteMatchConditions(rule.match ?? {}, `${at}.match`, errors, context.runtime), requirement });
    });
    this.bypassCorsPreflight = config.bypass_cors_preflight ?? false;
    if (config.filter_state_rules !== undefined) errors.push({ code: 'unsupported_field', path: `${path}.filter_state_rules`, message: 'filter_state_rules are not supported' });
    for (const provider of this.providers.values()) provider.fetchOnInit(context.init);
  }

  named(name: string, path: string, errors: ConfigError[]): Requirement | undefined {
    const requirement = this.requirementMap.get(name);
    if (requirement === undefined) errors.push({ code: 'invalid_value', path, message: `no requirement "${name}" in requirement_map` });
    return requirement;
  }

  private compileRequirement(config: RequirementConfig, path: string, errors: ConfigError[]): Requirement {
    const provider = (name: string, at: string, audiences?: readonly string[]): Requirement => {
      const found = this.providers.get(name);
      if (found === undefined) errors.push({ code: 'invalid_value', path: at, message: `no provider "${name}"` });
      return found === undefined ? { kind: 'allow_missing_or_failed' } : { kind: 'provider', provider: found, audiences: audiences?.length ? audiences : undefined };
    };
    if (config.provider_name !== undefined) return provider(config.provider_name, `${path}.provider_name`);
    if (config.provider_and_audiences !== undefined) {
      const p = config.provider_and_audiences;
      return provider(p.provider_name ?? '', `${path}.provider_and_audiences.provider_name`, p.audiences);
    }
    if (config.requires_any !== undefined) {
      return { kind: 'any', requirements: (config.requires_any.requirements ?? []).map((r, i) => this.compileRequirement(r, `${path}.requires_any.requirements[${i}]`, errors)) };
    }
    if (config.requires_all !== undefined) {
      return { kind: 'all', requirements: (config.requires_all.requirements ?? []).map((r, i) => this.compileRequirement(r, `${path}.requires_all.requirements[${i}]`, errors)) };
    }
    if (config.allow_missing !== undefined) return { kind: 'allow_missing' };
    if (config.allow_missing_or_failed !== undefined) return { kind: 'allow_missing_or_failed' };
    errors.push({ code: 'missing_required', path, message: 'a requirement needs one of provider_name, provider_and_audiences, requires_any, requires_all, allow_missing, allow_missing_or_failed' });
    return { kind: 'allow_missing_or_failed' };
  }

  /** The requirement of a request by the rules: the first whose match matches. */
  ruleRequirement(head: DecoderFilterCallbacks['head']): Requirement | undefined {
    if (this.rules.length === 0) return undefined;
    const ctx = newMatchContext(head);
    for (const rule of this.rules) if (rule.match.matches(ctx)) return rule.requirement;
    return undefined;
  }

  createFilter(callbacks: DecoderFilterCallbacks & EncoderFilterCallbacks, routeConfig: unknown): StreamFilter | undefined {
    const perRoute = routeConfig as PerRoute | undefined;
    if (perRoute?.disabled) return undefined;
    return new JwtAuthnFilter(this, callbacks, perRoute?.requirementName);
  }

  release(): void {
    this.release_();
  }
}

interface PerRoute {
  disabled: boolean;
  requirementName: string | undefined;
}

class JwtAuthnFilter implements StreamFilter {
  /** Per provider, the token found and what became of it, so that a provider is judged once per request. */
  private readonly results = new Map<Provider, { location: ReturnType<Provider['extract']>; outcome: Verified | Failure }>();
  private paused = false;
  /** Set when the request was refused: the local reply carries it. */
  private wwwAuthenticate: string | undefined;

  constructor(
    private readonly config: JwtAuthnConfig,
    private readonly callbacks: DecoderFilterCallbacks & EncoderFilterCallbacks,
    private readonly requirementName: string | undefined,
  ) {}

  decodeHeaders(): FilterHeadersStatus {
    const { config, callbacks } = this;
    const head = callbacks.head;
    if (config.bypassCorsPreflight && head.method === 'OPTIONS' && head.headers.origin !== undefined && head.headers['access-control-request-method'] !== undefined) {
      config.stats.counters[S.cors_preflight_bypassed]++;
      return FilterHeadersStatus.Continue;
    }
    const requirement = this.requirementName !== undefined ? config.requirementMap.get(this.requirementName) : config.ruleRequirement(head);
    if (requirement === undefined) return FilterHeadersStatus.Continue;
    const fetches = this.pendingFetches(requirement, []);
    if (fetches.length === 0) return this.decide(requirement) ? FilterHeadersStatus.Continue : FilterHeadersStatus.StopIteration;
    this.paused = true;
    void Promise.all(fetches).then(() => {
      if (!this.paused) return;
      this.paused = false;
      if (this.decide(requirement)) callbacks.continueDecoding();
    });
    return FilterHeadersStatus.StopIteration;
  }

  onDestroy(): void {
    this.paused = false;
  }

  /** The JWKS fetches the request must wait for: a provider whose token is present and whose keys are not. */
  private pendingFetches(requirement: Requirement, out: Promise<void>[]): Promise<void>[] {
    if (requirement.kind === 'provider') {
      const location = requirement.provider.extract(this.callbacks.head);
      if (location !== undefined && requirement.provider.needsFetch(Provider.kidOf(location.token))) out.push(requirement.provider.refresh());
    } else if (requirement.kind === 'any' || requirement.kind === 'all') {
      for (const r of requirement.requirements) this.pendingFetches(r, out);
    }
    return out;
  }

  /** Judges the request; true lets it go on, false answered it. */
  private decide(requirement: Requirement): boolean {
    const outcome = this.evaluate(requirement);
    const { config, callbacks } = this;
    if (outcome === true) {
      config.stats.counters[S.allowed]++;
      this.applyVerified();
      return true;
    }
    config.stats.counters[S.denied]++;
    const head = callbacks.head;
    const q = head.path.indexOf('?');
    const realm = `Bearer realm="http://${head.authority}${q < 0 ? head.path : head.path.slice(0, q)}"`;
    const status = outcome === Failure.AudienceNotAllowed ? 403 : 401;
    const authenticate = outcome === Failure.Missing ? realm : `${realm}, error="invalid_token"`;
    this.wwwAuthenticate = authenticate;
    callbacks.sendLocalReply(status, outcome, 0, `jwt_authn_access_denied{${outcome.replace(/[ \t]/g, '_')}}`);
    return false;
  }

  // Local replies pass here too: the refusal gets its www-authenticate this way.
  encodeHeaders(response: ResponseHead): FilterHeadersStatus {
    if (this.wwwAuthenticate !== undefined) response.headers['www-authenticate'] = this.wwwAuthenticate;
    return FilterHeadersStatus.Continue;
  }

  private evaluate(requirement: Requirement): Outcome {
    switch (requirement.kind) {
      case 'provider':
        return this.judge(requirement.provider, requirement.audiences);
      case 'any': {
        let failure: Failure = Failure.Missing;
        for (const r of requirement.requirements) {
          const outcome = this.evaluate(r);
          if (outcome === true) return true;
          // A token that was present and failed says more than one that is missing.
          if (failure === Failure.Missing) failure = outcome;
        }
        return failure;
      }
      case 'all':
        for (const r of requirement.requirements) {
          const outcome = this.evaluate(r);
          if (outcome !== true) return outcome;
        }
        return true;
      case 'allow_missing': {
        // Every provider's token is judged; a present one that fails refuses the request.
        for (const provider of this.config.providers.values()) {
          const outcome = this.judge(provider, undefined);
          if (outcome !== true && outcome !== Failure.Missing) return outcome;
        }
        return true;
      }
      case 'allow_missing_or_failed':
        for (const provider of this.config.providers.values()) this.judge(provider, undefined);
        return true;
    }
  }

  private judge(provider: Provider, audiences: readonly string[] | undefined): Outcome {
    let result = this.results.get(provider);
    if (result === undefined) {
      const location = provider.extract(this.callbacks.head);
      result = { location, outcome: location === undefined ? Failure.Missing : provider.verify(location.token, audiences) };
      this.results.set(provider, result);
    }
    return typeof result.outcome === 'string' ? result.outcome : true;
  }

  /** What verified tokens give the request: payload headers, metadata, claims as headers; stripped tokens. */
  private applyVerified(): void {
    const { head, info } = this.callbacks;
    for (const [provider, { location, outcome }] of this.results) {
      if (typeof outcome === 'string' || location === undefined) continue;
      if (!provider.forward) provider.strip(head, location);
      if (provider.forwardPayloadHeader !== undefined) {
        const segment = outcome.payloadSegment;
        head.headers[provider.forwardPayloadHeader] = provider.padPayload ? segment.padEnd(Math.ceil(segment.length / 4) * 4, '=') : segment;
      }
      if (provider.payloadInMetadata !== undefined) metadataOf(info)[provider.payloadInMetadata] = outcome.payload;
      if (provider.headerInMetadata !== undefined) metadataOf(info)[provider.headerInMetadata] = outcome.header;
      for (const { header, claim } of provider.claimToHeaders) {
        const value = claimValue(outcome.payload, claim);
        if (value !== undefined) head.headers[header] = value;
      }
    }
  }
}

/** The filter's namespace of the stream's dynamic metadata, where RBAC and access logs read it. */
function metadataOf(info: DecoderFilterCallbacks['info']): Record<string, unknown> {
  return ((info.dynamicMetadata ??= {})[METADATA_NAMESPACE] ??= {});
}

/** A claim (`a.b` reaches into objects) as a header value: strings, numbers and booleans only, as Envoy. */
function claimValue(payload: Record<string, unknown>, claim: string): string | undefined {
  let value: unknown = payload;
  for (const part of claim.split('.')) value = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[part] : undefined;
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? String(value) : undefined;
}

export const JWT_AUTHN_FILTER_FACTORY: HttpFilterFactory = {
  name: 'envoy.filters.http.jwt_authn',
  configType: 'envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication',
  routeConfigType: 'envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig',

  createFilterConfig(config: unknown, context: FilterFactoryContext, path: string, errors: ConfigError[]): HttpFilterConfig {
    return new JwtAuthnConfig(config as JwtAuthenticationConfig, context, path, errors);
  },

  compileRouteConfig(config: unknown): PerRoute {
    const perRoute = config as envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig;
    return { disabled: perRoute.disabled ?? false, requirementName: perRoute.requirement_name || undefined };
  },
};
