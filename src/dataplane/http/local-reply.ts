import type { envoy } from '../../generated/envoy.js';
import type { ConfigError } from '../../config/errors.js';
import { compileHeaderMatcher } from '../matching/header-matcher.js';
import { responseFlagByName } from '../response-flags.js';
import type { Runtime } from '../runtime/runtime.js';
import type { StreamInfo } from '../stream-info.js';
import { compileHeaderMutation, type HeaderMutation } from '../router/header-mutation.js';
import { readDataSource } from '../router/route-action.js';
import { compileFormat, type Formatter } from './header-formatter.js';

type LocalReplyConfig = envoy.extensions.filters.network.http_connection_manager.v3.LocalReplyConfig;
type AccessLogFilter = envoy.config.accesslog.v3.AccessLogFilter;
type SubstitutionFormatString = envoy.config.core.v3.SubstitutionFormatString;

/** A predicate over a finished (or finishing) stream: Envoy's AccessLogFilter. */
export type StreamPredicate = (info: StreamInfo) => boolean;

/** Compiles an AccessLogFilter (the kinds Portico supports) into a predicate. */
export function compileStreamFilter(filter: AccessLogFilter, path: string, errors: ConfigError[], runtime: Runtime): StreamPredicate {
  if (filter.status_code_filter) {
    const compare = compileComparison(filter.status_code_filter.comparison, runtime);
    return (info) => compare(info.responseCode);
  }
  if (filter.duration_filter) {
    const compare = compileComparison(filter.duration_filter.comparison, runtime);
    return (info) => compare(Math.floor(performance.now() - info.startMonotonic));
  }
  if (filter.not_health_check_filter) return () => true;
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
    return mask === 0 ? (info) => info.responseFlags !== 0 : (info) => (info.responseFlags & mask) !== 0;
  }
  const children = filter.and_filter?.filters ?? filter.or_filter?.filters;
  if (children) {
    const kind = filter.and_filter ? 'and_filter' : 'or_filter';
    const compiled = children.map((child, i) => compileStreamFilter(child, `${path}.${kind}.filters[${i}]`, errors, runtime));
    return filter.and_filter ? (info) => compiled.every((p) => p(info)) : (info) => compiled.some((p) => p(info));
  }
  errors.push({ code: 'missing_required', path, message: 'the filter sets none of the supported filter kinds' });
  return () => false;
}

function compileComparison(comparison: envoy.config.accesslog.v3.ComparisonFilter | undefined, runtime: Runtime): (value: number) => boolean {
  const op = comparison?.op ?? 'EQ';
  const key = comparison?.value?.runtime_key;
  const fallback = comparison?.value?.default_value ?? 0;
  return (value) => {
    const threshold = key ? runtime.getInteger(key, fallback) : fallback;
    return op === 'GE' ? value >= threshold : op === 'LE' ? value <= threshold : value === threshold;
  };
}

/** How a local reply body is rendered: plain text, or Envoy's `body_format`. */
interface BodyFormat {
  render(info: StreamInfo): string;
  contentType: string;
}

function compileBodyFormat(format: SubstitutionFormatString, path: string, errors: ConfigError[]): BodyFormat {
  if (format.json_format !== undefined) {
    const render = compileJsonFormat(format.json_format, `${path}.json_format`, errors, format.omit_empty_values ?? false);
    return { render: (info) => JSON.stringify(render(info)) + '\n', contentType: format.content_type ?? 'application/json' };
  }
  const text =
    format.text_format ??
    (format.text_format_source ? readDataSource(format.text_format_source, `${path}.text_format_source`, errors)?.toString() : undefined) ??
    '';
  const formatter = compileFormat(text, path, errors, { missing: format.omit_empty_values ? '' : '-' });
  return { render: formatter, contentType: format.content_type ?? 'text/plain' };
}

/** A format string that is exactly one `%COMMAND(...):N%` operator. */
const SINGLE_OPERATOR = /^%[A-Z0-9_]+(?:\([^)]*\))?(?::[0-9]+)?%$/;

/**
 * `json_format`: string values are format strings; nested objects recurse; other values stay as written. As in
 * Envoy's structured formatter (types preserved): a value that is a single operator becomes JSON null when the
 * operator has no value (an empty string stays `""`, e.g. `%LOCAL_REPLY_BODY%` of an empty body), while a
 * missing operator inside a longer string prints `-` (nothing with `omit_empty_values`).
 */
