import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ConfigError } from '../../src/config/errors.js';
import { compileRe2, compileRegexMatcher, compileRegexRewrite, type Re2 } from '../../src/dataplane/matching/regex.js';

function re2(pattern: string, ignoreCase?: boolean): Re2 {
  const errors: ConfigError[] = [];
  const re = compileRe2(pattern, 'p', errors, ignoreCase);
  assert.deepEqual(errors, [], `unexpected errors for ${pattern}`);
  assert.ok(re);
  return re;
}

function re2Error(pattern: string): ConfigError {
  const errors: ConfigError[] = [];
  const re = compileRe2(pattern, 'route.safe_regex.regex', errors);
  assert.equal(re, undefined, `expected ${pattern} to be rejected`);
  assert.equal(errors.length, 1);
  return errors[0]!;
}

describe('compileRe2: full-match semantics', () => {
  const cases: Array<[pattern: string, input: string, matches: boolean]> = [
    ['\\*', '*', true],
    ['\\*', 'a', false],
    ['\\*', '**', false],
    ['/api/.*', '/api/v1', true],
    ['/api/.*', '/x/api/v1', false],
    ['/api', '/api/v1', false], // a partial match does not count
    ['a|b', 'a', true],
    ['a|b', 'ab', false],
    ['/v[0-9]+/users', '/v12/users', true],
    ['\\d{3}', '123', true],
    ['\\d{3}', '1234', false],
    ['[^/]+', 'abc', true],
    ['[^/]+', 'a/c', false],
    ['.', '\r', true], // RE2's `.` only excludes \n
    ['.', '\n', false],
    ['(?s).', '\n', true],
    ['\\s+', ' \t\r\n\f', true],
    ['\\s', '\v', false], // RE2 \s is [\t\n\f\r ]
    ['\\S', '\v', true],
    ['a{,3}', 'a{,3}', true], // not a repetition in RE2: literal
    ['a{2,3}', 'aaa', true],
    ['a{2,3}', 'aaaa', false],
    ['x}', 'x}', true],
    ['[]a]+', ']a]', true],
    ['[^]a]', 'b', true],
    ['[^]a]', ']', false],
    ['[a-]+', 'a-a', true],
    ['\\-\\:\\@\\#', '-:@#', true],
    ['\\x41\\x{42}\\103', 'ABC', true],
    ['\\x{1F600}+', '😀😀', true],
    ['.', '😀', true], // code points, not UTF-16 units
    ['\\pL+', 'héllo', true],
    ['\\p{Greek}+', 'αβγ', true],
    ['\\p{Greek}', 'a', false],
    ['\\PL', '1', true],
    ['\\p{^L}', 'a', false],
    ['[\\p{Lu}\\d]+', 'AB12', true],
    ['[[:alpha:]]+', 'abcXYZ', true],
    ['[[:alpha:]]+', 'abc1', false],
    ['[[:digit:][:upper:]]+', 'A1B2', true],
    ['[[:^digit:]]+', 'abc', true],
    ['[[:^digit:]]+', 'ab1', false],
    ['[[:punct:]]', '!', true],
    ['[[:space:]]', '\v', true],
    ['[[:xdigit:]]+', 'deadBEEF', true],
    ['\\Qa.b*c\\E', 'a.b*c', true],
    ['\\Qa.b*c\\E', 'axbbc', false],
    ['\\Q.\\E+', '...', true],
    ['\\Q(unterminated', '(unterminated', true],
    ['\\Aabc\\z', 'abc', true],
    ['abc$', 'abc\n', false], // $ is \z without (?m)
    ['(?P<name>[a-z]+)-(?P<id>\\d+)', 'abc-12', true],
    ['(?<name>x)', 'x', true],
    ['(?i)hello', 'HeLLo', true],
    ['hello', 'HELLO', false],
    ['(?i:he)llo', 'HEllo', true],
    ['(?i:he)llo', 'HELLO', false],
    ['a(?i)bc', 'aBC', true],
    ['a(?i)bc', 'ABC', false],
    ['(?i)a(?-i)b', 'Ab', true],
    ['(?i)a(?-i)b', 'AB', false],
    ['(?i)[a-c]+', 'AbC', true],
    ['x(?i:[a-c]+)', 'xAbC', true],
    ['x(?i:[^a])', 'xA', false],
    ['(?U)a+', 'aaa', true],
    ['(?m)^b$', 'b', true],
    ['\\bfoo\\b', 'foo', true],
    ['^*a', 'a', true], // RE2 allows repeating an empty-width assertion
    ['(?)a', 'a', true], // and an empty flag group
    ['\\0101', '\x081', true], // \010 octal, then a literal 1
    ['\\12', '\n', true],
  ];
  for (const [pattern, input, matches] of cases) {
    it(`${JSON.stringify(pattern)} ${matches ? 'matches' : 'does not match'} ${JSON.stringify(input)}`, () => {
      assert.equal(re2(pattern).testExact(input), matches);
    });
  }
});

