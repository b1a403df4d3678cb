import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConfigError } from '../../src/config/errors.js';
import { parseDocuments } from '../../src/controlplane/documents.js';
import { parseResource, parseService } from '../../src/controlplane/resources.js';

function problems(doc: unknown, expected?: { kind?: string; name?: string }): [string, string][] {
  const errors: ConfigError[] = [];
  parseResource(doc, errors, expected);
  return errors.map((e) => [e.path, e.code]);
}

describe('Mapping and Module validation', () => {
  it('accepts the seed mapping and keeps only what was written', () => {
    const errors: ConfigError[] = [];
    const r = parseResource({ spec: { prefix: '/user/', service: 'usersvc' } }, errors, { kind: 'Mapping', name: 'usermapping' });
    assert.deepEqual(errors, []);
    assert.deepEqual(r, { apiVersion: 'getambassador.io/v3alpha1', kind: 'Mapping', metadata: { name: 'usermapping' }, spec: { prefix: '/user/', service: 'usersvc' } });
  });

  it('reports every problem with its path', () => {
    assert.deepEqual(
      problems({
        apiVersion: 'getambassador.io/v2',
        kind: 'Mapping',
        metadata: { name: 'bad name!' },
        spec: {
          prefix: 'user/',
          service: 'ftp://files',
          weight: 101,
          timeout_ms: '3s',
          headers: { 'x-ok': 'yes', 'bad header': 'no' },
          retry_policy: { retry_on: '5xx,sometimes' },
          load_balancer: { policy: 'round_robin', header: 'x-user' },
          redirect_response_code: 302,
          surprise: 1,
        },
      }),
      [
        ['apiVersion', 'invalid_value'],
        ['metadata.name', 'invalid_value'],
        ['spec.service', 'invalid_value'],
        ['spec.weight', 'invalid_value'],
        ['spec.timeout_ms', 'wrong_type'],
        ['spec.headers.bad header', 'invalid_value'],
        ['spec.retry_policy.retry_on', 'invalid_value'],
        ['spec.load_balancer.header', 'invalid_value'],
        ['spec.surprise', 'unknown_field'],
        ['spec.prefix', 'invalid_value'],
        ['spec.redirect_response_code', 'invalid_value'],
      ],
    );
  });

  it('checks field combinations', () => {
    assert.deepEqual(
      problems({
        kind: 'Mapping',
        metadata: { name: 'm' },
        spec: { prefix: 'user/', service: 'u', host: '*.example.com', method: 'get', host_rewrite: 'h', auto_host_rewrite: true, path_redirect: '/x' },
      }),
      [
        ['spec.prefix', 'invalid_value'],
        ['spec.host', 'invalid_value'],
        ['spec.method', 'invalid_value'],
        ['spec.auto_host_rewrite', 'oneof_conflict'],
        ['spec.path_redirect', 'invalid_value'],
      ],
    );
    assert.deepEqual(problems({ kind: 'Mapping', metadata: { name: 'm' }, spec: { prefix: '/(', prefix_regex: true, service: 'u' } }), [['spec.prefix', 'invalid_regex']]);
  });

  it('requires prefix and service, and a name matching the URL', () => {
    assert.deepEqual(problems({ kind: 'Mapping', metadata: { name: 'a' }, spec: {} }, { name: 'b' }), [
      ['metadata.name', 'invalid_value'],
      ['spec.prefix', 'missing_required'],
      ['spec.service', 'missing_required'],
    ]);
    assert.deepEqual(problems({ kind: 'Widget', metadata: { name: 'a' }, spec: {} }), [['kind', 'invalid_value']]);
  });

  it('accepts a Module named ambassador with known config keys only', () => {
    assert.deepEqual(problems({ kind: 'Module', metadata: { name: 'ambassador' }, spec: { config: { cluster_request_timeout_ms: 5000 } } }), []);
    assert.deepEqual(problems({ kind: 'Module', metadata: { name: 'other' }, spec: { config: { lua_scripts: 'x' } } }), [
      ['metadata.name', 'invalid_value'],
      ['spec.config.lua_scripts', 'unknown_field'],
    ]);
  });

  it('parses services as [scheme://]host[:port] with Emissary port defaults', () => {
    assert.deepEqual(parseService('usersvc'), { tls: false, host: 'usersvc', port: 80, explicitPort: false });
    assert.deepEqual(parseService('https://api.example.com'), { tls: true, host: 'api.example.com', port: 443, explicitPort: false });
    assert.deepEqual(parseService('http://[::1]:8080'), { tls: false, host: '::1', port: 8080, explicitPort: true });
    assert.equal(typeof parseService('usersvc:99999'), 'string');
    assert.equal(typeof parseService('a b'), 'string');
  });

  it('reads multi-document YAML, JSON arrays and Lists', () => {
    const errors: ConfigError[] = [];
    assert.equal(parseDocuments('kind: Mapping\n---\n---\nkind: Module\n', 'f', errors).length, 2);
    assert.equal(parseDocuments('[{"kind": "Mapping"}, {"kind": "Module"}]', 'f', errors).length, 2);
    assert.equal(parseDocuments('{"kind": "List", "items": [{"kind": "Mapping"}]}', 'f', errors).length, 1);
    assert.deepEqual(errors, []);
    const broken: ConfigError[] = [];
    parseDocuments('a: [', 'f', broken);
    assert.equal(broken[0]?.code, 'parse_error');
  });
});
