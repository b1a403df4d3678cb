import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SUPPORTED_FIELDS } from '../../src/config/support.js';
import {
  API_KEY_FIELDS,
  AUTH_SERVICE_FIELDS,
  FILTER_POLICY_FIELDS,
  HOST_FIELDS,
  JWT_FIELDS,
  LISTENER_FIELDS,
  MAPPING_FIELDS,
  MODULE_CONFIG_FIELDS,
  RATE_LIMIT_FIELDS,
  RATE_LIMIT_LIMIT_FIELDS,
  RATE_LIMIT_SERVICE_FIELDS,
  TCP_MAPPING_FIELDS,
  TLS_CONTEXT_FIELDS,
  TLS_OPTION_FIELDS,
} from '../../src/controlplane/resources.js';
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

  const flagsOf = (source: string) => [...read(source).matchAll(/'?([a-z][a-z-]+)'?: \{ type: '(?:string|boolean)'/g)].map((m) => m[1]!);

  it('documents every CLI flag in the README', () => {
    const readme = read('README.md');
    const flags = [...flagsOf('src/cli/run.ts'), ...flagsOf('src/echo/echo-server.ts')];
    assert.ok(flags.length >= 7, `found ${flags.join(', ')}`);
    assert.deepEqual(flags.filter((flag) => !readme.includes(`--${flag}`)), []);
  });

  it('documents every flag of start, apply, get and delete, and every resource field, in docs/control-plane.md', () => {
    const doc = read('docs/control-plane.md');
    const flags = [...flagsOf('src/cli/start.ts'), ...flagsOf('src/cli/client.ts')];
    assert.ok(flags.length >= 16, `found ${flags.join(', ')}`);
    assert.deepEqual(flags.filter((flag) => !doc.includes(`--${flag}`)), []);
    const fields = [MAPPING_FIELDS, MODULE_CONFIG_FIELDS, AUTH_SERVICE_FIELDS, RATE_LIMIT_SERVICE_FIELDS, RATE_LIMIT_FIELDS, JWT_FIELDS, API_KEY_FIELDS, FILTER_POLICY_FIELDS, HOST_FIELDS, TLS_OPTION_FIELDS, TLS_CONTEXT_FIELDS, TCP_MAPPING_FIELDS, LISTENER_FIELDS].flatMap((f) =>
      Object.keys(f),
    );
    fields.push(...Object.keys(RATE_LIMIT_LIMIT_FIELDS).map((f) => `limits[].${f}`));
    assert.deepEqual(fields.filter((field) => !doc.includes(`\`${field}\``)), []);
  });

  it('documents every API endpoint in docs/control-plane.md', () => {
    const doc = read('docs/control-plane.md');
    const placeholders: Record<string, string> = { '${NAME}': 'NAME', '${UI_FILE}': 'FILE', '([a-z]+)': 'KIND', '(\\\\d+)': 'VERSION' };
    const endpoints = [...read('src/controlplane/api-server.ts').matchAll(/r\('([A-Z]+)', [`']([^`']+)[`']/g)].map(
      ([, method, path]) => `${method} ${Object.entries(placeholders).reduce((p, [from, to]) => p.replaceAll(from, to), path!)}`,
    );
    assert.ok(endpoints.length >= 15, `found ${endpoints.join(', ')}`);
    assert.deepEqual(endpoints.filter((e) => !doc.includes(`\`${e}\``)), []);
  });
});
