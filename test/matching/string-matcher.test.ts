import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ConfigError } from '../../src/config/errors.js';
import type { envoy } from '../../src/generated/envoy.js';
import { asciiLower, compileStringMatcher } from '../../src/dataplane/matching/string-matcher.js';

type M = envoy.type.matcher.v3.StringMatcher;

function compile(m: M): (v: string) => boolean {
  const errors: ConfigError[] = [];
  const fn = compileStringMatcher(m, 'sm', errors);
  assert.deepEqual(errors, [], JSON.stringify(m));
  return fn;
}

describe('compileStringMatcher', () => {
  const cases: Array<[matcher: M, value: string, matches: boolean]> = [
    [{ exact: 'foo' }, 'foo', true],
    [{ exact: 'foo' }, 'Foo', false],
    [{ exact: 'foo' }, 'foox', false],
    [{ exact: 'foo', ignore_case: true }, 'FoO', true],
    [{ exact: 'FOO', ignore_case: true }, 'foo', true],
    [{ exact: 'foo', ignore_case: true }, 'fooo', false],
    [{ exact: '' }, '', true],
    [{ exact: '' }, 'x', false],
    [{ prefix: '/api' }, '/api/v1', true],
    [{ prefix: '/api' }, '/API/v1', false],
    [{ prefix: '/api' }, '/ap', false],
    [{ prefix: '/API', ignore_case: true }, '/api/v1', true],
    [{ prefix: '/api', ignore_case: true }, '/Api', true],
    [{ prefix: '/api', ignore_case: true }, '/ap', false],
    [{ suffix: '.json' }, 'a.json', true],
    [{ suffix: '.json' }, 'a.JSON', false],
    [{ suffix: '.json', ignore_case: true }, 'a.JSON', true],
    [{ suffix: '.JSON', ignore_case: true }, 'json', false],
    [{ contains: 'bar' }, 'foobarbaz', true],
    [{ contains: 'bar' }, 'fooBARbaz', false],
    [{ contains: 'BAR', ignore_case: true }, 'foobarbaz', true],
    [{ contains: 'bar', ignore_case: true }, 'xxBaR', true],
    [{ contains: 'bar', ignore_case: true }, 'ba', false],
    [{ contains: 'aab', ignore_case: true }, 'AAAB', true],
    [{ safe_regex: { regex: 'fo+' } }, 'fooo', true],
    [{ safe_regex: { regex: 'fo+' } }, 'xfooo', false], // full match
    [{ safe_regex: { regex: '\\*' } }, '*', true],
    [{ safe_regex: { regex: '\\*' } }, 'a*', false],
    [{ safe_regex: { regex: 'foo' }, ignore_case: true }, 'FOO', false], // ignore_case does not apply
    [{ safe_regex: { regex: '(?i)foo' } }, 'FOO', true],
    // ignore_case is ASCII-only, as in Envoy.
    [{ exact: 'é', ignore_case: true }, 'É', false],
    [{ exact: 'aé', ignore_case: true }, 'Aé', true],
  ];
  for (const [matcher, value, matches] of cases) {
    it(`${JSON.stringify(matcher)} ${matches ? 'matches' : 'does not match'} ${JSON.stringify(value)}`, () => {
      assert.equal(compile(matcher)(value), matches);
    });
  }

  it('reports config errors and returns a matcher that never matches', () => {
    const cases: Array<[matcher: M | undefined, code: string, path: string]> = [
      [{}, 'missing_required', 'sm'],
      [{ ignore_case: true }, 'missing_required', 'sm'],
      [undefined, 'missing_required', 'sm'],
      [{ custom: { name: 'my.matcher' } }, 'unsupported_extension', 'sm.custom'],
      [{ safe_regex: { regex: 'a(?=b)' } }, 'invalid_regex', 'sm.safe_regex.regex'],
      [{ safe_regex: {} }, 'missing_required', 'sm.safe_regex.regex'],
      [{ prefix: '' }, 'invalid_value', 'sm.prefix'],
      [{ suffix: '' }, 'invalid_value', 'sm.suffix'],
      [{ contains: '' }, 'invalid_value', 'sm.contains'],
    ];
    for (const [matcher, code, path] of cases) {
      const errors: ConfigError[] = [];
      const fn = compileStringMatcher(matcher, 'sm', errors);
      assert.deepEqual(errors.map((e) => [e.code, e.path]), [[code, path]], JSON.stringify(matcher));
      assert.equal(fn(''), false);
      assert.equal(fn('ab'), false);
    }
  });
});

describe('asciiLower', () => {
  it('lower-cases ASCII letters only', () => {
    assert.equal(asciiLower('AbC-É'), 'abc-É');
    assert.equal(asciiLower('already'), 'already');
  });
});
