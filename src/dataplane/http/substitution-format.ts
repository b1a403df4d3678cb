/**
 * Envoy's SubstitutionFormatString (`text_format`, `text_format_source`, `json_format`), compiled once into a
 * function that renders one stream. Used by local reply bodies and access logs.
 */
import type { envoy } from '../../generated/envoy.js';
import type { ConfigError } from '../../config/errors.js';
import type { StreamInfo } from '../stream-info.js';
import { readDataSource } from '../router/route-action.js';
import { compileFormat, compileTypedValue } from './header-formatter.js';

type SubstitutionFormatString = envoy.config.core.v3.SubstitutionFormatString;

export interface SubstitutionFormat {
  render: (info: StreamInfo) => string;
  contentType: string;
}

export function compileSubstitutionFormat(format: SubstitutionFormatString, path: string, errors: ConfigError[]): SubstitutionFormat {
  const omitEmpty = format.omit_empty_values ?? false;
  if (format.json_format !== undefined) {
    return {
      render: compileJsonFormat(format.json_format, `${path}.json_format`, errors, { typed: true, omitEmpty }),
      contentType: format.content_type || 'application/json',
    };
  }
  let text = format.text_format;
  if (text === undefined && format.text_format_source !== undefined) {
    text = readDataSource(format.text_format_source, `${path}.text_format_source`, errors)?.toString();
  }
  const formatter = compileFormat(text ?? '', path, errors, { missing: omitEmpty ? '' : '-' });
  return { render: formatter, contentType: format.content_type || 'text/plain' };
}

export interface JsonFormatOptions {
  /**
   * Values that are exactly one operator keep their type: numbers for numeric operators, `null` when there is
   * no value (Envoy's `json_format`). Off: every value is a string, a missing one `-` (the deprecated
   * `FileAccessLog.json_format`).
   */
  typed: boolean;
  /** Drop keys (and list items) whose value is `null`; missing values inside text print nothing. */
  omitEmpty: boolean;
}

/** A compiled JSON value: its serialized text, or undefined when it is left out (`omit_empty_values`). */
type JsonPiece = (info: StreamInfo) => string | undefined;

/**
 * `json_format`, as Envoy 1.3x writes it: one compact JSON object per line, keys sorted at every level; string
 * values are format strings (a value that is one operator keeps its type when `typed`; other strings are text,
 * a missing operator in them printing `-`); nested objects and lists recurse; numbers, booleans and null stay
 * as written. Whatever does not depend on the stream is serialized once, here.
 */
export function compileJsonFormat(
  template: Record<string, unknown>,
  path: string,
  errors: ConfigError[],
  options: JsonFormatOptions,
): (info: StreamInfo) => string {
  const root = compileJsonValue(template, path, errors, options);
  if (typeof root === 'string') {
    const line = `${root}\n`;
    return () => line;
  }
  // The root object always yields text: only its members can be left out.
  return (info) => `${root(info)!}\n`;
}

function compileJsonValue(value: unknown, path: string, errors: ConfigError[], options: JsonFormatOptions): string | JsonPiece {
  if (typeof value === 'string') return compileJsonString(value, path, errors, options);
  if (Array.isArray(value)) {
    const items = value.map((item, i) => compileJsonValue(item, `${path}[${i}]`, errors, options));
    return joinJson('[', ']', items.map((item) => ['', item]), options.omitEmpty);
  }
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort();
    const members = keys.map((key): [string, string | JsonPiece] => [
      `${JSON.stringify(key)}:`,
      compileJsonValue((value as Record<string, unknown>)[key], `${path}.${key}`, errors, options),
    ]);
    return joinJson('{', '}', members, options.omitEmpty);
  }
  // Numbers, booleans and null as written; untyped output makes them text too.
  return options.typed ? JSON.stringify(value ?? null) : JSON.stringify(String(value));
}

function compileJsonString(template: string, path: string, errors: ConfigError[], options: JsonFormatOptions): string | JsonPiece {
  const missing = options.omitEmpty ? undefined : 'null';
  const single = options.typed ? compileTypedValue(template, path, errors) : undefined;
  if (single !== undefined) {
    if ('constant' in single) return single.constant === undefined ? (missing ?? omitted) : JSON.stringify(single.constant);
    const fn = single.fn;
    if (single.numeric) {
      return (info) => fn(info) ?? missing;
    }
    return (info) => {
      const v = fn(info);
      return v === undefined ? missing : JSON.stringify(v);
    };
  }
  const formatter = compileFormat(template, path, errors, { missing: options.omitEmpty ? '' : '-' });
  if (formatter.constant !== undefined) return JSON.stringify(formatter.constant);
  return (info) => JSON.stringify(formatter(info));
}

/** A member that is always left out: a constant missing value under `omit_empty_values`. */
const omitted: JsonPiece = () => undefined;

/**
 * An object or list from its members (`"key":` prefixes, empty for list items). Without `omitEmpty` no member
 * can be left out, so the text is literal runs and values; with it, separators are decided per stream.
 */
function joinJson(open: string, close: string, members: Array<[string, string | JsonPiece]>, omitEmpty: boolean): string | JsonPiece {
  if (!omitEmpty || members.every(([, v]) => typeof v === 'string')) {
    const parts: Array<string | JsonPiece> = [];
    let literal = open;
    members.forEach(([prefix, v], i) => {
      literal += (i > 0 ? ',' : '') + prefix;
      if (typeof v === 'string') {
        literal += v;
      } else {
        parts.push(literal, v);
        literal = '';
      }
    });
    parts.push(literal + close);
    if (parts.length === 1) return parts[0] as string;
    const n = parts.length;
    return (info) => {
      let out = '';
      for (let i = 0; i < n; i++) {
        const p = parts[i]!;
        out += typeof p === 'string' ? p : p(info);
      }
      return out;
    };
  }
  const n = members.length;
  return (info) => {
    let out = open;
    let first = true;
    for (let i = 0; i < n; i++) {
      const [prefix, v] = members[i]!;
      const text = typeof v === 'string' ? v : v(info);
      if (text === undefined) continue;
      out += first ? prefix + text : `,${prefix}${text}`;
      first = false;
    }
    return out + close;
  };
}
