/**
 * RE2 (Envoy's regex engine) on top of JS RegExp: patterns are translated once, at config time, into an
 * equivalent `u`-mode JS source, and what RE2 does not support (backreferences, lookaround, atomic groups,
 * possessive quantifiers) is rejected with `invalid_regex`, as Envoy rejects it.
 *
 * Translation notes (RE2 semantics kept exactly unless said otherwise):
 * - `.` never matches `\n` only (JS `.` also skips `\r`, U+2028, U+2029), `(?s)` makes it match everything.
 * - `^`/`$` are text anchors; under `(?m)` they match around `\n` only. `\A` → `^`, `\z` → `$`.
 * - `\s` is RE2's ASCII `[\t\n\f\r ]`; `\d`, `\w`, `\b` are the same in both engines.
 * - `(?i)` in effect for the whole pattern becomes the JS `i` flag; a case-insensitive region inside an
 *   otherwise case-sensitive pattern (`a(?i:b)`) is expanded into case-closed character classes.
 * - `(?U)` swaps greedy and lazy quantifiers.
 * - `\Q...\E`, POSIX classes (`[[:alpha:]]`, `[[:^digit:]]`), `\pN`, `\p{Greek}`, `\x{10FFFF}`, octal escapes.
 */
import type { envoy } from '../../generated/envoy.js';
import { childPath, type ConfigError } from '../../config/errors.js';

interface Flags {
  i: boolean;
  m: boolean;
  s: boolean;
  U: boolean;
}

class Re2SyntaxError extends Error {}

const GENERAL_CATEGORIES = new Set([
  'C', 'Cc', 'Cf', 'Co', 'Cs', 'L', 'Ll', 'Lm', 'Lo', 'Lt', 'Lu', 'M', 'Mc', 'Me', 'Mn', 'N', 'Nd', 'Nl', 'No',
  'P', 'Pc', 'Pd', 'Pe', 'Pf', 'Pi', 'Po', 'Ps', 'S', 'Sc', 'Sk', 'Sm', 'So', 'Z', 'Zl', 'Zp', 'Zs',
]);

/** RE2's POSIX classes, as inclusive code point ranges. */
const POSIX_CLASSES: Record<string, number[]> = {
  alnum: [0x30, 0x39, 0x41, 0x5a, 0x61, 0x7a],
  alpha: [0x41, 0x5a, 0x61, 0x7a],
  ascii: [0x00, 0x7f],
  blank: [0x09, 0x09, 0x20, 0x20],
  cntrl: [0x00, 0x1f, 0x7f, 0x7f],
  digit: [0x30, 0x39],
  graph: [0x21, 0x7e],
  lower: [0x61, 0x7a],
  print: [0x20, 0x7e],
  punct: [0x21, 0x2f, 0x3a, 0x40, 0x5b, 0x60, 0x7b, 0x7e],
  space: [0x09, 0x0d, 0x20, 0x20],
  upper: [0x41, 0x5a],
  word: [0x30, 0x39, 0x41, 0x5a, 0x5f, 0x5f, 0x61, 0x7a],
  xdigit: [0x30, 0x39, 0x41, 0x46, 0x61, 0x66],
};

/** RE2 `\s`. */
const PERL_SPACE = [0x09, 0x0a, 0x0c, 0x0d, 0x20, 0x20];
const MAX_RUNE = 0x10ffff;
const MAX_REPEAT = 1000;
const SYNTAX_CHARS = new Set('^$\\.*+?()[]{}|/'.split(''));

function isWordChar(c: string | undefined): boolean {
  return c !== undefined && /^[0-9A-Za-z_]$/.test(c);
}
function isAlnumCode(cp: number): boolean {
  return (cp >= 0x30 && cp <= 0x39) || (cp >= 0x41 && cp <= 0x5a) || (cp >= 0x61 && cp <= 0x7a);
}
function isHex(c: string | undefined): boolean {
  return c !== undefined && /^[0-9A-Fa-f]$/.test(c);
}
function isOctal(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '7';
}

