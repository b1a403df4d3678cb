/**
 * HttpConnectionManager path normalisation, as Envoy's `ConnectionManagerUtility::maybeNormalizePath` does it
 * on the path part of `:path` (the query string is kept untouched):
 * 1. `path_with_escaped_slashes_action`: `%2F`/`%2f` → `/` and `%5C`/`%5c` → `\` (REJECT_REQUEST rejects instead
 *    when there is any; UNESCAPE_AND_REDIRECT asks for a redirect to the final path when there was any);
 * 2. `normalize_path`: Envoy's snapshot of Chromium's URL path canonicaliser — `\` → `/`, `.`/`..` segments
 *    (also `%2e`-encoded) removed without going above the root, escapes of unreserved characters
 *    (ALPHA DIGIT `-` `.` `_` `~`) decoded, other escapes kept exactly as written (their hex case is NOT
 *    changed, as in Envoy), characters that are not allowed in a path (space, `"`, `#`, `<`, `>`, `^`, `` ` ``,
 *    `{`, `|`, `}`, controls, bytes ≥ 0x7F) percent-encoded; a NUL (raw or `%00`) rejects the request;
 * 3. `merge_slashes`: runs of `/` collapsed.
 */

export type PathAction = 'forward' | 'reject' | 'redirect';

export interface NormalizedPath {
  /** The new `:path` (query included); the same string instance when nothing changed. */
  path: string;
  /** `reject`: answer 400; `redirect`: redirect the client to `path`. */
  action: PathAction;
}

export type PathNormalizer = (path: string) => NormalizedPath;

export interface PathNormalizationOptions {
  normalize_path?: boolean;
  merge_slashes?: boolean;
  path_with_escaped_slashes_action?: string;
}

// Chromium's kPathCharLookup flags.
const SPECIAL = 1;
const ESCAPE_BIT = 2;
const ESCAPE = ESCAPE_BIT | SPECIAL;
const UNESCAPE = 4;
const INVALID_BIT = 8;
const INVALID = INVALID_BIT | SPECIAL;

const PATH_CHAR = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  let f = 0; // PASS: ! $ & ' ( ) * + , / : ; = @ [ ]
  if (c === 0) f = INVALID;
  else if (c < 0x20 || c >= 0x7f) f = ESCAPE;
  else if ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x5f || c === 0x7e) f = UNESCAPE;
  else if (' "#%<>?\\^`{|}'.includes(String.fromCharCode(c))) f = ESCAPE;
  else if (c === 0x2e) f = SPECIAL;
  PATH_CHAR[c] = f;
}

const SLASH = 0x2f;
const BACKSLASH = 0x5c;
const DOT = 0x2e;
const PERCENT = 0x25;
const HEX_UPPER = '0123456789ABCDEF';

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

function isSlash(c: number): boolean {
  return c === SLASH || c === BACKSLASH;
}

/** Length of a dot (`.` or `%2e`/`%2E`) at `i`, else 0. */
function dotLength(spec: string, i: number, end: number): number {
  const c = spec.charCodeAt(i);
  if (c === DOT) return 1;
  if (c === PERCENT && i + 3 <= end && spec.charCodeAt(i + 1) === 0x32 && (spec.charCodeAt(i + 2) | 0x20) === 0x65) return 3;
  return 0;
}

/** Value of a `%XX` escape at `i` in a char-code list or string, else -1. */
function decodeEscaped(at: (k: number) => number, i: number, end: number): number {
  if (i + 3 > end) return -1;
  const hi = hexValue(at(i + 1));
  const lo = hexValue(at(i + 2));
  return hi < 0 || lo < 0 ? -1 : (hi << 4) | lo;
}

function appendEscaped(out: number[], byte: number): void {
  out.push(PERCENT, HEX_UPPER.charCodeAt(byte >> 4), HEX_UPPER.charCodeAt(byte & 15));
}

/** Rewinds the output to just after the previous slash, never above the first one. */
function backUpToPreviousSlash(out: number[]): void {
  let i = out.length - 1;
  if (i === 0) return;
  i--;
  while (out[i] !== SLASH && i > 0) i--;
  out.length = i + 1;
}

/** Chromium's CheckForNestedEscapes: an unescape must not create a new valid escape from an invalid `%`. */
function checkForNestedEscapes(spec: string, next: number, end: number, invalidPercent: number, out: number[]): void {
  const length = out.length;
  const lastUnescaped = out[length - 1]!;
  const appendNext = invalidPercent === length - 2;
  if (appendNext) {
    if (next === end || spec.charCodeAt(next) >= 0x80) return;
    out.push(spec.charCodeAt(next));
  }
  if (decodeEscaped((k) => out[k] ?? -1, invalidPercent, out.length) >= 0) {
    if (!appendNext) out.push(out[invalidPercent + 1]!);
    out[invalidPercent + 1] = 0x32; // '2'
    out[invalidPercent + 2] = 0x35; // '5'
    out.push(lastUnescaped);
  } else if (appendNext) {
    out.length = length;
  }
}

function charCodesToString(codes: number[]): string {
  let s = '';
  for (let k = 0; k < codes.length; k += 8192) s += String.fromCharCode.apply(null, codes.slice(k, k + 8192));
  return s;
}