describe('compileRe2: captures and flags', () => {
  it('names (?P<name>...) and (?<name>...) groups', () => {
    const m = re2('(?P<service>[a-z]+)/(?<id>\\d+)').exec('users/42') as RegExpExecArray | null;
    assert.equal(m?.groups?.service, 'users');
    assert.equal(m?.groups?.id, '42');
  });

  it('ignoreCase folds the whole pattern', () => {
    assert.ok(re2('abc', true).testExact('AbC'));
    assert.ok(!re2('abc').testExact('AbC'));
  });

  it('folds case as RE2 does, beyond ASCII', () => {
    assert.ok(re2('(?i)k').testExact('\u212a')); // KELVIN SIGN folds to k
    assert.ok(re2('(?i)σ').testExact('ς'));
  });

  it('(?U) swaps greedy and lazy', () => {
    assert.equal(re2('(?U)a+').exec('aaa')?.[0], 'a');
    assert.equal(re2('(?U)a+?').exec('aaa')?.[0], 'aaa');
  });

  it('(?m) anchors at \\n only', () => {
    const re = re2('(?m)^b$');
    assert.ok(re.test('a\nb\nc'));
    assert.ok(!re.test('a\rb\rc'));
    assert.ok(!re2('^b$').test('a\nb\nc'));
  });

  it('(?s) scoped to a group', () => {
    assert.ok(re2('a(?s:.)b.').testExact('a\nbc'));
    assert.ok(!re2('a(?s:.)b.').testExact('a\nb\n'));
  });

  it('a group name starting with a digit is a capture like any other', () => {
    assert.equal(re2('(?P<1x>a)(b)').exec('ab')?.[2], 'b');
  });

  it('counts capture groups', () => {
    assert.equal(re2('(a)(?:b)(?P<c>c)').groupCount(), 2);
    assert.equal(re2('abc').groupCount(), 0);
  });
});

describe('compileRe2: linear time', () => {
  // A backtracking engine tries every way of splitting the a's between the nested loops: 2^40 steps here.
  const evil = 'a'.repeat(40) + '!';
  for (const pattern of ['(a+)+', '(a|a)*', '(a*)*', '(?:a+){2,}']) {
    it(`${pattern} rejects 40 a's and a '!' at once, and still matches the a's`, () => {
      const re = re2(pattern);
      assert.equal(re.testExact(evil), false);
      assert.equal(re.testExact(evil.slice(0, -1)), true);
    });
  }
});

describe('compileRe2: rejects what RE2 does not support', () => {
  const cases: Array<[pattern: string, mentions: RegExp]> = [
    ['(a)\\1', /invalid escape sequence: \\1 \(backreferences are not supported by RE2\)/],
    ['(a)\\9', /backreferences are not supported/],
    ['(?P<x>a)(?P=x)', /invalid or unsupported Perl syntax: \(\?P/],
    ['a(?=b)', /unsupported Perl syntax: \(\?= \(lookaround is not supported by RE2\)/],
    ['a(?!b)', /lookaround is not supported/],
    ['(?<=a)b', /lookaround is not supported/],
    ['(?<!a)b', /lookaround is not supported/],
    ['a*+', /invalid nested repetition operator: \*\+/], // possessive
    ['a++', /invalid nested repetition operator/],
    ['a?+', /invalid nested repetition operator/],
    ['(?>abc)', /invalid or unsupported Perl syntax: \(\?>/], // atomic group
    ['a**', /invalid nested repetition operator/],
    ['a{2}{3}', /invalid nested repetition operator/],
    ['a{1001}', /invalid repeat count/],
    ['a{3,2}', /invalid repeat count/],
    ['*a', /missing argument to repetition operator/],
    ['(abc', /missing closing \)/],
    ['abc)', /unexpected \)/],
    ['[abc', /missing closing \]/],
    ['[z-a]', /invalid character class range: z-a/],
    ['[a-\\d]', /invalid escape sequence: \\d/],
    ['[[:foo:]]', /invalid character class range/],
    ['\\p{Klingon}', /invalid character class range/],
    ['abc\\', /trailing backslash/],
    ['\\y', /invalid escape sequence: \\y/],
    ['\\Z', /invalid escape sequence/],
    ['\\C', /\\C/],
    ['\\x{110000}', /invalid escape sequence/],
    ['(?P<a>x)(?P<a>y)', /duplicate capture group name/],
    ['(?P<a-b>x)', /invalid named capture/],
    ['(?x)a', /invalid or unsupported Perl syntax/],
    ['(?#comment)a', /invalid or unsupported Perl syntax/],
  ];
  for (const [pattern, mentions] of cases) {
    it(`rejects ${JSON.stringify(pattern)}`, () => {
      const err = re2Error(pattern);
      assert.equal(err.code, 'invalid_regex');
      assert.equal(err.path, 'route.safe_regex.regex');
      assert.match(err.message, mentions);
      assert.ok(err.message.includes(pattern), 'the message quotes the pattern');
    });
  }
});

