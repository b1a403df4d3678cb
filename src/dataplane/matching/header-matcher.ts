/**
 * `envoy.config.route.v3.HeaderMatcher`, compiled once (Envoy's `HeaderUtility::matchHeaders`):
 * - the value is all of the header's values joined with `,`; `:path`, `:method`, `:authority` (also `host`) and
 *   `:scheme` come from the RequestHead;
 * - a missing header matches nothing, inverted or not, except `present_match` (`present_match: false`, or
 *   `present_match: true` with `invert_match`, match an absent header); with `treat_missing_header_as_empty` a
 *   missing header is matched (and inverted) as `""` instead;
 * - no match kind set (or an empty `exact_match`) checks presence.
 */
import type { envoy } from '../../generated/envoy.js';
import { childPath, type ConfigError } from '../../config/errors.js';
import type { RequestHead } from '../stream-info.js';
import { compileRegexMatcher } from './regex.js';
import { compileStringMatcher, type StringMatchFn } from './string-matcher.js';

export type HeaderMatchFn = (head: RequestHead) => boolean;
type HeaderGetter = (head: RequestHead) => string | undefined;

/** Returned for an empty matcher list, so callers can skip the call (`fn === MATCH_ALL_HEADERS`). */
export const MATCH_ALL_HEADERS: HeaderMatchFn = () => true;
const never: HeaderMatchFn = () => false;

/**
 * The value of a request header as Envoy's matchers see it: pseudo-headers from the RequestHead (`host` is
 * `:authority`), repeated values joined with `,`; undefined when absent.
 */
export function headerValue(head: RequestHead, lowerName: string): string | undefined {
  if (lowerName.charCodeAt(0) === 58 /* ':' */) {
    switch (lowerName) {
      case ':path':
        return head.path || undefined;
      case ':method':
        return head.method || undefined;
      case ':authority':
        return head.authority || undefined;
      case ':scheme':
        return head.scheme || undefined;
      default:
        return undefined;
    }
  }
  if (lowerName === 'host') return head.authority || undefined;
  const v = head.headers[lowerName];
  if (v === undefined) return undefined;
  return typeof v === 'string' ? v : v.join(',');
}

/** A getter specialised for one (lower-cased) header name. */
export function compileHeaderGetter(lowerName: string): HeaderGetter {
  switch (lowerName) {
    case ':path':
      return (h) => h.path || undefined;
    case ':method':
      return (h) => h.method || undefined;
    case ':authority':
    case 'host':
      return (h) => h.authority || undefined;
    case ':scheme':
      return (h) => h.scheme || undefined;
  }
  if (lowerName.startsWith(':')) return () => undefined;
  return (h) => {
    const v = h.headers[lowerName];
    if (v === undefined) return undefined;
    return typeof v === 'string' ? v : v.join(',');
  };
}

const WHITESPACE = new Set([0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d]);
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * absl::SimpleAtoi for int64: optional surrounding ASCII whitespace, optional sign, decimal digits, no
 * overflow. Returns a number (exact up to 15 digits) or a bigint for longer values; undefined if invalid.
 */
export function parseInt64(s: string): number | bigint | undefined {
  let start = 0;
  let end = s.length;
  while (start < end && WHITESPACE.has(s.charCodeAt(start))) start++;
  while (end > start && WHITESPACE.has(s.charCodeAt(end - 1))) end--;
  let neg = false;
  const sign = s.charCodeAt(start);
  if (sign === 45 /* - */ || sign === 43 /* + */) {
    neg = sign === 45;
    start++;
  }
  if (start >= end) return undefined;
  let n = 0;
  for (let i = start; i < end; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return undefined;
    n = n * 10 + d;
  }
  if (end - start <= 15) return neg ? -n : n;
  const big = BigInt(s.slice(neg ? start - 1 : start, end).replace('+', ''));
  return big < INT64_MIN || big > INT64_MAX ? undefined : big;
}

