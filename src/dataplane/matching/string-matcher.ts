/**
 * `envoy.type.matcher.v3.StringMatcher`, compiled once. `ignore_case` is ASCII-only, as Envoy's
 * (absl::EqualsIgnoreCase / StartsWithIgnoreCase / AsciiStrToLower); it does not apply to `safe_regex`.
 */
import type { envoy } from '../../generated/envoy.js';
import { childPath, type ConfigError } from '../../config/errors.js';
import { compileRegexMatcher } from './regex.js';

export type StringMatchFn = (value: string) => boolean;

const never: StringMatchFn = () => false;

/** ASCII-only lower-casing (what Envoy applies to ignore_case operands). */
export function asciiLower(s: string): string {
  let out = '';
  let copied = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) {
      out += s.substring(copied, i) + String.fromCharCode(c | 0x20);
      copied = i + 1;
    }
  }
  return copied === 0 ? s : out + s.substring(copied);
}

/** Whether `value` holds `lower` (already ASCII-lower-cased) at `offset`, ignoring ASCII case. */
function equalsIgnoreCaseAt(value: string, offset: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    let c = value.charCodeAt(offset + i);
    if (c >= 65 && c <= 90) c |= 0x20;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

function containsIgnoreCase(value: string, lower: string): boolean {
  const last = value.length - lower.length;
  if (lower.length === 0) return true;
  const first = lower.charCodeAt(0);
  for (let i = 0; i <= last; i++) {
    let c = value.charCodeAt(i);
    if (c >= 65 && c <= 90) c |= 0x20;
    if (c === first && equalsIgnoreCaseAt(value, i, lower)) return true;
  }
  return false;
}

function nonEmpty(value: string, field: string, path: string, errors: ConfigError[]): boolean {
  if (value !== '') return true;
  errors.push({ code: 'invalid_value', path: childPath(path, field), message: `StringMatcher.${field} must not be empty` });
  return false;
}

/**
 * Compiles a StringMatcher into a predicate. Config problems are pushed into `errors` and a matcher that never
 * matches is returned.
 */
export function compileStringMatcher(
  m: envoy.type.matcher.v3.StringMatcher | undefined,
  path: string,
  errors: ConfigError[],
): StringMatchFn {
  if (m === undefined || m === null) {
    errors.push({ code: 'missing_required', path, message: 'a StringMatcher is required' });
    return never;
  }
  const ignoreCase = m.ignore_case === true;
  if (m.exact !== undefined) {
    const exact = m.exact;
    if (!ignoreCase) return (v) => v === exact;
    const lower = asciiLower(exact);
    const len = lower.length;
    return (v) => v.length === len && equalsIgnoreCaseAt(v, 0, lower);
  }
  if (m.prefix !== undefined) {
    const prefix = m.prefix;
    if (!nonEmpty(prefix, 'prefix', path, errors)) return never;
    if (!ignoreCase) return (v) => v.startsWith(prefix);
    const lower = asciiLower(prefix);
    const len = lower.length;
    return (v) => v.length >= len && equalsIgnoreCaseAt(v, 0, lower);
  }
  if (m.suffix !== undefined) {
    const suffix = m.suffix;
    if (!nonEmpty(suffix, 'suffix', path, errors)) return never;
    if (!ignoreCase) return (v) => v.endsWith(suffix);
    const lower = asciiLower(suffix);
    const len = lower.length;
    return (v) => v.length >= len && equalsIgnoreCaseAt(v, v.length - len, lower);
  }
  if (m.safe_regex !== undefined) {
    return compileRegexMatcher(m.safe_regex, childPath(path, 'safe_regex'), errors) ?? never;
  }
  if (m.contains !== undefined) {
    const contains = m.contains;
    if (!nonEmpty(contains, 'contains', path, errors)) return never;
    if (!ignoreCase) return (v) => v.includes(contains);
    const lower = asciiLower(contains);
    return (v) => containsIgnoreCase(v, lower);
  }
  if (m.custom !== undefined) {
    const name = m.custom.name ?? m.custom.typed_config?.type_url ?? '';
    errors.push({
      code: 'unsupported_extension',
      path: childPath(path, 'custom'),
      message: `custom string matcher extensions are not supported${name ? ` (${name})` : ''}`,
    });
    return never;
  }
  errors.push({
    code: 'missing_required',
    path,
    message: 'StringMatcher needs one of exact, prefix, suffix, safe_regex, contains',
  });
  return never;
}