describe('compileRegexMatcher', () => {
  it('compiles a full-match RegExp', () => {
    const errors: ConfigError[] = [];
    const re = compileRegexMatcher({ regex: '/a/\\d+' }, 'm', errors);
    assert.deepEqual(errors, []);
    assert.ok(re?.('/a/12'));
    assert.ok(!re?.('/a/12/b'));
  });

  it('requires a non-empty regex', () => {
    for (const m of [undefined, {}, { regex: '' }]) {
      const errors: ConfigError[] = [];
      assert.equal(compileRegexMatcher(m, 'm', errors), undefined);
      assert.deepEqual(errors.map((e) => [e.code, e.path]), [['missing_required', 'm.regex']]);
    }
  });
});

describe('compileRegexRewrite', () => {
  function rewrite(regex: string, substitution: string): (s: string) => string {
    const errors: ConfigError[] = [];
    const fn = compileRegexRewrite({ pattern: { regex }, substitution }, 'route.regex_rewrite', errors);
    assert.deepEqual(errors, []);
    return fn;
  }

  const cases: Array<[regex: string, substitution: string, input: string, output: string]> = [
    ['^/service/([^/]+)(/.*)$', '\\2/instance/\\1', '/service/foo/v1/api', '/v1/api/instance/foo'],
    ['^/service/([^/]+)(/.*)$', '\\2/instance/\\1', '/other/foo/v1', '/other/foo/v1'],
    ['one', 'two', '/xxx/one/yyy/one/zzz', '/xxx/two/yyy/two/zzz'], // global
    ['(?i)/API/', '/', '/api/v1/Api/x', '/v1/x'],
    ['a+', '<\\0>', 'baaacaa', 'b<aaa>c<aa>'],
    ['(a)|(b)', '[\\1\\2]', 'ab', '[a][b]'], // non-participating group is empty
    ['o', '$1$$\\\\', 'foo', 'f$1$$\\$1$$\\'], // `$` is literal, `\\` a backslash
    ['x*', '-', 'abc', '-a-b-c-'],
    ['a*', '-', 'baaac', '-b-c-'], // RE2: no empty match right after a match
    ['\\d', '', 'a1b22', 'ab'],
    ['^', '/prefix', '/path', '/prefix/path'],
    ['(.)', '\\1\\1', '😀', '😀😀'],
  ];
  for (const [regex, substitution, input, output] of cases) {
    it(`${regex} → ${substitution} on ${input}`, () => {
      assert.equal(rewrite(regex, substitution)(input), output);
    });
  }

  it('returns the input unchanged when nothing matches', () => {
    assert.equal(rewrite('zzz', 'y')('/unchanged/path'), '/unchanged/path');
  });

  it('can be called repeatedly (no match state carries over)', () => {
    const fn = rewrite('/v1/', '/v2/');
    assert.equal(fn('/v1/a'), '/v2/a');
    assert.equal(fn('/v1/b/v1/'), '/v2/b/v2/');
    assert.equal(fn('/x/v1/'), '/x/v2/');
  });

  it('reports errors at the right paths', () => {
    const cases: Array<[rw: Parameters<typeof compileRegexRewrite>[0], code: string, path: string]> = [
      [{ substitution: 'x' }, 'missing_required', 'r.pattern.regex'],
      [{ pattern: { regex: '(a)\\1' }, substitution: 'x' }, 'invalid_regex', 'r.pattern.regex'],
      [{ pattern: { regex: '(a)' }, substitution: '\\2' }, 'invalid_value', 'r.substitution'],
      [{ pattern: { regex: 'a' }, substitution: 'x\\y' }, 'invalid_value', 'r.substitution'],
      [{ pattern: { regex: 'a' }, substitution: 'x\\' }, 'invalid_value', 'r.substitution'],
    ];
    for (const [rw, code, path] of cases) {
      const errors: ConfigError[] = [];
      const fn = compileRegexRewrite(rw, 'r', errors);
      assert.deepEqual(errors.map((e) => [e.code, e.path]), [[code, path]], JSON.stringify(rw));
      assert.equal(fn('/a'), '/a', 'the placeholder leaves the path alone');
    }
  });
});
