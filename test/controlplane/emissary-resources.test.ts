/**
 * Validation of Host, TLSContext, TCPMapping, Listener and Secret: every problem with its path, Emissary fields
 * Portico cannot serve refused by name, and problems between resources (a Secret that is not there, two Hosts
 * for one name, a TCPMapping on an HTTP port) reported by the translation against the field behind them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConfigError } from '../../src/config/errors.js';
import { parseResource, type Resource } from '../../src/controlplane/resources.js';
import { checkTranslation, translate } from '../../src/controlplane/translate.js';
import { createLogger } from '../../src/util/logger.js';
import { hasOpenssl, makeTestPki, OPENSSL_MISSING } from '../support/certificates.js';
import { readFileSync } from 'node:fs';

/** `path code` of every problem of a resource of `kind` with this spec. */
function problems(kind: string, spec: unknown): string[] {
  const errors: ConfigError[] = [];
  parseResource({ kind, metadata: { name: 'x' }, spec }, errors);
  return errors.map((e) => `${e.path} ${e.code}`);
}

function parsed(docs: unknown[]): Resource[] {
  const errors: ConfigError[] = [];
  const out = docs.map((d) => parseResource(d, errors)!);
  assert.deepEqual(errors, []);
  return out;
}

function translationProblems(docs: unknown[]): string[] {
  const t = translate(parsed(docs), { listenerAddress: '127.0.0.1', listenerPort: 8080, httpsPort: 8443 });
  return checkTranslation(t, createLogger('off')).errors.map((e) => `${e.resource} ${e.path} ${e.code}`);
}

