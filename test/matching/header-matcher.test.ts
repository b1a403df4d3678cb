import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import type { ConfigError } from '../../src/config/errors.js';
import type { envoy } from '../../src/generated/envoy.js';
import type { RequestHead } from '../../src/dataplane/stream-info.js';
import {
  MATCH_ALL_HEADERS,
  compileHeaderMatcher,
  compileHeaderMatchers,
  headerValue,
  parseInt64,
} from '../../src/dataplane/matching/header-matcher.js';

type HM = envoy.config.route.v3.HeaderMatcher;

function head(headers: IncomingHttpHeaders = {}, over: Partial<RequestHead> = {}): RequestHead {
  return { method: 'GET', path: '/api/v1?x=1', authority: 'example.com:8080', scheme: 'https', headers, ...over };
}

function compile(m: HM): (h: RequestHead) => boolean {
  const errors: ConfigError[] = [];
  const fn = compileHeaderMatcher(m, 'hm', errors);
  assert.deepEqual(errors, [], JSON.stringify(m));
  return fn;
}

describe('headerValue', () => {
  const h = head({ 'x-a': 'one', 'set-cookie': ['a=1', 'b=2'], 'x-empty': '' });
  const cases: Array<[name: string, value: string | undefined]> = [
    [':path', '/api/v1?x=1'],
    [':method', 'GET'],
    [':authority', 'example.com:8080'],
    ['host', 'example.com:8080'],
    [':scheme', 'https'],
    [':status', undefined],
    ['x-a', 'one'],
    ['x-empty', ''],
    ['set-cookie', 'a=1,b=2'],
    ['x-missing', undefined],
  ];
  for (const [name, value] of cases) {
    it(`${name} → ${JSON.stringify(value)}`, () => assert.equal(headerValue(h, name), value));
  }
});

