/** What downstream and upstream TLS contexts share: certificates, protocol parameters, trusted CAs. */
import type tls from 'node:tls';
import type { ConfigError } from '../../config/errors.js';
import type { envoy } from '../../generated/envoy.js';
import { readDataSource } from '../router/route-action.js';

type CommonTlsContext = envoy.extensions.transport_sockets.tls.v3.CommonTlsContext;

const TLS_VERSIONS: Record<string, tls.SecureVersion | undefined> = {
  TLS_AUTO: undefined,
  TLSv1_0: 'TLSv1',
  TLSv1_1: 'TLSv1.1',
  TLSv1_2: 'TLSv1.2',
  TLSv1_3: 'TLSv1.3',
};

/** `tls_certificates`: the chains and keys a side presents. */
export function loadCertificates(
  common: CommonTlsContext,
  path: string,
  errors: ConfigError[],
): { cert: Buffer[]; key: { pem: Buffer; passphrase?: string }[] } {
  const cert: Buffer[] = [];
  const key: { pem: Buffer; passphrase?: string }[] = [];
  (common.tls_certificates ?? []).forEach((certificate, i) => {
    const certPath = `${path}.common_tls_context.tls_certificates[${i}]`;
    const chain = certificate.certificate_chain ? readDataSource(certificate.certificate_chain, `${certPath}.certificate_chain`, errors) : undefined;
    const privateKey = certificate.private_key ? readDataSource(certificate.private_key, `${certPath}.private_key`, errors) : undefined;
    const password = certificate.password ? readDataSource(certificate.password, `${certPath}.password`, errors)?.toString() : undefined;
    if (chain === undefined || privateKey === undefined) {
      errors.push({ code: 'missing_required', path: certPath, message: 'certificate_chain and private_key are required' });
      return;
    }
    cert.push(chain);
    key.push(password === undefined ? { pem: privateKey } : { pem: privateKey, passphrase: password });
  });
  return { cert, key };
}

/** `validation_context.trusted_ca`, or undefined when the peer's chain is not to be verified. */
export function loadTrustedCa(common: CommonTlsContext, path: string, errors: ConfigError[]): Buffer | undefined {
  const trustedCa = common.validation_context?.trusted_ca;
  return trustedCa ? readDataSource(trustedCa, `${path}.common_tls_context.validation_context.trusted_ca`, errors) : undefined;
}

/** `tls_params` as Node's secure context options; Envoy's defaults are TLS 1.2 to 1.3. */
export function protocolOptions(common: CommonTlsContext): tls.SecureContextOptions {
  const params = common.tls_params ?? {};
  return {
    minVersion: TLS_VERSIONS[params.tls_minimum_protocol_version ?? 'TLS_AUTO'] ?? 'TLSv1.2',
    maxVersion: TLS_VERSIONS[params.tls_maximum_protocol_version ?? 'TLS_AUTO'] ?? 'TLSv1.3',
    ciphers: params.cipher_suites?.length ? params.cipher_suites.join(':') : undefined,
    ecdhCurve: params.ecdh_curves?.length ? params.ecdh_curves.join(':') : undefined,
  };
}
