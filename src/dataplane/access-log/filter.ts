/**
 * Envoy's AccessLogFilter, compiled once into a predicate over a finished (or, for local reply mappers,
 * finishing) stream. Used by access logs and by `local_reply_config` mappers.
 */
import type { envoy } from '../../generated/envoy.js';
import type { ConfigError } from '../../config/errors.js';
import { compileHeaderMatcher } from '../matching/header-matcher.js';
import { responseFlagByName } from '../response-flags.js';
import type { Runtime } from '../runtime/runtime.js';
import type { StreamInfo } from '../stream-info.js';

type AccessLogFilter = envoy.config.accesslog.v3.AccessLogFilter;
type ComparisonFilter = envoy.config.accesslog.v3.ComparisonFilter;
type RuntimeFilter = envoy.config.accesslog.v3.RuntimeFilter;

export type StreamPredicate = (info: StreamInfo) => boolean;

const never: StreamPredicate = () => false;
const always: StreamPredicate = () => true;

/** Compiles an AccessLogFilter (the kinds Portico supports; the support table refuses the others by name). */
export function compileStreamFilter(filter: AccessLogFilter, path: string, errors: ConfigError[], runtime: Runtime): StreamPredicate {
  if (filter.status_code_filter) {
    const compare = compileComparison(filter.status_code_filter.comparison, runtime);
    return (info) => compare(info.responseCode);
  }
  if (filter.duration_filter) {
    const compare = compileComparison(filter.duration_filter.comparison, runtime);
    // Envoy's currentDuration(): the final duration once the stream is complete, the time so far before.
    return (info) => compare(Math.floor((info.lastResponseByteMonotonic || performance.now()) - info.startMonotonic));
  }
  // No health check filter marks streams as health checks yet, so every stream passes.
  if (filter.not_health_check_filter) return always;
  // Only requests force-traced by a tracer pass (Envoy's ServiceForced); without tracing there are none.
  if (filter.traceable_filter) return never;
  if (filter.runtime_filter) return compileRuntimeFilter(filter.runtime_filter, runtime);
  if (filter.header_filter) {
    const matches = compileHeaderMatcher(filter.header_filter.header ?? {}, `${path}.header_filter.header`, errors);
    return (info) => matches(info.request);
  }
  if (filter.response_flag_filter) {
    let mask = 0;
    (filter.response_flag_filter.flags ?? []).forEach((name, i) => {
      const bit = responseFlagByName(name);
      if (bit === undefined) {
        errors.push({ code: 'invalid_value', path: `${path}.response_flag_filter.flags[${i}]`, message: `unknown response flag "${name}"` });
      } else {
        mask |= bit;
      }
    });
    // No flags listed: any flag set passes.
    return mask === 0 ? (info) => info.responseFlags !== 0 : (info) => (info.responseFlags & mask) !== 0;
  }
  const operator = filter.and_filter ? 'and_filter' : filter.or_filter ? 'or_filter' : undefined;
  if (operator !== undefined) {
    const children = (filter[operator]?.filters ?? []).map((child, i) =>
      compileStreamFilter(child, `${path}.${operator}.filters[${i}]`, errors, runtime),
    );
    const n = children.length;
    if (operator === 'and_filter') {
      return (info) => {
        for (let i = 0; i < n; i++) if (!children[i]!(info)) return false;
        return true;
      };
    }
    return (info) => {
      for (let i = 0; i < n; i++) if (children[i]!(info)) return true;
      return false;
    };
  }
  errors.push({ code: 'missing_required', path, message: 'the filter sets none of the supported filter kinds' });
  return never;
}

/** Envoy's ComparisonFilter: `op` against `value`, whose runtime key (when set) overrides its default. */
function compileComparison(comparison: ComparisonFilter | undefined, runtime: Runtime): (value: number) => boolean {
  const op = comparison?.op ?? 'EQ';
  const key = comparison?.value?.runtime_key || undefined;
  const fallback = comparison?.value?.default_value ?? 0;
  return (value) => {
    const threshold = key === undefined ? fallback : runtime.getInteger(key, fallback);
    return op === 'GE' ? value >= threshold : op === 'LE' ? value <= threshold : value === threshold;
  };
}

const HEX8 = /^[0-9a-fA-F]{8}/;

/**
 * Envoy's RuntimeFilter: samples `percent_sampled` (the runtime key overriding its numerator). Unless
 * `use_independent_randomness`, the draw comes from the request id (its first 8 hex digits, as Envoy's UUID
 * request id extension), so loggers with the same settings keep or drop the same requests.
 */
function compileRuntimeFilter(config: RuntimeFilter, runtime: Runtime): StreamPredicate {
  const key = config.runtime_key;
  const percent = config.percent_sampled;
  if (config.use_independent_randomness) return () => runtime.fractionEnabled(key, percent, Math.random());
  return (info) => {
    const id = info.requestId;
    const draw = HEX8.test(id) ? Number.parseInt(id.substring(0, 8), 16) / 0x1_0000_0000 : Math.random();
    return runtime.fractionEnabled(key, percent, draw);
  };
}