describe('Emissary resources: validation', () => {
  it('Host: every problem with its path, unservable fields refused by name', () => {
    assert.deepEqual(
      problems('Host', {
        hostname: 'bad host',
        tlsSecret: {},
        tlsContext: { name: 'ctx' },
        tls: { cert_chain_file: '/c.pem', alpn_protocols: 'h2,spdy/3', min_tls_version: 'v1.3', max_tls_version: 'v1.2', cert_required: true, crl_secret: 'crl' },
        requestPolicy: { insecure: { action: 'Upgrade', additionalPort: 70000 } },
        mappingSelector: { matchExpressions: [] },
        acmeProvider: { authority: 'https://acme-v02.api.letsencrypt.org/directory' },
        previewUrl: { enabled: true },
      }),
      [
        'spec.previewUrl unsupported_field',
        'spec.hostname invalid_value',
        'spec.tlsSecret.name missing_required',
        'spec.tls.crl_secret unsupported_field',
        'spec.tls.alpn_protocols unsupported_field',
        'spec.tls.private_key_file missing_required',
        'spec.tls.cert_required missing_required',
        'spec.tls.min_tls_version invalid_value',
        'spec.requestPolicy.insecure.action invalid_value',
        'spec.requestPolicy.insecure.additionalPort invalid_value',
        'spec.mappingSelector.matchExpressions unsupported_field',
        'spec.acmeProvider.authority unsupported_field',
        'spec.tls oneof_conflict',
        'spec.tls.cert_chain_file oneof_conflict',
      ],
    );
  });

  it('TLSContext: cipher suites and curves the TLS library does not know, conflicting sources of a certificate', () => {
    assert.deepEqual(
      problems('TLSContext', {
        hosts: ['a.example.com', '*'],
        secret: 's',
        cert_chain_file: '/c.pem',
        private_key_file: '/k.pem',
        cipher_suites: ['ECDHE-RSA-AES128-GCM-SHA256', 'NOT-A-CIPHER'],
        ecdh_curves: ['X25519', 'P-1'],
        ca_secret: 'ca',
        cacert_chain_file: '/ca.pem',
        redirect_cleartext_from: 8080,
      }),
      [
        'spec.redirect_cleartext_from unsupported_field',
        'spec.cipher_suites[1] invalid_value',
        'spec.ecdh_curves[1] invalid_value',
        'spec.cacert_chain_file oneof_conflict',
        'spec.cert_chain_file oneof_conflict',
      ],
    );
  });

  it('TCPMapping and Listener: required fields, ports, and what the data plane cannot do', () => {
    assert.deepEqual(problems('TCPMapping', { port: 0, service: 'db', host: '*', tls: true, weight: 200 }), [
      'spec.tls unsupported_field',
      'spec.port invalid_value',
      'spec.service missing_required',
      'spec.host invalid_value',
      'spec.weight invalid_value',
    ]);
    assert.deepEqual(problems('TCPMapping', { port: 9000, service: 'https://db:443' }), ['spec.service unsupported_field']);
    assert.deepEqual(
      problems('Listener', { port: 8443, protocol: 'HTTPSPROXY', securityModel: 'TRUSTED', hostBinding: { namespace: { from: 'SELECTOR' } }, protocolStack: ['TLS', 'HTTP'] }),
      [
        'spec.protocolStack unsupported_field',
        'spec.protocol unsupported_field',
        'spec.securityModel invalid_value',
        'spec.hostBinding.namespace.from unsupported_field',
      ],
    );
    assert.deepEqual(problems('Listener', { port: 8080, protocol: 'UDP' }), [
      'spec.securityModel missing_required',
      'spec.hostBinding missing_required',
      'spec.protocol unsupported_field',
    ]);
  });

  it('Secret: Kubernetes shape or spec, PEM checked without echoing it', { skip: hasOpenssl ? false : OPENSSL_MISSING }, () => {
    const pki = makeTestPki([
      { name: 'a', commonName: 'a.example.com' },
      { name: 'b', commonName: 'b.example.com' },
    ]);
    const crt = readFileSync(pki.file('a.crt'), 'utf8');
    const otherKey = readFileSync(pki.file('b.key'), 'utf8');
    const errors: ConfigError[] = [];
    const secret = parseResource({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's' }, type: 'kubernetes.io/tls', data: { 'tls.crt': Buffer.from(crt).toString('base64'), 'tls.key': Buffer.from(readFileSync(pki.file('a.key'))).toString('base64') } }, errors);
    assert.deepEqual(errors, []);
    assert.equal(secret?.spec && Object.keys(secret.spec).join(), 'type,data');
    const wrong = { kind: 'Secret', metadata: { name: 's' }, spec: { stringData: { 'tls.crt': crt, 'tls.key': otherKey } } };
    const mismatch: ConfigError[] = [];
    parseResource(wrong, mismatch);
    assert.deepEqual(mismatch.map((e) => `${e.path} ${e.code}`), ['spec.stringData.tls.key invalid_value']);
    assert.ok(!mismatch[0]!.message.includes('PRIVATE KEY'));
    assert.deepEqual(problems('Secret', { data: { 'tls.crt': 'not base64!', 'tls.pem': 'x' } }), [
      'spec.data.tls.crt invalid_value',
      'spec.data.tls.pem invalid_value',
    ]);
    assert.deepEqual(problems('Secret', { stringData: { 'tls.crt': 'garbage' } }), [
      'spec.data.tls.key missing_required',
      'spec.stringData.tls.crt invalid_value',
    ]);
  });

  it('problems between resources name the field behind them', () => {
    const listener = (name: string, port: number, protocol: string) => ({ kind: 'Listener', metadata: { name }, spec: { port, protocol, securityModel: 'XFP', hostBinding: { namespace: { from: 'ALL' } } } });
    assert.deepEqual(
      translationProblems([
        { kind: 'Host', metadata: { name: 'a' }, spec: { hostname: 'a.example.com', tlsSecret: { name: 'missing' } } },
        { kind: 'Host', metadata: { name: 'b' }, spec: { hostname: 'a.example.com' } },
        { kind: 'Host', metadata: { name: 'c' }, spec: { hostname: 'c.example.com', tlsContext: { name: 'nope' } } },
        { kind: 'Host', metadata: { name: 'd' }, spec: { hostname: 'd.example.com', tls: { min_tls_version: 'v1.3' } } },
        listener('http', 8080, 'HTTP'),
        listener('tcp', 8080, 'TCP'),
        { kind: 'TCPMapping', metadata: { name: 'db' }, spec: { port: 8080, service: 'db:5432' } },
        { kind: 'TCPMapping', metadata: { name: 'x' }, spec: { port: 9000, service: 'x:1', weight: 80 } },
        { kind: 'TCPMapping', metadata: { name: 'y' }, spec: { port: 9000, service: 'y:1', weight: 30 } },
      ]),
      [
        'Host/a spec.tlsSecret.name invalid_value',
        'Host/b spec.hostname invalid_value',
        'Host/c spec.tlsContext.name invalid_value',
        'Host/d spec.tls missing_required',
        'Listener/tcp spec.port invalid_value',
        'TCPMapping/db spec.port invalid_value',
        'TCPMapping/x spec.weight invalid_value',
        'TCPMapping/y spec.weight invalid_value',
      ],
    );
  });
});
