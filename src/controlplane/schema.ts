/**
 * A small checker for the JSON shapes users write (Mapping and Module specs). Each check reports every problem
 * it finds with its path and never throws, so one request answers with all of its mistakes at once.
 */
import { type ConfigError, childPath } from '../config/errors.js';
import { compileRe2 } from '../dataplane/matching/regex.js';

export type Check = (value: unknown, path: string, errors: ConfigError[]) => void;

export function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function wrongType(path: string, expected: string, value: unknown, errors: ConfigError[]): void {
  errors.push({ code: 'wrong_type', path, message: `expected ${expected}, got ${typeName(value)}` });
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// Control characters would end up in headers, paths or logs; none of the string fields has a use for them.
const CONTROL = /[\u0000-\u001f\u007f]/;

export const str =
  (rule?: (s: string, path: string, errors: ConfigError[]) => void, maxLength = 4096): Check =>
  (value, path, errors) => {
    if (typeof value !== 'string') return wrongType(path, 'a string', value, errors);
    if (value.length > maxLength) errors.push({ code: 'invalid_value', path, message: `longer than ${maxLength} characters` });
    else if (CONTROL.test(value)) errors.push({ code: 'invalid_value', path, message: 'contains control characters' });
    else rule?.(value, path, errors);
  };

export const bool: Check = (value, path, errors) => {
  if (typeof value !== 'boolean') wrongType(path, 'true or false', value, errors);
};

export const int =
  (min: number, max = Number.MAX_SAFE_INTEGER): Check =>
  (value, path, errors) => {
    if (typeof value !== 'number' || !Number.isInteger(value)) return wrongType(path, 'an integer', value, errors);
    if (value < min || value > max) {
      errors.push({ code: 'invalid_value', path, message: `must be between ${min} and ${max}, got ${value}` });
    }
  };

export const oneOf =
  <T extends string | number | boolean>(...allowed: T[]): Check =>
  (value, path, errors) => {
    if (!allowed.includes(value as T)) {
      errors.push({ code: 'invalid_value', path, message: `must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, got ${JSON.stringify(value)}` });
    }
  };

export const listOf =
  (item: Check): Check =>
  (value, path, errors) => {
    if (!Array.isArray(value)) return wrongType(path, 'a list', value, errors);
    value.forEach((v, i) => item(v, childPath(path, i), errors));
  };

/** Emissary accepts both `"a, b"` and `["a", "b"]` for CORS lists. */
export const stringOrList: Check = (value, path, errors) => {
  if (typeof value === 'string') return;
  listOf(str())(value, path, errors);
};

export const mapOf =
  (key: Check, item: Check): Check =>
  (value, path, errors) => {
    if (!isObject(value)) return wrongType(path, 'an object', value, errors);
    for (const [k, v] of Object.entries(value)) {
      const itemPath = childPath(path, k);
      key(k, itemPath, errors);
      item(v, itemPath, errors);
    }
  };

export const either =
  (a: Check, b: Check, expected: string): Check =>
  (value, path, errors) => {
    const first: ConfigError[] = [];
    a(value, path, first);
    if (first.length === 0) return;
    const second: ConfigError[] = [];
    b(value, path, second);
    if (second.length === 0) return;
    // Report the alternative whose type matched; if neither did, say what was expected.
    const typed = [first, second].find((e) => e.every((x) => x.code !== 'wrong_type'));
    if (typed) errors.push(...typed);
    else wrongType(path, expected, value, errors);
  };

export interface ObjectShape {
  fields: Record<string, Check>;
  required?: readonly string[];
}

/** An object with known fields: unknown fields and missing required ones are errors. */
export const object =
  (shape: ObjectShape): Check =>
  (value, path, errors) => {
    if (!isObject(value)) return wrongType(path, 'an object', value, errors);
    for (const name of shape.required ?? []) {
      if (value[name] === undefined || value[name] === null) {
        errors.push({ code: 'missing_required', path: childPath(path, name), message: `${name} is required` });
      }
    }
    for (const [name, fieldValue] of Object.entries(value)) {
      const check = shape.fields[name];
      const fieldPath = childPath(path, name);
      if (check === undefined) errors.push({ code: 'unknown_field', path: fieldPath, message: `unknown field "${name}"` });
      else if (fieldValue !== null && fieldValue !== undefined) check(fieldValue, fieldPath, errors);
    }
  };

/** An RE2 pattern as the data plane compiles it. */
export const regex = str((s, path, errors) => void compileRe2(s, path, errors));

// RFC 9110 token characters: what a header name may hold.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export const headerName = str((s, path, errors) => {
  if (!TOKEN.test(s)) errors.push({ code: 'invalid_value', path, message: `"${s}" is not a valid header name` });
}, 256);

/** A header name as a match condition: pseudo-headers such as `:authority` are allowed. */
export const matchHeaderName = str((s, path, errors) => {
  if (!TOKEN.test(s.startsWith(':') ? s.slice(1) : s)) errors.push({ code: 'invalid_value', path, message: `"${s}" is not a valid header name` });
}, 256);

/** A proto3-JSON-like duration as Emissary writes it: `"1.5s"`, `"250ms"`. */
export const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;

export const duration = str((s, path, errors) => {
  if (!DURATION.test(s)) errors.push({ code: 'invalid_value', path, message: `"${s}" is not a duration such as "2.5s" or "250ms"` });
});

export function durationMs(s: string): number {
  const m = DURATION.exec(s)!;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * unit);
}
