/** Throwaway PKIs for TLS tests, made with the openssl command line (tests skip when it is missing). */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const OPENSSL_MISSING = 'openssl is needed to make test certificates';

export const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

export interface LeafSpec {
  /** Files are `<name>.crt` and `<name>.key`. */
  name: string;
  commonName: string;
  /** subjectAltName entries in openssl's syntax, e.g. `DNS:backend.internal`, `URI:spiffe://x/y`. */
  subjectAltNames?: string[];
}

export interface TestPki {
  dir: string;
  /** Absolute path of a file in the PKI's directory (`ca.crt`, `<name>.key`, ...). */
  file(name: string): string;
}

/** A CA (`ca.crt`, `ca.key`) and leaf certificates signed by it, valid for two days, on P-256 keys. */
export function makeTestPki(leaves: LeafSpec[], caName = 'test-ca'): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'portico-pki-'));
  const file = (name: string): string => join(dir, name);
  const openssl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'];
  openssl('req', '-x509', ...ec, '-nodes', '-days', '2', '-subj', `/CN=${caName}`, '-keyout', file('ca.key'), '-out', file('ca.crt'));
  for (const leaf of leaves) {
    openssl('req', ...ec, '-nodes', '-subj', `/CN=${leaf.commonName}`, '-keyout', file(`${leaf.name}.key`), '-out', file(`${leaf.name}.csr`));
    const extensions = leaf.subjectAltNames?.length ? ['-extfile', file(`${leaf.name}.ext`)] : [];
    if (extensions.length) writeFileSync(file(`${leaf.name}.ext`), `subjectAltName=${leaf.subjectAltNames!.join(',')}\n`);
    openssl('x509', '-req', '-in', file(`${leaf.name}.csr`), '-CA', file('ca.crt'), '-CAkey', file('ca.key'), '-CAcreateserial', '-days', '2', ...extensions, '-out', file(`${leaf.name}.crt`));
  }
  return { dir, file };
}
