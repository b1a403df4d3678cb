import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SUPPORTED_FIELDS } from '../../src/config/support.js';
import { PACKAGE_ROOT } from '../../src/util/package-root.js';

const read = (path: string) => readFileSync(join(PACKAGE_ROOT, path), 'utf8');

describe('documentation', () => {
  it('lists every supported message and field in docs/configuration.md', () => {
    const doc = read('docs/configuration.md');
    const missing: string[] = [];
    for (const [message, fields] of Object.entries(SUPPORTED_FIELDS)) {
      if (!doc.includes(`\`${message}\``)) missing.push(message);
      if (fields === '*') continue;
      for (const field of fields) if (!doc.includes(`\`${field}\``)) missing.push(`${message}.${field}`);
    }
    assert.deepEqual(missing, []);
  });

  it('documents every configuration error code in docs/errors.md', () => {
    const doc = read('docs/errors.md');
    const source = read('src/config/errors.ts');
    const codes = [...source.matchAll(/\| '([a-z_]+)'/g)].map((m) => m[1]!);
    assert.ok(codes.length > 10);
    assert.deepEqual(codes.filter((code) => !doc.includes(`\`${code}\``)), []);
  });

  it('documents every CLI flag in the README', () => {
    const readme = read('README.md');
    const sources = read('src/cli/run.ts') + read('src/echo/echo-server.ts');
    const flags = [...sources.matchAll(/^\s+'?([a-z][a-z-]+)'?: \{ type: '(?:string|boolean)'/gm)].map((m) => m[1]!);
    assert.ok(flags.length >= 7, `found ${flags.join(', ')}`);
    assert.deepEqual(flags.filter((flag) => !readme.includes(`--${flag}`)), []);
  });
});