/** Code points equal to `cp` under simple case folding (approximated with JS case mapping). */
function caseVariants(cp: number): number[] {
  const set = new Set<number>([cp]);
  for (let round = 0; round < 2; round++) {
    for (const c of [...set]) {
      const s = String.fromCodePoint(c);
      for (const t of [s.toLowerCase(), s.toUpperCase()]) {
        const v = t.codePointAt(0)!;
        if (String.fromCodePoint(v) === t) set.add(v);
      }
    }
  }
  return [...set].sort((a, b) => a - b);
}

/** Sorts and merges a flat list of inclusive ranges `[lo0, hi0, lo1, hi1, ...]`. */
function normalizeRanges(r: number[]): number[] {
  const pairs: Array<[number, number]> = [];
  for (let k = 0; k < r.length; k += 2) pairs.push([r[k]!, r[k + 1]!]);
  pairs.sort((a, b) => a[0] - b[0]);
  const out: number[] = [];
  for (const [lo, hi] of pairs) {
    const n = out.length;
    if (n > 0 && lo <= out[n - 1]! + 1) {
      if (hi > out[n - 1]!) out[n - 1] = hi;
    } else {
      out.push(lo, hi);
    }
  }
  return out;
}

function complementRanges(r: number[]): number[] {
  const n = normalizeRanges(r);
  const out: number[] = [];
  let next = 0;
  for (let k = 0; k < n.length; k += 2) {
    if (n[k]! > next) out.push(next, n[k]! - 1);
    next = n[k + 1]! + 1;
  }
  if (next <= MAX_RUNE) out.push(next, MAX_RUNE);
  return out;
}

/** Adds every case variant of the cased code points in the ranges (case-insensitive class). */
function foldRanges(r: number[]): number[] {
  const out = r.slice();
  for (let k = 0; k < r.length; k += 2) {
    const hi = Math.min(r[k + 1]!, 0x1ffff);
    for (let cp = r[k]!; cp <= hi; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      for (const v of caseVariants(cp)) if (v !== cp) out.push(v, v);
    }
  }
  return normalizeRanges(out);
}

function classCp(cp: number): string {
  return isAlnumCode(cp) ? String.fromCharCode(cp) : `\\u{${cp.toString(16)}}`;
}

function literalCp(cp: number): string {
  if (isAlnumCode(cp)) return String.fromCharCode(cp);
  const ch = String.fromCodePoint(cp);
  if (SYNTAX_CHARS.has(ch)) return '\\' + ch;
  if ((cp >= 0x20 && cp < 0x7f) || (cp >= 0xa0 && (cp < 0xd800 || cp > 0xdfff))) return ch;
  return `\\u{${cp.toString(16)}}`;
}

interface Translation {
  source: string;
  /** Some case-sensitive content was emitted while `(?i)` was off. */
  sawCaseSensitive: boolean;
}

/**
 * Translates RE2 syntax to a `u`-mode JS source. With `jsI`, the caller compiles with the JS `i` flag (valid
 * only when no case-sensitive content is emitted, which the result reports).
 */