export function compileJsonFormat(
  template: Record<string, unknown>,
  path: string,
  errors: ConfigError[],
  omitEmpty: boolean,
): (info: StreamInfo) => Record<string, unknown> {
  const fields = Object.entries(template).map(([key, value]): [string, (info: StreamInfo) => unknown] => {
    const fieldPath = `${path}.${key}`;
    if (typeof value === 'string') {
      if (!SINGLE_OPERATOR.test(value)) {
        const formatter: Formatter = compileFormat(value, fieldPath, errors, { missing: omitEmpty ? '' : '-' });
        return [key, formatter];
      }
      // Formatters print a missing value as the given text; printing it two ways tells "missing" from "".
      const formatter: Formatter = compileFormat(value, fieldPath, errors, { missing: '' });
      const dashed: Formatter = compileFormat(value, fieldPath, [], { missing: '-' });
      const numeric = /^%[A-Z_]*(DURATION|BYTES_\w+|RESPONSE_CODE|UPSTREAM_REQUEST_ATTEMPT_COUNT)%$/.test(value);
      return [key, (info) => {
        const s = formatter(info);
        if (s === '' && dashed(info) === '-') return null;
        return numeric && /^\d+$/.test(s) ? Number(s) : s;
      }];
    }
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const nested = compileJsonFormat(value as Record<string, unknown>, fieldPath, errors, omitEmpty);
      return [key, nested];
    }
    return [key, () => value];
  });
  return (info) => {
    const out: Record<string, unknown> = {};
    for (const [key, render] of fields) {
      const value = render(info);
      if (value === null && omitEmpty) continue;
      out[key] = value;
    }
    return out;
  };
}

interface Mapper {
  filter: StreamPredicate;
  status: number | undefined;
  body: string | undefined;
  bodyFormat: BodyFormat | undefined;
  headers: HeaderMutation | undefined;
}

/** The local reply a connection manager sends: status, body, content type and any extra headers. */
export interface LocalReply {
  status: number;
  body: string;
  contentType: string;
  headers: HeaderMutation | undefined;
}

/**
 * `local_reply_config`: the first mapper whose filter matches may change the status, body and headers of a
 * local reply; the body is then rendered with the mapper's or the default `body_format`.
 */
export class LocalReplyRenderer {
  private readonly mappers: Mapper[];
  private readonly bodyFormat: BodyFormat | undefined;

  constructor(config: LocalReplyConfig | undefined, path: string, errors: ConfigError[], runtime: Runtime) {
    this.mappers = (config?.mappers ?? []).map((mapper, i): Mapper => {
      const mapperPath = `${path}.mappers[${i}]`;
      if (!mapper.filter) errors.push({ code: 'missing_required', path: `${mapperPath}.filter`, message: 'a mapper needs a filter' });
      return {
        filter: mapper.filter ? compileStreamFilter(mapper.filter, `${mapperPath}.filter`, errors, runtime) : () => false,
        status: mapper.status_code,
        body: mapper.body ? readDataSource(mapper.body, `${mapperPath}.body`, errors)?.toString() : undefined,
        bodyFormat: mapper.body_format_override
          ? compileBodyFormat(mapper.body_format_override, `${mapperPath}.body_format_override`, errors)
          : undefined,
        headers: compileHeaderMutation(mapper.headers_to_add, undefined, mapperPath, 'headers_to_add', '', errors),
      };
    });
    this.bodyFormat = config?.body_format ? compileBodyFormat(config.body_format, `${path}.body_format`, errors) : undefined;
  }

  render(info: StreamInfo, status: number, body: string): LocalReply {
    let format = this.bodyFormat;
    let headers: HeaderMutation | undefined;
    info.responseCode = status;
    for (const mapper of this.mappers) {
      if (!mapper.filter(info)) continue;
      if (mapper.status !== undefined) status = mapper.status;
      if (mapper.body !== undefined) body = mapper.body;
      if (mapper.bodyFormat) format = mapper.bodyFormat;
      headers = mapper.headers;
      break;
    }
    if (format === undefined) return { status, body, contentType: 'text/plain', headers };
    info.responseCode = status;
    info.localReplyBody = body;
    return { status, body: format.render(info), contentType: format.contentType, headers };
  }
}