function compileRange(r: envoy.type.v3.Int64Range): StringMatchFn {
  const start = Number(r.start ?? 0);
  const end = Number(r.end ?? 0);
  const bigStart = BigInt(Math.trunc(start));
  const bigEnd = BigInt(Math.trunc(end));
  return (v) => {
    const n = parseInt64(v);
    if (n === undefined) return false;
    if (typeof n === 'number') return n >= start && n < end;
    return n >= bigStart && n < bigEnd;
  };
}

function nonEmpty(value: string, field: string, path: string, errors: ConfigError[]): boolean {
  if (value !== '') return true;
  errors.push({ code: 'invalid_value', path: childPath(path, field), message: `HeaderMatcher.${field} must not be empty` });
  return false;
}

/** Compiles one HeaderMatcher. Config problems are pushed into `errors`; the placeholder never matches. */
export function compileHeaderMatcher(
  m: envoy.config.route.v3.HeaderMatcher,
  path: string,
  errors: ConfigError[],
): HeaderMatchFn {
  const name = (m.name ?? '').toLowerCase();
  if (name === '') {
    errors.push({ code: 'missing_required', path: childPath(path, 'name'), message: 'HeaderMatcher.name is required' });
    return never;
  }
  const get = compileHeaderGetter(name);
  const invert = m.invert_match === true;
  const missingAsEmpty = m.treat_missing_header_as_empty === true;

  if (m.present_match !== undefined) {
    const present = m.present_match === true;
    return (h) => (get(h) !== undefined) === present !== invert;
  }

  let test: StringMatchFn | undefined;
  const before = errors.length;
  if (m.string_match !== undefined) {
    test = compileStringMatcher(m.string_match, childPath(path, 'string_match'), errors);
  } else if (m.exact_match !== undefined) {
    const exact = m.exact_match;
    test = exact === '' ? undefined : (v) => v === exact;
  } else if (m.safe_regex_match !== undefined) {
    test = compileRegexMatcher(m.safe_regex_match, childPath(path, 'safe_regex_match'), errors);
  } else if (m.range_match !== undefined) {
    test = compileRange(m.range_match);
  } else if (m.prefix_match !== undefined) {
    const prefix = m.prefix_match;
    if (nonEmpty(prefix, 'prefix_match', path, errors)) test = (v) => v.startsWith(prefix);
  } else if (m.suffix_match !== undefined) {
    const suffix = m.suffix_match;
    if (nonEmpty(suffix, 'suffix_match', path, errors)) test = (v) => v.endsWith(suffix);
  } else if (m.contains_match !== undefined) {
    const contains = m.contains_match;
    if (nonEmpty(contains, 'contains_match', path, errors)) test = (v) => v.includes(contains);
  }
  if (errors.length > before) return never;

  if (test === undefined) {
    // Presence check (no kind, or an empty exact_match): any value matches.
    if (missingAsEmpty) return () => !invert;
    return invert ? () => false : (h) => get(h) !== undefined;
  }
  const t = test;
  if (missingAsEmpty) return (h) => t(get(h) ?? '') !== invert;
  if (invert) {
    return (h) => {
      const v = get(h);
      return v !== undefined && !t(v);
    };
  }
  return (h) => {
    const v = get(h);
    return v !== undefined && t(v);
  };
}

/** Compiles a list of HeaderMatchers that must all match; an empty list is MATCH_ALL_HEADERS. */
export function compileHeaderMatchers(
  list: readonly envoy.config.route.v3.HeaderMatcher[] | undefined,
  path: string,
  errors: ConfigError[],
): HeaderMatchFn {
  if (list === undefined || list.length === 0) return MATCH_ALL_HEADERS;
  const fns = list.map((m, i) => compileHeaderMatcher(m, childPath(path, i), errors));
  if (fns.length === 1) return fns[0]!;
  if (fns.length === 2) {
    const [a, b] = fns as [HeaderMatchFn, HeaderMatchFn];
    return (h) => a(h) && b(h);
  }
  return (h) => {
    for (let i = 0; i < fns.length; i++) if (!fns[i]!(h)) return false;
    return true;
  };
}