function translate(p: string, init: Flags, jsI: boolean): Translation {
  const n = p.length;
  const out: string[] = [];
  let pos = 0;
  let flags: Flags = { ...init };
  const stack: Array<{ flags: Flags; start: number }> = [];
  /** What precedes a quantifier: nothing, an atom, an assertion (needs a group to repeat in JS), a repeat. */
  let last: 'none' | 'atom' | 'assert' | 'repeat' = 'none';
  let atomStart = 0;
  let sawCaseSensitive = false;
  const names = new Set<string>();

  const fail = (msg: string): never => {
    throw new Re2SyntaxError(msg);
  };
  const foldHere = () => flags.i && !jsI;

  const emit = (text: string, kind: 'atom' | 'assert') => {
    atomStart = out.length;
    out.push(text);
    last = kind;
  };

  const emitLiteral = (cp: number) => {
    const variants = caseVariants(cp);
    if (variants.length > 1 && !flags.i) sawCaseSensitive = true;
    if (variants.length > 1 && foldHere()) emit('[' + variants.map(classCp).join('') + ']', 'atom');
    else emit(literalCp(cp), 'atom');
  };

  /** Parses `\p{...}` / `\pL` / `\P...` at `pos` (on the backslash); returns the JS escape. */
  const parseUnicodeClass = (): string => {
    let negated = p[pos + 1] === 'P';
    pos += 2;
    if (pos >= n) fail('missing Unicode class name after \\p');
    let name: string;
    if (p[pos] === '{') {
      const end = p.indexOf('}', pos);
      if (end < 0) fail(`missing closing } in ${p.slice(pos - 2)}`);
      name = p.slice(pos + 1, end);
      pos = end + 1;
    } else {
      const cp = p.codePointAt(pos)!;
      name = String.fromCodePoint(cp);
      pos += cp > 0xffff ? 2 : 1;
    }
    if (name.startsWith('^')) {
      negated = !negated;
      name = name.slice(1);
    }
    const prop = GENERAL_CATEGORIES.has(name) || name === 'Any' ? name : `Script=${name}`;
    const js = `\\${negated ? 'P' : 'p'}{${prop}}`;
    try {
      new RegExp(js, 'u');
    } catch {
      fail(`invalid character class range: \\p{${name}}`);
    }
    if (!flags.i) sawCaseSensitive = true;
    return js;
  };

  /**
   * Parses a single-character escape at `pos` (on the backslash) shared by classes and the top level;
   * returns the code point, or fails.
   */
  const parseCharEscape = (): number => {
    const e = p[pos + 1];
    if (e === undefined) return fail('trailing \\');
    if (e >= '1' && e <= '9') {
      if (e <= '7' && isOctal(p[pos + 2])) {
        let end = pos + 3;
        if (isOctal(p[end])) end++;
        const cp = parseInt(p.slice(pos + 1, end), 8);
        pos = end;
        return cp;
      }
      return fail(`backreference \\${e} is not supported by RE2`);
    }
    if (e === '0') {
      let end = pos + 2;
      if (isOctal(p[end])) end++;
      if (isOctal(p[end])) end++;
      const cp = parseInt(p.slice(pos + 1, end), 8);
      pos = end;
      return cp;
    }
    if (e === 'x') {
      if (p[pos + 2] === '{') {
        const end = p.indexOf('}', pos + 3);
        const hex = end < 0 ? '' : p.slice(pos + 3, end);
        if (!/^[0-9A-Fa-f]+$/.test(hex) || parseInt(hex, 16) > MAX_RUNE) return fail(`invalid escape sequence: ${p.slice(pos, end < 0 ? n : end + 1)}`);
        pos = end + 1;
        return parseInt(hex, 16);
      }
      if (!isHex(p[pos + 2]) || !isHex(p[pos + 3])) return fail(`invalid escape sequence: ${p.slice(pos, pos + 4)}`);
      const cp = parseInt(p.slice(pos + 2, pos + 4), 16);
      pos += 4;
      return cp;
    }
    const simple: Record<string, number> = { a: 7, f: 12, n: 10, r: 13, t: 9, v: 11 };
    if (simple[e] !== undefined) {
      pos += 2;
      return simple[e];
    }
    const cp = e.codePointAt(0)!;
    if (cp < 0x80 && !isWordChar(e)) {
      pos += 2;
      return cp;
    }
    if (e === 'C') return fail('\\C (match any byte) is not supported');
    return fail(`invalid escape sequence: \\${e}`);
  };

  const parseClass = () => {
    pos++; // '['
    let negated = false;
    if (p[pos] === '^') {
      negated = true;
      pos++;
    }
    let ranges: number[] = [];
    const raws: string[] = [];
    let first = true;
    for (;;) {
      if (pos >= n) fail('missing closing ]');
      const c = p[pos];
      if (c === ']' && !first) {
        pos++;
        break;
      }
      first = false;
      if (c === '[' && p[pos + 1] === ':') {
        const end = p.indexOf(':]', pos + 2);
        if (end >= 0) {
          let name = p.slice(pos + 2, end);
          const neg = name.startsWith('^');
          if (neg) name = name.slice(1);
          const r = POSIX_CLASSES[name];
          if (r === undefined) fail(`invalid character class range: ${p.slice(pos, end + 2)}`);
          ranges.push(...(neg ? complementRanges(r!) : r!));
          pos = end + 2;
          continue;
        }
      }
      if (c === '\\') {
        const e = p[pos + 1];
        if (e === 'd' || e === 'D' || e === 'w' || e === 'W') {
          raws.push('\\' + e);
          if (e === 'w' || e === 'W') sawCaseSensitive ||= !flags.i;
          pos += 2;
          continue;
        }
        if (e === 's' || e === 'S') {
          ranges.push(...(e === 's' ? PERL_SPACE : complementRanges(PERL_SPACE)));
          pos += 2;
          continue;
        }
        if (e === 'p' || e === 'P') {
          raws.push(parseUnicodeClass());
          continue;
        }
      }
      const lo = parseClassChar();
      if (p[pos] === '-' && pos + 1 < n && p[pos + 1] !== ']') {
        pos++;
        if (p[pos] === '\\' && /^[dDwWsSpP]$/.test(p[pos + 1] ?? '')) fail(`bad character class range: ${p.slice(pos - 2, pos + 2)}`);
        const hi = parseClassChar();
        if (hi < lo) fail(`bad character class range: ${String.fromCodePoint(lo)}-${String.fromCodePoint(hi)}`);
        ranges.push(lo, hi);
      } else {
        ranges.push(lo, lo);
      }
    }
    ranges = normalizeRanges(ranges);
    if (!flags.i) sawCaseSensitive = true;
    if (foldHere()) ranges = foldRanges(ranges);
    let body = '';
    for (let k = 0; k < ranges.length; k += 2) {
      const lo = ranges[k]!;
      const hi = ranges[k + 1]!;
      body += lo === hi ? classCp(lo) : hi === lo + 1 ? classCp(lo) + classCp(hi) : `${classCp(lo)}-${classCp(hi)}`;
    }
    body += raws.join('');
    emit(`[${negated ? '^' : ''}${body}]`, 'atom');
  };

  const parseClassChar = (): number => {
    if (p[pos] === '\\') return parseCharEscape();
    const cp = p.codePointAt(pos)!;
    pos += cp > 0xffff ? 2 : 1;
    return cp;
  };

  const quantifier = (op: string) => {
    if (last === 'none') fail(`missing argument to repetition operator: ${op}`);
    if (last === 'repeat') {
      fail(op === '+' ? `possessive quantifier ${p.slice(Math.max(0, pos - 3), pos)} is not supported by RE2` : `bad repetition operator: ${op}`);
    }
    let lazy = false;
    if (p[pos] === '?') {
      lazy = true;
      pos++;
    }
    if (last === 'assert') {
      out.splice(atomStart, 0, '(?:');
      out.push(')');
    }
    out.push(op + (lazy !== flags.U ? '?' : ''));
    last = 'repeat';
  };

  const parseGroup = () => {
    if (p[pos + 1] !== '?') {
      stack.push({ flags: { ...flags }, start: out.length });
      out.push('(');
      pos++;
      last = 'none';
      return;
    }
    const rest = p.slice(pos + 2, pos + 4);
    const named = rest.startsWith('P<') ? 4 : rest.startsWith('<') && rest[1] !== '=' && rest[1] !== '!' ? 3 : 0;
    if (named) {
      const end = p.indexOf('>', pos + named);
      const name = end < 0 ? '' : p.slice(pos + named, end);
      if (!/^[A-Za-z0-9_]+$/.test(name)) fail(`invalid named capture group: ${p.slice(pos, end < 0 ? n : end + 1)}`);
      if (names.has(name)) fail(`duplicate capture group name: ${name}`);
      names.add(name);
      stack.push({ flags: { ...flags }, start: out.length });
      // JS group names cannot start with a digit; such a group stays an ordinary (same-numbered) capture.
      out.push(/^[0-9]/.test(name) ? '(' : `(?<${name}>`);
      pos = end + 1;
      last = 'none';
      return;
    }
    if (rest.startsWith('P=')) fail('backreference (?P=name) is not supported by RE2');
    if (rest.startsWith('P>')) fail('recursion (?P>name) is not supported by RE2');
    if (rest.startsWith('=')) fail('lookahead (?= is not supported by RE2');
    if (rest.startsWith('!')) fail('negative lookahead (?! is not supported by RE2');
    if (rest.startsWith('<=')) fail('lookbehind (?<= is not supported by RE2');
    if (rest.startsWith('<!')) fail('negative lookbehind (?<! is not supported by RE2');
    if (rest.startsWith('>')) fail('atomic group (?> is not supported by RE2');
    if (rest.startsWith('#')) fail('comment group (?# is not supported by RE2');
    if (rest.startsWith('|')) fail('branch reset group (?| is not supported by RE2');
    const m = /^\(\?([a-zA-Z]*)(?:(-)([a-zA-Z]*))?([:)])/.exec(p.slice(pos, pos + 16));
    const on = m?.[1] ?? '';
    const off = m?.[3] ?? '';
    if (!m || !/^[imsU]*$/.test(on + off) || (m[2] !== undefined && off === '') || (on === '' && m[2] === undefined && m[4] === ')')) {
      fail(`invalid or unsupported Perl syntax: ${p.slice(pos, Math.min(n, pos + 4))}`);
    }
    const next: Flags = { ...flags };
    for (const f of on) next[f as keyof Flags] = true;
    for (const f of off) next[f as keyof Flags] = false;
    pos += m![0].length;
    if (m![4] === ':') {
      stack.push({ flags: { ...flags }, start: out.length });
      out.push('(?:');
      last = 'none';
    }
    flags = next;
  };

  while (pos < n) {
    const c = p[pos]!;
    switch (c) {
      case '(':
        parseGroup();
        break;
      case ')': {
        const frame = stack.pop();
        if (frame === undefined) fail('unexpected ) (missing opening parenthesis)');
        flags = frame!.flags;
        out.push(')');
        atomStart = frame!.start;
        last = 'atom';
        pos++;
        break;
      }
      case '|':
        out.push('|');
        last = 'none';
        pos++;
        break;
      case '^':
        emit(flags.m ? '(?<=^|\\n)' : '^', 'assert');
        pos++;
        break;
      case '$':
        emit(flags.m ? '(?=\\n|$)' : '$', 'assert');
        pos++;
        break;
      case '.':
        emit(flags.s ? '[\\s\\S]' : '[^\\n]', 'atom');
        pos++;
        break;
      case '*':
      case '+':
      case '?':
        pos++;
        quantifier(c);
        break;
      case '{': {
        const m = /^\{(\d+)(,(\d*))?\}/.exec(p.slice(pos, pos + 24));
        if (!m) {
          emitLiteral(0x7b);
          pos++;
          break;
        }
        const min = Number(m[1]);
        const max = m[2] === undefined ? min : m[3] === '' ? -1 : Number(m[3]);
        if (min > MAX_REPEAT || max > MAX_REPEAT || (max >= 0 && max < min)) fail(`bad repetition operator: ${m[0]}`);
        pos += m[0].length;
        quantifier(m[0]);
        break;
      }
      case '[':
        parseClass();
        break;
      case '\\': {
        const e = p[pos + 1];
        if (e === undefined) fail('trailing \\');
        if (e === 'Q') {
          pos += 2;
          while (pos < n) {
            if (p[pos] === '\\' && p[pos + 1] === 'E') {
              pos += 2;
              break;
            }
            const cp = p.codePointAt(pos)!;
            emitLiteral(cp);
            pos += cp > 0xffff ? 2 : 1;
          }
          break;
        }
        const asserts: Record<string, string> = { A: '^', z: '$', b: '\\b', B: '\\B' };
        if (asserts[e!] !== undefined) {
          emit(asserts[e!]!, 'assert');
          pos += 2;
          break;
        }
        if (e === 'd' || e === 'D' || e === 'w' || e === 'W') {
          if (e === 'w' || e === 'W') sawCaseSensitive ||= !flags.i;
          emit('\\' + e, 'atom');
          pos += 2;
          break;
        }
        if (e === 's' || e === 'S') {
          emit(e === 's' ? '[\\t\\n\\f\\r ]' : '[^\\t\\n\\f\\r ]', 'atom');
          pos += 2;
          break;
        }
        if (e === 'p' || e === 'P') {
          const js = parseUnicodeClass();
          emit(js, 'atom');
          break;
        }
        emitLiteral(parseCharEscape());
        break;
      }
      default: {
        const cp = p.codePointAt(pos)!;
        emitLiteral(cp);
        pos += cp > 0xffff ? 2 : 1;
      }
    }
  }
  if (stack.length > 0) fail('missing closing )');
  return { source: out.join(''), sawCaseSensitive };
}

