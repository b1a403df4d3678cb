import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ConfigError } from '../../src/config/errors.js';
import type { envoy } from '../../src/generated/envoy.js';
import {
  MATCH_ALL_QUERIES,
  compileQueryParameterMatchers,
  parseQuery,
} from '../../src/dataplane/matching/query-matcher.js';

type QM = envoy.config.route.v3.QueryParameterMatcher;

describe('parseQuery', () => {
  const cases: Array<[path: string, entries: Array<[string, string]>]> = [
    ['/a', []],
    ['/a?', []],
    ['/a?x=1', [['x', '1']]],
    ['/a?x=1&y=2', [['x', '1'], ['y', '2']]],
    ['/a?x=1&x=2', [['x', '1']]], // first value wins
    ['/a?flag&x=', [['flag', ''], ['x', '']]],
    ['/a?q=a%20b+c', [['q', 'a%20b+c']]], // raw, not decoded
    ['/a?k=v=w', [['k', 'v=w']]],
    ['/a?&&x=1', [['', ''], ['x', '1']]],
    ['/a?x=1?y=2', [['x', '1?y=2']]],
  ];
  for (const [path, entries] of cases) {
    it(path, () => assert.deepEqual([...parseQuery(path)], entries));
  }
});

describe('compileQueryParameterMatchers', () => {
  function compile(list: QM[]) {
    const errors: ConfigError[] = [];
    const fn = compileQueryParameterMatchers(list, 'route.match.query_parameters', errors);
    assert.deepEqual(errors, []);
    return (path: string) => fn(parseQuery(path));
  }

  const cases: Array<[list: QM[], path: string, matches: boolean]> = [
    [[{ name: 'debug' }], '/?debug=1', true],
    [[{ name: 'debug' }], '/?debug', true],
    [[{ name: 'debug' }], '/?other=1', false],
    [[{ name: 'debug', present_match: true }], '/?debug', true],
    [[{ name: 'debug', present_match: true }], '/', false],
    [[{ name: 'debug', present_match: false }], '/', true],
    [[{ name: 'debug', present_match: false }], '/?debug=1', false],
    [[{ name: 'v', string_match: { exact: '2' } }], '/?v=2', true],
    [[{ name: 'v', string_match: { exact: '2' } }], '/?v=3', false],
    [[{ name: 'v', string_match: { exact: '2' } }], '/?v=2&v=3', true],
    [[{ name: 'v', string_match: { exact: '3' } }], '/?v=2&v=3', false], // only the first value counts
    [[{ name: 'v', string_match: { exact: '' } }], '/?v', true],
    [[{ name: 'v', string_match: { exact: '2' } }], '/', false],
    [[{ name: 'q', string_match: { exact: 'a%20b' } }], '/?q=a%20b', true],
    [[{ name: 'q', string_match: { exact: 'a b' } }], '/?q=a%20b', false],
    [[{ name: 'q', string_match: { prefix: 'AB', ignore_case: true } }], '/?q=abc', true],
    [[{ name: 'q', string_match: { safe_regex: { regex: '\\d+' } } }], '/?q=123', true],
    [[{ name: 'q', string_match: { safe_regex: { regex: '\\d+' } } }], '/?q=123x', false],
    [[{ name: 'a' }, { name: 'b', string_match: { exact: '2' } }], '/?a=1&b=2', true],
    [[{ name: 'a' }, { name: 'b', string_match: { exact: '2' } }], '/?b=2', false],
    [[{ name: 'a' }, { name: 'b', string_match: { exact: '2' } }], '/?a&b=3', false],
  ];
  for (const [list, path, matches] of cases) {
    it(`${JSON.stringify(list)} on ${path} → ${matches}`, () => assert.equal(compile(list)(path), matches));
  }

  it('returns MATCH_ALL_QUERIES for an empty or missing list (callers skip parsing)', () => {
    assert.equal(compileQueryParameterMatchers([], 'q', []), MATCH_ALL_QUERIES);
    assert.equal(compileQueryParameterMatchers(undefined, 'q', []), MATCH_ALL_QUERIES);
  });

  it('reports config errors with indexed paths', () => {
    const errors: ConfigError[] = [];
    const fn = compileQueryParameterMatchers(
      [{ name: 'ok' }, { string_match: { exact: 'x' } }, { name: 'r', string_match: { safe_regex: { regex: 'a(?!b)' } } }],
      'qp',
      errors,
    );
    assert.deepEqual(
      errors.map((e) => [e.code, e.path]),
      [
        ['missing_required', 'qp[1].name'],
        ['invalid_regex', 'qp[2].string_match.safe_regex.regex'],
      ],
    );
    assert.equal(fn(parseQuery('/?ok&r=a')), false);
  });
});
