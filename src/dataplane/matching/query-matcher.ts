/**
 * `envoy.config.route.v3.QueryParameterMatcher`s, compiled once. Envoy matches the raw (not percent-decoded)
 * query string, split on `&` and the first `=`, and only looks at the first value of each name.
 *
 * Per request: parse the query at most once, and only when a route has query matchers, e.g.
 *   `if (fn !== MATCH_ALL_QUERIES) ok = fn(query ??= parseQuery(head.path));`
 */
import type { envoy } from '../../generated/envoy.js';
import { childPath, type ConfigError } from '../../config/errors.js';
import { compileStringMatcher } from './string-matcher.js';

export type QueryParams = ReadonlyMap<string, string>;
export type QueryMatchFn = (query: QueryParams) => boolean;

/** Returned for an empty matcher list, so callers can skip parsing (`fn === MATCH_ALL_QUERIES`). */
export const MATCH_ALL_QUERIES: QueryMatchFn = () => true;
const EMPTY_QUERY: QueryParams = new Map();
const never: QueryMatchFn = () => false;

/**
 * Parses the query of a `:path` like Envoy's `QueryParamsMulti::parseQueryString` (no percent-decoding, `+`
 * kept): name → first value; a parameter without `=` has the value `""`.
 */
export function parseQuery(pathWithQuery: string): QueryParams {
  const q = pathWithQuery.indexOf('?');
  if (q < 0 || q === pathWithQuery.length - 1) return EMPTY_QUERY;
  const params = new Map<string, string>();
  const len = pathWithQuery.length;
  let start = q + 1;
  while (start < len) {
    let end = pathWithQuery.indexOf('&', start);
    if (end < 0) end = len;
    const eq = pathWithQuery.indexOf('=', start);
    let name: string;
    let value: string;
    if (eq >= 0 && eq < end) {
      name = pathWithQuery.substring(start, eq);
      value = pathWithQuery.substring(eq + 1, end);
    } else {
      name = pathWithQuery.substring(start, end);
      value = '';
    }
    if (!params.has(name)) params.set(name, value);
    start = end + 1;
  }
  return params;
}

/** Compiles one QueryParameterMatcher. */
export function compileQueryParameterMatcher(
  m: envoy.config.route.v3.QueryParameterMatcher,
  path: string,
  errors: ConfigError[],
): QueryMatchFn {
  const name = m.name ?? '';
  if (name === '') {
    errors.push({ code: 'missing_required', path: childPath(path, 'name'), message: 'QueryParameterMatcher.name is required' });
    return never;
  }
  if (m.string_match !== undefined) {
    const before = errors.length;
    const test = compileStringMatcher(m.string_match, childPath(path, 'string_match'), errors);
    if (errors.length > before) return never;
    return (query) => {
      const v = query.get(name);
      return v !== undefined && test(v);
    };
  }
  if (m.present_match !== undefined) {
    const present = m.present_match === true;
    return (query) => query.has(name) === present;
  }
  return (query) => query.has(name);
}

/** Compiles a list of QueryParameterMatchers that must all match; an empty list is MATCH_ALL_QUERIES. */
export function compileQueryParameterMatchers(
  list: readonly envoy.config.route.v3.QueryParameterMatcher[] | undefined,
  path: string,
  errors: ConfigError[],
): QueryMatchFn {
  if (list === undefined || list.length === 0) return MATCH_ALL_QUERIES;
  const fns = list.map((m, i) => compileQueryParameterMatcher(m, childPath(path, i), errors));
  if (fns.length === 1) return fns[0]!;
  return (query) => {
    for (let i = 0; i < fns.length; i++) if (!fns[i]!(query)) return false;
    return true;
  };
}