/**
 * Compiles an RE2 pattern into a JS RegExp (always `u` mode; the translation only emits `u`-valid syntax).
 * `flags` may hold `i`, `m`, `s` (initial RE2 flags) and `g`, `y`, `d` (passed to JS). Problems are pushed
 * into `errors` with code `invalid_regex`, and undefined is returned.
 */
export function compileRe2(pattern: string, path: string, errors: ConfigError[], flags = ''): RegExp | undefined {
  const init: Flags = { i: flags.includes('i'), m: flags.includes('m'), s: flags.includes('s'), U: false };
  const extra = flags.replace(/[^gyd]/g, '');
  let t: Translation;
  let jsI = init.i || /\(\?[a-zA-Z-]*i/.test(pattern);
  try {
    t = translate(pattern, init, jsI);
    if (jsI && t.sawCaseSensitive) {
      jsI = false;
      t = translate(pattern, init, false);
    }
  } catch (e) {
    if (!(e instanceof Re2SyntaxError)) throw e;
    errors.push({ code: 'invalid_regex', path, message: `invalid regex '${pattern}': ${e.message}` });
    return undefined;
  }
  try {
    return new RegExp(t.source, 'u' + (jsI ? 'i' : '') + extra);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    errors.push({ code: 'invalid_regex', path, message: `invalid regex '${pattern}': ${msg}` });
    return undefined;
  }
}

/** The same regex anchored to match the whole input (Envoy's safe_regex matching is a full match). */
export function fullMatch(re: RegExp): RegExp {
  return new RegExp(`^(?:${re.source})$`, re.flags.replace(/[gy]/g, ''));
}

/**
 * Compiles an `envoy.type.matcher.v3.RegexMatcher` for full-match use (`re.test(value)`). A missing or empty
 * `regex` is `missing_required`.
 */
export function compileRegexMatcher(
  m: envoy.type.matcher.v3.RegexMatcher | undefined,
  path: string,
  errors: ConfigError[],
): RegExp | undefined {
  const regexPath = childPath(path, 'regex');
  if (m === undefined || typeof m.regex !== 'string' || m.regex === '') {
    errors.push({ code: 'missing_required', path: regexPath, message: 'RegexMatcher.regex is required' });
    return undefined;
  }
  const re = compileRe2(m.regex, regexPath, errors);
  return re === undefined ? undefined : fullMatch(re);
}

/** Number of capturing groups of a compiled regex. */
export function captureGroupCount(re: RegExp): number {
  return new RegExp(`${re.source}|`, re.flags.replace(/[gy]/g, '')).exec('')!.length - 1;
}

const identity = (s: string) => s;

/**
 * Compiles a `regex_rewrite` (RE2::GlobalReplace semantics): every non-overlapping match is replaced by the
 * substitution, where `\0`..`\9` insert a capture (`\0` the whole match) and `\\` a backslash. As in RE2, an
 * empty match right where the previous match ended is skipped. Returns the input itself when nothing matched.
 */
export function compileRegexRewrite(
  rewrite: envoy.type.matcher.v3.RegexMatchAndSubstitute,
  path: string,
  errors: ConfigError[],
): (input: string) => string {
  const patternPath = childPath(path, 'pattern');
  const regex = rewrite.pattern?.regex;
  if (typeof regex !== 'string' || regex === '') {
    errors.push({ code: 'missing_required', path: childPath(patternPath, 'regex'), message: 'regex_rewrite.pattern.regex is required' });
    return identity;
  }
  const re = compileRe2(regex, childPath(patternPath, 'regex'), errors, 'g');
  if (re === undefined) return identity;

  // Substitution: literal strings and capture numbers, alternating as they appear.
  const subPath = childPath(path, 'substitution');
  const sub = rewrite.substitution ?? '';
  const pieces: Array<string | number> = [];
  let literal = '';
  let maxGroup = 0;
  for (let k = 0; k < sub.length; k++) {
    const c = sub[k]!;
    if (c !== '\\') {
      literal += c;
      continue;
    }
    const d = sub[++k];
    if (d === '\\') {
      literal += '\\';
    } else if (d !== undefined && d >= '0' && d <= '9') {
      if (literal) pieces.push(literal);
      literal = '';
      pieces.push(d.charCodeAt(0) - 48);
      maxGroup = Math.max(maxGroup, d.charCodeAt(0) - 48);
    } else {
      errors.push({
        code: 'invalid_value',
        path: subPath,
        message: `invalid substitution '${sub}': '\\' must be followed by a digit or '\\'`,
      });
      return identity;
    }
  }
  if (literal) pieces.push(literal);
  const groups = captureGroupCount(re);
  if (maxGroup > groups) {
    errors.push({
      code: 'invalid_value',
      path: subPath,
      message: `substitution '${sub}' refers to \\${maxGroup}, but the regex only has ${groups} capture group(s)`,
    });
    return identity;
  }

  const constant = pieces.length === 0 ? '' : pieces.length === 1 && typeof pieces[0] === 'string' ? pieces[0] : undefined;
  return (input: string): string => {
    re.lastIndex = 0;
    let out = '';
    let copied = 0;
    let lastEnd = -1;
    let m: RegExpExecArray | null;
    while ((m = re.exec(input)) !== null) {
      const start = m.index;
      const end = start + m[0].length;
      if (start === end) {
        // Step over an empty match (by code point, as the regex is in `u` mode).
        const c = input.charCodeAt(end);
        re.lastIndex = c >= 0xd800 && c <= 0xdbff && end + 1 < input.length ? end + 2 : end + 1;
        if (start === lastEnd) continue;
      }
      out += input.substring(copied, start);
      if (constant !== undefined) {
        out += constant;
      } else {
        for (let k = 0; k < pieces.length; k++) {
          const piece = pieces[k]!;
          out += typeof piece === 'string' ? piece : (m[piece] ?? '');
        }
      }
      copied = end;
      lastEnd = end;
    }
    return lastEnd < 0 ? input : out + input.substring(copied);
  };
}