describe('compileHeaderMatcher', () => {
  const present = head({ 'x-v': 'Value-123', 'x-num': '42', 'x-neg': '-5', 'x-empty': '', 'x-multi': 'a, b' });
  const absent = head();
  const cases: Array<[matcher: HM, h: RequestHead, matches: boolean]> = [
    // string_match
    [{ name: 'x-v', string_match: { exact: 'Value-123' } }, present, true],
    [{ name: 'X-V', string_match: { exact: 'Value-123' } }, present, true], // name is lower-cased
    [{ name: 'x-v', string_match: { exact: 'value-123' } }, present, false],
    [{ name: 'x-v', string_match: { exact: 'value-123', ignore_case: true } }, present, true],
    [{ name: 'x-v', string_match: { prefix: 'Value' } }, present, true],
    [{ name: 'x-v', string_match: { suffix: '123' } }, present, true],
    [{ name: 'x-v', string_match: { contains: 'e-1' } }, present, true],
    [{ name: 'x-v', string_match: { safe_regex: { regex: 'Value-\\d+' } } }, present, true],
    [{ name: 'x-v', string_match: { safe_regex: { regex: 'Value' } } }, present, false],
    [{ name: 'x-v', string_match: { exact: 'x' } }, absent, false],
    // deprecated forms (case-sensitive)
    [{ name: 'x-v', exact_match: 'Value-123' }, present, true],
    [{ name: 'x-v', exact_match: 'value-123' }, present, false],
    [{ name: 'x-v', exact_match: '' }, present, true], // empty exact_match: presence
    [{ name: 'x-v', exact_match: '' }, absent, false],
    [{ name: 'x-v', prefix_match: 'Val' }, present, true],
    [{ name: 'x-v', prefix_match: 'val' }, present, false],
    [{ name: 'x-v', suffix_match: '-123' }, present, true],
    [{ name: 'x-v', suffix_match: '-12' }, present, false],
    [{ name: 'x-v', contains_match: 'ue-' }, present, true],
    [{ name: 'x-v', contains_match: 'UE-' }, present, false],
    [{ name: 'x-v', safe_regex_match: { regex: '[A-Za-z]+-\\d{3}' } }, present, true],
    [{ name: 'x-v', safe_regex_match: { regex: '\\d{3}' } }, present, false],
    [{ name: 'x-multi', exact_match: 'a, b' }, present, true],
    // range_match: [start, end)
    [{ name: 'x-num', range_match: { start: 40, end: 43 } }, present, true],
    [{ name: 'x-num', range_match: { start: 42, end: 43 } }, present, true],
    [{ name: 'x-num', range_match: { start: 0, end: 42 } }, present, false],
    [{ name: 'x-neg', range_match: { start: -10, end: 0 } }, present, true],
    [{ name: 'x-v', range_match: { start: 0, end: 1000 } }, present, false], // not an integer
    [{ name: 'x-empty', range_match: { start: -1, end: 1 } }, present, false],
    [{ name: 'x-num', range_match: { start: 0, end: 100 } }, absent, false],
    // present_match
    [{ name: 'x-v', present_match: true }, present, true],
    [{ name: 'x-v', present_match: true }, absent, false],
    [{ name: 'x-v', present_match: false }, present, false],
    [{ name: 'x-v', present_match: false }, absent, true],
    [{ name: 'x-empty', present_match: true }, present, true],
    [{ name: 'x-v', present_match: true, invert_match: true }, absent, true],
    [{ name: 'x-v', present_match: true, invert_match: true }, present, false],
    [{ name: 'x-v', present_match: false, invert_match: true }, present, true],
    [{ name: 'x-v', present_match: false, invert_match: true }, absent, false],
    // no kind: presence check
    [{ name: 'x-v' }, present, true],
    [{ name: 'x-v' }, absent, false],
    [{ name: 'x-empty' }, present, true],
    // invert_match
    [{ name: 'x-v', exact_match: 'other', invert_match: true }, present, true],
    [{ name: 'x-v', exact_match: 'Value-123', invert_match: true }, present, false],
    [{ name: 'x-num', range_match: { start: 0, end: 10 }, invert_match: true }, present, true],
    [{ name: 'x-v', string_match: { prefix: 'zzz' }, invert_match: true }, present, true],
    // a missing header matches nothing, inverted or not (Envoy's HeaderUtility::matchHeaders)
    [{ name: 'x-v', exact_match: 'other', invert_match: true }, absent, false],
    [{ name: 'x-v', string_match: { prefix: 'zzz' }, invert_match: true }, absent, false],
    [{ name: 'x-num', range_match: { start: 0, end: 10 }, invert_match: true }, absent, false],
    [{ name: 'x-v', invert_match: true }, absent, false],
    // treat_missing_header_as_empty
    [{ name: 'x-v', string_match: { exact: '' }, treat_missing_header_as_empty: true }, absent, true],
    [{ name: 'x-v', string_match: { prefix: 'a' }, treat_missing_header_as_empty: true }, absent, false],
    [{ name: 'x-v', string_match: { prefix: 'a' }, treat_missing_header_as_empty: true, invert_match: true }, absent, true],
    [{ name: 'x-n', range_match: { start: 0, end: 10 }, treat_missing_header_as_empty: true, invert_match: true }, absent, true],
    [{ name: 'x-v', treat_missing_header_as_empty: true }, absent, true],
    [{ name: 'x-v', safe_regex_match: { regex: '.*' }, treat_missing_header_as_empty: true }, absent, true],
    // pseudo-headers
    [{ name: ':path', string_match: { prefix: '/api/' } }, present, true],
    [{ name: ':path', string_match: { exact: '/api/v1?x=1' } }, present, true],
    [{ name: ':method', exact_match: 'GET' }, present, true],
    [{ name: ':method', exact_match: 'POST' }, present, false],
    [{ name: ':authority', string_match: { exact: 'example.com:8080' } }, present, true],
    [{ name: 'host', string_match: { prefix: 'example.com' } }, present, true],
    [{ name: ':scheme', exact_match: 'https' }, present, true],
    [{ name: ':authority', present_match: false }, head({}, { authority: '' }), true],
    [{ name: ':unknown', present_match: true }, present, false],
  ];
  for (const [matcher, h, matches] of cases) {
    const which = h === absent ? 'absent' : h === present ? 'present' : 'custom';
    it(`${JSON.stringify(matcher)} on ${which} headers → ${matches}`, () => {
      assert.equal(compile(matcher)(h), matches);
    });
  }

  it('joins repeated values (set-cookie arrays) with ","', () => {
    const fn = compile({ name: 'set-cookie', string_match: { exact: 'a=1,b=2' } });
    assert.equal(fn(head({ 'set-cookie': ['a=1', 'b=2'] })), true);
  });

  it('reports config errors', () => {
    const cases: Array<[m: HM, code: string, path: string]> = [
      [{ exact_match: 'x' }, 'missing_required', 'hm.name'],
      [{ name: 'x', string_match: {} }, 'missing_required', 'hm.string_match'],
      [{ name: 'x', safe_regex_match: { regex: '(a)\\1' } }, 'invalid_regex', 'hm.safe_regex_match.regex'],
      [{ name: 'x', string_match: { safe_regex: { regex: '(?<=a)' } } }, 'invalid_regex', 'hm.string_match.safe_regex.regex'],
      [{ name: 'x', prefix_match: '' }, 'invalid_value', 'hm.prefix_match'],
    ];
    for (const [m, code, path] of cases) {
      const errors: ConfigError[] = [];
      const fn = compileHeaderMatcher(m, 'hm', errors);
      assert.deepEqual(errors.map((e) => [e.code, e.path]), [[code, path]], JSON.stringify(m));
      assert.equal(fn(head({ x: 'a' })), false);
    }
  });
});

