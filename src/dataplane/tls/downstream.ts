import tls from 'node:tls';
import type { envoy } from '../../generated/envoy.js';
import type { ConfigError } from '../../config/errors.js';
import { loadCertificates, loadTrustedCa, protocolOptions } from './common.js';

type DownstreamTlsContext = envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext;

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
  if (common.validation_context?.match_typed_subject_alt_names?.length) {
    errors.push({
      code: 'unsupported_field',
      path: `${path}.common_tls_context.validation_context.match_typed_subject_alt_names`,
      message: 'match_typed_subject_alt_names (matching client certificate SANs) is not supported yet on a filter chain',
    });
  }
  const { cert, key } = loadCertificates(common, path, errors);
  const ca = loadTrustedCa(common, path, errors);
  const alpn = common.alpn_protocols;
  for (const [i, protocol] of (alpn ?? []).entries()) {
    if (protocol !== 'h2' && protocol !== 'http/1.1' && protocol !== 'http/1.0') {
      errors.push({
        code: 'unsupported_field',
        path: `${path}.common_tls_context.alpn_protocols[${i}]`,
        message: `ALPN protocol ${protocol} is not supported yet`,
      });
    }
  }
  if (errors.length > 0 && cert.length === 0) return undefined;
  try {
    const secureContext = tls.createSecureContext({ cert, key, ca, ...protocolOptions(common) });
    return { secureContext, alpnProtocols: alpn?.length ? alpn : undefined, requestCert: config.require_client_certificate ?? false };
  } catch (err) {
    errors.push({ code: 'invalid_value', path, message: `invalid TLS configuration: ${(err as Error).message}` });
    return undefined;
  }
}
