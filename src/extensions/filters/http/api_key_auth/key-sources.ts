/**
 * Where `envoy.filters.http.api_key_auth` looks for a request's API key: headers, query parameters and cookies, in
 * the configured order, the first non-empty one winning; and how `hide_credentials` takes the key out of all of
 * them before the request goes upstream. Names are compiled once (header names lower-cased).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { type ConfigError, childPath } from '../../../../config/errors.js';
import type { api_key_auth } from '../../../../config/proto/supplement.js';
import type { RequestHead } from '../../../../dataplane/stream-info.js';

const enum SourceKind {
  Header,
  Query,
  Cookie,
}

interface KeySource {
  readonly kind: SourceKind;
  readonly name: string;
}

const BEARER = 'Bearer ';

export class KeySources {
  private constructor(private readonly sources: readonly KeySource[]) {}

  /** Undefined for an empty list: the level does not override the key sources. */
  static compile(configs: readonly api_key_auth.KeySource[] | undefined, path: string, errors: ConfigError[]): KeySources | undefined {
    if (configs === undefined || configs.length === 0) return undefined;
    const sources: KeySource[] = [];
    configs.forEach((config, i) => {
      // As Envoy: `header` takes precedence over `query`, which takes precedence over `cookie`.
      if (config.header) sources.push({ kind: SourceKind.Header, name: config.header.toLowerCase() });
      else if (config.query) sources.push({ kind: SourceKind.Query, name: config.query });
      else if (config.cookie) sources.push({ kind: SourceKind.Cookie, name: config.cookie });
      else errors.push({ code: 'invalid_value', path: childPath(path, i), message: "one of 'header', 'query' or 'cookie' must be set" });
    });
    return new KeySources(sources);
  }

  /** The request's key, from the first source that has a non-empty one; '' when none has. */
  find(head: RequestHead): string {
    for (const source of this.sources) {
      let key: string | undefined;
      if (source.kind === SourceKind.Header) {
        const value = head.headers[source.name];
        key = typeof value === 'string' && value.startsWith(BEARER) ? value.slice(BEARER.length) : (value as string | undefined);
      } else if (source.kind === SourceKind.Query) {
        key = queryParam(head.path, source.name);
      } else {
        key = cookieValue(head.headers, source.name);
      }
      if (key !== undefined && key !== '') return key;
    }
    return '';
  }

  /** Removes the key from every source (`forwarding.hide_credentials`). */
  remove(head: RequestHead): void {
    for (const source of this.sources) {
      if (source.kind === SourceKind.Header) delete head.headers[source.name];
      else if (source.kind === SourceKind.Query) head.path = withoutQueryParam(head.path, source.name);
      else removeCookie(head.headers, source.name);
    }
  }
}

/** A query string component, `+` and percent-decoded; a malformed escape leaves it as it is. */
function decodeComponent(text: string): string {
  if (text.indexOf('%') < 0 && text.indexOf('+') < 0) return text;
  const spaced = text.replaceAll('+', ' ');
  try {
    return decodeURIComponent(spaced);
  } catch {
    return spaced;
  }
}

/** The decoded name of one `name=value` query parameter. */
function paramName(pair: string): string {
  const eq = pair.indexOf('=');
  return decodeComponent(eq < 0 ? pair : pair.slice(0, eq));
}

/** The first value of query parameter `name` in `path`, decoded; scanned in place, as it runs per request. */
function queryParam(path: string, name: string): string | undefined {
  let start = path.indexOf('?') + 1;
  if (start === 0) return undefined;
  while (start <= path.length) {
    let end = path.indexOf('&', start);
    if (end < 0) end = path.length;
    const eq = path.indexOf('=', start);
    const nameEnd = eq >= 0 && eq < end ? eq : end;
    if (decodeComponent(path.slice(start, nameEnd)) === name) return nameEnd === end ? '' : decodeComponent(path.slice(nameEnd + 1, end));
    start = end + 1;
  }
  return undefined;
}

/** `path` without any parameter `name`; without the `?` when no parameter is left. */
function withoutQueryParam(path: string, name: string): string {
  const q = path.indexOf('?');
  if (q < 0) return path;
  const kept = path
    .slice(q + 1)
    .split('&')
    .filter((pair) => paramName(pair) !== name);
  return kept.length === 0 ? path.slice(0, q) : `${path.slice(0, q)}?${kept.join('&')}`;
}

/** The value of cookie `name` (surrounding double quotes removed), from the request's `cookie` header. */
function cookieValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const cookie = headers.cookie;
  if (cookie === undefined) return undefined;
  let start = 0;
  while (start < cookie.length) {
    let end = cookie.indexOf(';', start);
    if (end < 0) end = cookie.length;
    const eq = cookie.indexOf('=', start);
    if (eq >= 0 && eq < end && cookie.slice(start, eq).trim() === name) {
      const value = cookie.slice(eq + 1, end).trim();
      return value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
    }
    start = end + 1;
  }
  return undefined;
}

function removeCookie(headers: IncomingHttpHeaders, name: string): void {
  const cookie = headers.cookie;
  if (cookie === undefined) return;
  const kept = cookie.split(';').filter((part) => {
    const eq = part.indexOf('=');
    return (eq < 0 ? part : part.slice(0, eq)).trim() !== name;
  });
  if (kept.length === 0) delete headers.cookie;
  else headers.cookie = kept.map((part) => part.trim()).join('; ');
}