/** Envoy's `canonicalizePath` (Chromium `CanonicalizePath`); undefined when the path must be rejected. */
export function canonicalizePath(spec: string): string | undefined {
  const end = spec.length;
  const out: number[] = [];
  if (end === 0) return '/';
  if (!isSlash(spec.charCodeAt(0))) out.push(SLASH);
  let success = true;
  let lastInvalidPercent = -Infinity;
  const at = (k: number) => spec.charCodeAt(k);
  for (let i = 0; i < end; i++) {
    const ch = spec.charCodeAt(i);
    if (ch > 0xff) {
      // Not a latin1 byte (Node hands paths over as latin1): escape its UTF-8 bytes.
      const cp = spec.codePointAt(i)!;
      if (cp > 0xffff) i++;
      for (const b of Buffer.from(String.fromCodePoint(cp), 'utf8')) appendEscaped(out, b);
      continue;
    }
    const flags = PATH_CHAR[ch]!;
    if (!(flags & SPECIAL)) {
      out.push(ch);
      continue;
    }
    const dotLen = dotLength(spec, i, end);
    if (dotLen > 0) {
      if (out.length > 0 && out[out.length - 1] === SLASH) {
        const afterDot = i + dotLen;
        let consumed = 0;
        let kind: 'name' | 'cur' | 'up' = 'name';
        if (afterDot === end) {
          kind = 'cur';
        } else if (isSlash(spec.charCodeAt(afterDot))) {
          kind = 'cur';
          consumed = 1;
        } else {
          const second = dotLength(spec, afterDot, end);
          if (second > 0) {
            const after2 = afterDot + second;
            if (after2 === end) {
              kind = 'up';
              consumed = second;
            } else if (isSlash(spec.charCodeAt(after2))) {
              kind = 'up';
              consumed = second + 1;
            }
          }
        }
        if (kind === 'name') {
          out.push(DOT);
          i += dotLen - 1;
        } else {
          if (kind === 'up') backUpToPreviousSlash(out);
          i += dotLen + consumed - 1;
        }
      } else {
        out.push(DOT);
        i += dotLen - 1;
      }
    } else if (ch === BACKSLASH) {
      out.push(SLASH);
    } else if (ch === PERCENT) {
      const value = decodeEscaped(at, i, end);
      if (value >= 0) {
        const valueFlags = PATH_CHAR[value]!;
        if (valueFlags & UNESCAPE) {
          out.push(value);
          i += 2;
          if (lastInvalidPercent >= out.length - 3) checkForNestedEscapes(spec, i + 1, end, lastInvalidPercent, out);
        } else {
          out.push(PERCENT, spec.charCodeAt(i + 1), spec.charCodeAt(i + 2));
          i += 2;
          if (valueFlags & INVALID_BIT) success = false;
        }
      } else {
        lastInvalidPercent = out.length;
        out.push(PERCENT);
      }
    } else if (flags & INVALID_BIT) {
      appendEscaped(out, ch);
      success = false;
    } else if (flags & ESCAPE_BIT) {
      appendEscaped(out, ch);
    }
  }
  return success ? charCodesToString(out) : undefined;
}

const ESCAPED_SLASH = /%(?:2[fF]|5[cC])/g;

/** `%2F`/`%2f` → `/`, `%5C`/`%5c` → `\`; the same instance when there is none. */
export function unescapeSlashes(path: string): string {
  if (!path.includes('%')) return path;
  return path.replace(ESCAPED_SLASH, (m) => (m.charCodeAt(1) === 0x32 ? '/' : '\\'));
}

/** Envoy's `PathUtil::mergeSlashes` on a path without query. */
export function mergeSlashes(path: string): string {
  if (!path.includes('//')) return path;
  const prefix = path.startsWith('/') ? '/' : '';
  const suffix = path.endsWith('/') ? '/' : '';
  return prefix + path.split('/').filter((s) => s !== '').join('/') + suffix;
}

/** Compiles the HCM's normalisation options; undefined when none is enabled (nothing to do per request). */
export function compilePathNormalizer(hcm: PathNormalizationOptions): PathNormalizer | undefined {
  const normalize = hcm.normalize_path === true;
  const merge = hcm.merge_slashes === true;
  const escapedSlashes = hcm.path_with_escaped_slashes_action;
  const reject = escapedSlashes === 'REJECT_REQUEST';
  const redirect = escapedSlashes === 'UNESCAPE_AND_REDIRECT';
  const unescape = reject || redirect || escapedSlashes === 'UNESCAPE_AND_FORWARD';
  if (!normalize && !merge && !unescape) return undefined;

  // Whether a path (query excluded) may need any work: anything else is returned untouched at once.
  const triggers: string[] = [];
  if (normalize) triggers.push('[%\\\\\\x00-\\x20"#<>^`{|}\\x7f-\\uffff]', '\\/\\.', '^[^/]', '^$');
  if (merge) triggers.push('\\/\\/');
  if (unescape) triggers.push('%');
  const mayNeedWork = new RegExp(triggers.join('|'));

  return (full: string): NormalizedPath => {
    const q = full.indexOf('?');
    const path = q < 0 ? full : full.substring(0, q);
    if (!mayNeedWork.test(path)) return { path: full, action: 'forward' };

    let action: PathAction = 'forward';
    let out = path;
    if (unescape) {
      const unescaped = unescapeSlashes(out);
      if (unescaped.length !== out.length) {
        if (reject) return { path: full, action: 'reject' };
        if (redirect) action = 'redirect';
        out = unescaped;
      }
    }
    if (normalize) {
      const canonical = canonicalizePath(out);
      if (canonical === undefined) return { path: full, action: 'reject' };
      out = canonical;
    }
    if (merge) out = mergeSlashes(out);
    if (out === path) return { path: full, action };
    return { path: q < 0 ? out : out + full.substring(q), action };
  };
}
