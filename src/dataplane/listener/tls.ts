import tls from 'node:tls';
import type { envoy } from '../../generated/envoy.js';
import type { ConfigError } from '../../config/errors.js';
import { readDataSource } from '../router/route-action.js';

type DownstreamTlsContext = envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext;

const TLS_VERSIONS: Record<string, tls.SecureVersion | undefined> = {
  TLS_AUTO: undefined,
  TLSv1_0: 'TLSv1',
  TLSv1_1: 'TLSv1.1',
  TLSv1_2: 'TLSv1.2',
  TLSv1_3: 'TLSv1.3',
};

/** What a TLS-terminating filter chain needs to wrap accepted sockets. */
export interface TlsTermination {
  secureContext: tls.SecureContext;
  alpnProtocols: string[] | undefined;
  requestCert: boolean;
}

/** Builds the secure context of a DownstreamTlsContext once, at configuration time. */
export function compileDownstreamTls(config: DownstreamTlsContext, path: string, errors: ConfigError[]): TlsTermination | undefined {
  const common = config.common_tls_context ?? {};
  const certificates = common.tls_certificates ?? [];
  if (certificates.length === 0) {
    errors.push({ code: 'missing_required', path: `${path}.common_tls_context.tls_certificates`, message: 'TLS termination needs a certificate' });
    return undefined;
  }
  const cert: Buffer[] = [];
  const key: { pem: Buffer; passphrase?: string }[] = [];
  certificates.forEach((certificate, i) => {
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
  const params = common.tls_params ?? {};
  const trustedCa = common.validation_context?.trusted_ca;
  const ca = trustedCa ? readDataSource(trustedCa, `${path}.common_tls_context.validation_context.trusted_ca`, errors) : undefined;
  const alpn = common.alpn_protocols;
  for (const [i, protocol] of (alpn ?? []).entries()) {
    if (protocol !== 'http/1.1' && protocol !== 'http/1.0') {
      errors.push({
        code: 'unsupported_field',
        path: `${path}.common_tls_context.alpn_protocols[${i}]`,
        message: `ALPN protocol ${protocol} is not supported yet`,
      });
    }
  }
  if (errors.length > 0 && cert.length === 0) return undefined;
  try {
    const secureContext = tls.createSecureContext({
      cert,
      key,
      ca,
      minVersion: TLS_VERSIONS[params.tls_minimum_protocol_version ?? 'TLS_AUTO'] ?? 'TLSv1.2',
      maxVersion: TLS_VERSIONS[params.tls_maximum_protocol_version ?? 'TLS_AUTO'] ?? 'TLSv1.3',
      ciphers: params.cipher_suites?.length ? params.cipher_suites.join(':') : undefined,
      ecdhCurve: params.ecdh_curves?.length ? params.ecdh_curves.join(':') : undefined,
    });
    return { secureContext, alpnProtocols: alpn?.length ? alpn : undefined, requestCert: config.require_client_certificate ?? false };
  } catch (err) {
    errors.push({ code: 'invalid_value', path, message: `invalid TLS configuration: ${(err as Error).message}` });
    return undefined;
  }
}
