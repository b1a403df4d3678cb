import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  canonicalizePath,
  compilePathNormalizer,
  mergeSlashes,
  unescapeSlashes,
  type PathNormalizationOptions,
} from '../../src/dataplane/http/path-normalization.js';

function normalizer(opts: PathNormalizationOptions) {
  const fn = compilePathNormalizer(opts);
  assert.ok(fn, 'a normalizer is compiled');
  return fn;
}

describe('compilePathNormalizer', () => {
  it('is undefined when nothing is enabled', () => {
    assert.equal(compilePathNormalizer({}), undefined);
    assert.equal(compilePathNormalizer({ normalize_path: false, merge_slashes: false }), undefined);
    assert.equal(compilePathNormalizer({ path_with_escaped_slashes_action: 'KEEP_UNCHANGED' }), undefined);
    assert.equal(compilePathNormalizer({ path_with_escaped_slashes_action: 'IMPLEMENTATION_SPECIFIC_DEFAULT' }), undefined);
  });

  describe('normalize_path', () => {
    const fn = normalizer({ normalize_path: true });
    const cases: Array<[input: string, output: string]> = [
      ['/a/./b/../c', '/a/c'],
      ['/a/b/../c', '/a/c'],
      ['/a/b/./c', '/a/b/c'],
      ['/../a', '/a'],
      ['/a/b/../../../../c', '/c'],
      ['/a/..', '/'],
      ['/a/b/..', '/a/'],
      ['/a/.', '/a/'],
      ['/.', '/'],
      ['/a/%2e%2E/b', '/b'],
      ['/a/b/%2E%2E/c', '/a/c'],
      ['/a/%2e/b', '/a/b'],
      ['/a/.%2e/b', '/b'],
      ['/a/..\\c', '/c'],
      ['/a\\b\\c', '/a/b/c'],
      ['/a..b/c', '/a..b/c'], // dots inside a segment are a file name
      ['/.hidden/x', '/.hidden/x'],
      ['/a/...', '/a/...'],
      ['/%7e/%7Euser', '/~/~user'],
      ['/%41%62%2D%5f%2e%30', '/Ab-_.0'],
      ['/a%2fb', '/a%2fb'], // reserved escapes are kept exactly, hex case included (Envoy/Chromium)
      ['/a%2Fb', '/a%2Fb'],
      ['/a/%2F%2f/c', '/a/%2F%2f/c'],
      ['/%5c%25', '/%5c%25'],
      ['/%c0%af', '/%c0%af'],
      ['/a b', '/a%20b'],
      ['/"<>^`{|}', '/%22%3C%3E%5E%60%7B%7C%7D'],
      ['/caf\u00e9', '/caf%E9'], // latin1 byte as Node hands it over
      ['/%zz', '/%zz'], // an invalid escape is passed through
      ['/a%', '/a%'],
      ['/%%30%30', '/%2500'], // no new escape may appear through unescaping
      ['a/b', '/a/b'],
      ['/A/B/C', '/A/B/C'],
      ['/a/./b?x=/../y&z=%2e', '/a/b?x=/../y&z=%2e'], // the query is untouched
      ['/a//b', '/a//b'], // normalize_path alone does not merge slashes
    ];
    for (const [input, output] of cases) {
      it(`${input} → ${output}`, () => {
        assert.deepEqual(fn(input), { path: output, action: 'forward' });
      });
    }

    it('rejects a NUL, raw or escaped', () => {
      assert.equal(fn('/a%00b').action, 'reject');
      assert.equal(fn('/a\u0000b').action, 'reject');
    });

    it('returns the same string when nothing changes', () => {
      for (const p of ['/a/b/c', '/a/b.html?x=1', '/a-b_c~d/e:f@g', '/']) {
        const r = fn(p);
        assert.equal(r.path, p);
        assert.equal(r.action, 'forward');
      }
    });
  });

  describe('merge_slashes', () => {
    const fn = normalizer({ merge_slashes: true });
    const cases: Array<[input: string, output: string]> = [
      ['/a//b/c', '/a/b/c'],
      ['//a/b/c', '/a/b/c'],
      ['/a/b/c//', '/a/b/c/'],
      ['/a////b', '/a/b'],
      ['/a//b?a=///c', '/a/b?a=///c'],
      ['/a//b?', '/a/b?'],
      ['//a/?b', '/a/?b'],
      ['/a/b', '/a/b'],
      ['/a/./b', '/a/./b'], // merge_slashes alone does not normalise
    ];
    for (const [input, output] of cases) {
      it(`${input} → ${output}`, () => assert.deepEqual(fn(input), { path: output, action: 'forward' }));
    }

    it('runs after normalisation', () => {
      const both = normalizer({ normalize_path: true, merge_slashes: true });
      assert.deepEqual(both('/a/.//b/..//c'), { path: '/a/c', action: 'forward' });
      assert.deepEqual(both('/a\\\\b'), { path: '/a/b', action: 'forward' });
    });
  });

  describe('path_with_escaped_slashes_action', () => {
    const cases: Array<[action: string, input: string, path: string, result: string]> = [
      ['REJECT_REQUEST', '/a%2Fb', '/a%2Fb', 'reject'],
      ['REJECT_REQUEST', '/a%2fb', '/a%2fb', 'reject'],
      ['REJECT_REQUEST', '/a%5Cb', '/a%5Cb', 'reject'],
      ['REJECT_REQUEST', '/a%5cb', '/a%5cb', 'reject'],
      ['REJECT_REQUEST', '/a%20b', '/a%20b', 'forward'],
      ['REJECT_REQUEST', '/a/b?x=%2F', '/a/b?x=%2F', 'forward'], // only the path counts
      ['UNESCAPE_AND_REDIRECT', '/a%2Fb%2fc', '/a/b/c', 'redirect'],
      ['UNESCAPE_AND_REDIRECT', '/a%5Cb', '/a\\b', 'redirect'],
      ['UNESCAPE_AND_REDIRECT', '/a/b?q=%2F', '/a/b?q=%2F', 'forward'],
      ['UNESCAPE_AND_REDIRECT', '/a%41b', '/a%41b', 'forward'],
      ['UNESCAPE_AND_FORWARD', '/a%2Fb?q=%2F', '/a/b?q=%2F', 'forward'],
      ['UNESCAPE_AND_FORWARD', '/a%5cb', '/a\\b', 'forward'],
      ['KEEP_UNCHANGED', '/a%2Fb', '/a%2Fb', 'forward'],
    ];
    for (const [action, input, path, result] of cases) {
      it(`${action}: ${input} → ${result} ${path}`, () => {
        const fn = compilePathNormalizer({ path_with_escaped_slashes_action: action, merge_slashes: action === 'KEEP_UNCHANGED' });
        assert.ok(fn);
        assert.deepEqual(fn(input), { path, action: result });
      });
    }

    it('is applied before normalize_path and merge_slashes; a redirect goes to the final path', () => {
      const fn = normalizer({
        path_with_escaped_slashes_action: 'UNESCAPE_AND_REDIRECT',
        normalize_path: true,
        merge_slashes: true,
      });
      assert.deepEqual(fn('/a%2F..%2Fb'), { path: '/b', action: 'redirect' });
      assert.deepEqual(fn('/a%2F%2Fb%5c'), { path: '/a/b/', action: 'redirect' });
      assert.deepEqual(fn('/a/../b'), { path: '/b', action: 'forward' });
      const forward = normalizer({ path_with_escaped_slashes_action: 'UNESCAPE_AND_FORWARD', normalize_path: true });
      assert.deepEqual(forward('/x/%2e%2e%2Fy'), { path: '/y', action: 'forward' });
    });
  });
});

describe('helpers', () => {
  it('unescapeSlashes', () => {
    assert.equal(unescapeSlashes('/a%2Fb%2fc%5Cd%5ce%41'), '/a/b/c\\d\\e%41');
    const p = '/plain';
    assert.equal(unescapeSlashes(p), p);
  });

  it('mergeSlashes follows Envoy (prefix + non-empty segments + suffix)', () => {
    assert.equal(mergeSlashes('a//b/c'), 'a/b/c');
    assert.equal(mergeSlashes('/a//b/c/'), '/a/b/c/');
    assert.equal(mergeSlashes(''), '');
  });

  it('canonicalizePath of an empty path is "/"', () => {
    assert.equal(canonicalizePath(''), '/');
  });
});