describe('parseInt64 (absl::SimpleAtoi)', () => {
  const cases: Array<[string, number | bigint | undefined]> = [
    ['42', 42],
    ['-42', -42],
    ['+7', 7],
    [' 12 ', 12],
    ['', undefined],
    ['-', undefined],
    ['1.5', undefined],
    ['0x10', undefined],
    ['12a', undefined],
    ['9223372036854775807', 9223372036854775807n],
    ['-9223372036854775808', -9223372036854775808n],
    ['9223372036854775808', undefined],
  ];
  for (const [s, v] of cases) it(`${JSON.stringify(s)} → ${String(v)}`, () => assert.equal(parseInt64(s), v));

  it('compares large values exactly', () => {
    const fn = compile({ name: 'x', range_match: { start: 0, end: 2 ** 53 } });
    assert.equal(fn(head({ x: String(2 ** 53 - 1) })), true);
    assert.equal(fn(head({ x: '9007199254740992' })), false);
    assert.equal(fn(head({ x: '99999999999999999' })), false);
  });
});

describe('compileHeaderMatchers', () => {
  it('returns MATCH_ALL_HEADERS for an empty or missing list', () => {
    assert.equal(compileHeaderMatchers([], 'h', []), MATCH_ALL_HEADERS);
    assert.equal(compileHeaderMatchers(undefined, 'h', []), MATCH_ALL_HEADERS);
  });

  it('requires every matcher to match', () => {
    const list: HM[] = [
      { name: 'x-a', exact_match: '1' },
      { name: 'x-b', present_match: true },
      { name: ':method', string_match: { exact: 'get', ignore_case: true } },
    ];
    const errors: ConfigError[] = [];
    const fn = compileHeaderMatchers(list, 'route.match.headers', errors);
    assert.deepEqual(errors, []);
    assert.equal(fn(head({ 'x-a': '1', 'x-b': '' })), true);
    assert.equal(fn(head({ 'x-a': '1' })), false);
    assert.equal(fn(head({ 'x-a': '2', 'x-b': '' })), false);
    assert.equal(fn(head({ 'x-a': '1', 'x-b': '' }, { method: 'POST' })), false);
    const two = compileHeaderMatchers(list.slice(0, 2), 'h', errors);
    assert.equal(two(head({ 'x-a': '1', 'x-b': 'y' })), true);
    assert.equal(two(head({ 'x-b': 'y' })), false);
  });

  it('reports errors with indexed paths', () => {
    const errors: ConfigError[] = [];
    compileHeaderMatchers([{ name: 'ok' }, { exact_match: 'x' }], 'route.match.headers', errors);
    assert.deepEqual(errors.map((e) => e.path), ['route.match.headers[1].name']);
  });
});
