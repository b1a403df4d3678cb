/**
 * `envoy.type.matcher.v3.MetadataMatcher` over dynamic metadata (`StreamInfo.dynamicMetadata`, plain JSON values
 * by filter namespace), compiled once. As Envoy's `Metadata::match`: the value at `filter` then `path` is matched
 * by the ValueMatcher, and `invert` flips the result, missing values included.
 */
import type { envoy } from '../../../../generated/envoy.js';
import { childPath, type ConfigError } from '../../../../config/errors.js';
import { compileStringMatcher } from '../../../../dataplane/matching/string-matcher.js';

export type Metadata = Record<string, Record<string, unknown>> | undefined;
export type MetadataMatchFn = (metadata: Metadata) => boolean;
type ValueMatchFn = (value: unknown) => boolean;

const never: ValueMatchFn = () => false;

function compileValueMatcher(m: envoy.type.matcher.v3.ValueMatcher | undefined, path: string, errors: ConfigError[]): ValueMatchFn {
  if (m === undefined) {
    errors.push({ code: 'missing_required', path, message: 'a ValueMatcher is required' });
    return never;
  }
  if (m.null_match !== undefined) return (v) => v === null;
  if (m.double_match !== undefined) {
    const d = m.double_match;
    if (d.exact !== undefined) {
      const exact = d.exact;
      return (v) => v === exact;
    }
    // DoubleRange: start inclusive, end exclusive.
    const start = d.range?.start ?? 0;
    const end = d.range?.end ?? 0;
    return (v) => typeof v === 'number' && v >= start && v < end;
  }
  if (m.string_match !== undefined) {
    const s = compileStringMatcher(m.string_match, childPath(path, 'string_match'), errors);
    return (v) => typeof v === 'string' && s(v);
  }
  if (m.bool_match !== undefined) {
    const b = m.bool_match;
    return (v) => v === b;
  }
  if (m.present_match !== undefined) {
    const present = m.present_match;
    return (v) => (v !== undefined) === present;
  }
  if (m.list_match !== undefined) {
    const one = compileValueMatcher(m.list_match.one_of, childPath(childPath(path, 'list_match'), 'one_of'), errors);
    return (v) => Array.isArray(v) && v.some(one);
  }
  if (m.or_match !== undefined) {
    const any = (m.or_match.value_matchers ?? []).map((x, i) => compileValueMatcher(x, childPath(childPath(path, 'or_match'), i), errors));
    return (v) => any.some((f) => f(v));
  }
  errors.push({ code: 'missing_required', path, message: 'ValueMatcher needs a match kind' });
  return never;
}

export function compileMetadataMatcher(m: envoy.type.matcher.v3.MetadataMatcher, path: string, errors: ConfigError[]): MetadataMatchFn {
  const filter = m.filter ?? '';
  const keys = (m.path ?? []).map((s) => s.key ?? '');
  if (keys.length === 0) errors.push({ code: 'missing_required', path: childPath(path, 'path'), message: 'MetadataMatcher.path must not be empty' });
  const value = compileValueMatcher(m.value, childPath(path, 'value'), errors);
  const invert = m.invert === true;
  return (metadata) => {
    let v: unknown = metadata?.[filter];
    for (let i = 0; i < keys.length && v !== undefined; i++) {
      v = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>)[keys[i]!] : undefined;
    }
    return value(v) !== invert;
  };
}
