/**
 * RE2 (Envoy's regex engine) as re2js, a JavaScript port of RE2: patterns have RE2's syntax and semantics
 * (`.` excludes `\n` only, `\s` is `[\t\n\f\r ]`, `(?m)` anchors at `\n` only, `(?U)`, `\Q...\E`, POSIX
 * classes, `\pN`, Unicode scripts, simple case folding) and what RE2 refuses (backreferences, lookaround,
 * atomic groups, possessive quantifiers) is `invalid_regex`, as Envoy refuses it. Matching runs in time linear
 * in the input (a DFA, or RE2's NFA simulation for captures): a backtracking engine such as V8's own takes time
 * exponential in the input for patterns like `(a+)+$`, and every regex here meets request data.
 */
import { RE2JS, RE2JSSyntaxException } from 're2js';
import type { envoy } from '../../generated/envoy.js';
import { childPath, type ConfigError } from '../../config/errors.js';

export type { RE2JS as Re2 };

/** PCRE constructs that RE2 refuses, named in the error: RE2's own message does not say why. */
const UNSUPPORTED: Array<[RegExp, string]> = [
  [/^\\[1-9]/, 'backreferences are not supported by RE2'],
  [/^\(\?<?[=!]/, 'lookaround is not supported by RE2'],
];

/**
 * Compiles an RE2 pattern (partial-match `test`, full-match `testExact`, `matcher` for captures). Problems are
 * pushed into `errors` with code `invalid_regex`, and undefined is returned.
 */
export function compileRe2(pattern: string, path: string, errors: ConfigError[], ignoreCase = false): RE2JS | undefined {
  try {
    return RE2JS.compile(pattern, ignoreCase ? RE2JS.CASE_INSENSITIVE : 0);
  } catch (e) {
    if (!(e instanceof RE2JSSyntaxException)) throw e;
    const where = e.input ?? '';
    const hint = UNSUPPORTED.find(([re]) => re.test(where))?.[1];
    const detail = `${e.error}${where ? `: ${where}` : ''}${hint ? ` (${hint})` : ''}`;
    errors.push({ code: 'invalid_regex', path, message: `invalid regex '${pattern}': ${detail}` });
    return undefined;
  }
}

/**
 * Compiles an `envoy.type.matcher.v3.RegexMatcher` into a full-match test. A missing or empty `regex` is
 * `missing_required`.
 */
export function compileRegexMatcher(
  m: envoy.type.matcher.v3.RegexMatcher | undefined,
  path: string,
  errors: ConfigError[],
): ((value: string) => boolean) | undefined {
  const regexPath = childPath(path, 'regex');
  if (m === undefined || typeof m.regex !== 'string' || m.regex === '') {
    errors.push({ code: 'missing_required', path: regexPath, message: 'RegexMatcher.regex is required' });
    return undefined;
  }
  const re = compileRe2(m.regex, regexPath, errors);
  return re === undefined ? undefined : (value) => re.testExact(value);
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
  const re = compileRe2(regex, childPath(patternPath, 'regex'), errors);
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
  const groups = re.groupCount();
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
    const m = re.matcher(input);
    let out = '';
    let copied = 0;
    let lastEnd = -1;
    let from = 0;
    while (from <= input.length && m.find(from)) {
      const start = m.start();
      const end = m.end();
      from = end;
      if (start === end) {
        // Step over an empty match by code point: a surrogate pair is one character to RE2.
        const c = input.charCodeAt(end);
        from = c >= 0xd800 && c <= 0xdbff && end + 1 < input.length ? end + 2 : end + 1;
        if (start === lastEnd) continue;
      }
      out += input.substring(copied, start);
      if (constant !== undefined) {
        out += constant;
      } else {
        for (let k = 0; k < pieces.length; k++) {
          const piece = pieces[k]!;
          out += typeof piece === 'string' ? piece : (m.group(piece) ?? '');
        }
      }
      copied = end;
      lastEnd = end;
    }
    return lastEnd < 0 ? input : out + input.substring(copied);
  };
}
