/**
 * Origination of TLS to upstream hosts (a cluster's `transport_socket` with an UpstreamTlsContext), compiled
 * once per cluster into the options every new upstream connection is made with.
 */
import tls, { type PeerCertificate } from 'node:tls';
import type { ConfigError } from '../../config/errors.js';
import type { envoy } from '../../generated/envoy.js';
import { compileStringMatcher, type StringMatchFn } from '../matching/string-matcher.js';
import { loadCertificates, loadTrustedCa, protocolOptions } from './common.js';

type UpstreamTlsContext = envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext;

/** `tls.connect` options of a cluster's upstream connections. */
export interface UpstreamTls {
  /** Built once: creating one per connection would parse the certificates every time. */
  secureContext: tls.SecureContext;
  servername: string | undefined;
  /** The chain is verified only against a configured `trusted_ca`, as in Envoy. */
  rejectUnauthorized: boolean;
  /** Envoy checks no host name unless SAN matchers are configured, so neither does this. */
  checkServerIdentity: (hostname: string, cert: PeerCertificate) => Error | undefined;
}

/** The `subjectaltname` prefixes Node prints, by Envoy SAN type. */
const SAN_PREFIXES: Record<string, string> = { DNS: 'DNS:', URI: 'URI:', IP_ADDRESS: 'IP Address:', EMAIL: 'email:' };

interface SanMatcher {
  prefix: string;
  matches: StringMatchFn;
}

export function compileUpstreamTls(config: UpstreamTlsContext, path: string, errors: ConfigError[]): UpstreamTls | undefined {
  const common = config.common_tls_context ?? {};
  const { cert, key } = loadCertificates(common, path, errors);
  const ca = loadTrustedCa(common, path, errors);
  const validationPath = `${path}.common_tls_context.validation_context`;
  const sanMatchers: SanMatcher[] = (common.validation_context?.match_typed_subject_alt_names ?? []).flatMap((m, i) => {
    const matcherPath = `${validationPath}.match_typed_subject_alt_names[${i}]`;
    const prefix = SAN_PREFIXES[m.san_type ?? ''];
    if (prefix === undefined) {
      errors.push({ code: 'invalid_value', path: `${matcherPath}.san_type`, message: `SAN type ${m.san_type ?? 'SAN_TYPE_UNSPECIFIED'} is not supported (DNS, URI, IP_ADDRESS, EMAIL are)` });
      return [];
    }
    return [{ prefix, matches: compileStringMatcher(m.matcher, `${matcherPath}.matcher`, errors) }];
  });
  if (sanMatchers.length > 0 && ca === undefined) {
    // Envoy refuses this too: pinning names of a certificate nobody vouches for proves nothing.
    errors.push({ code: 'invalid_value', path: validationPath, message: 'SAN-based verification of peer certificates without trusted CA is insecure and not allowed' });
  }
  let secureContext: tls.SecureContext;
  try {
    secureContext = tls.createSecureContext({ cert: cert.length ? cert : undefined, key: key.length ? key : undefined, ca, ...protocolOptions(common) });
  } catch (err) {
    errors.push({ code: 'invalid_value', path, message: `invalid TLS configuration: ${(err as Error).message}` });
    return undefined;
  }
  return {
    secureContext,
    servername: config.sni || undefined,
    rejectUnauthorized: ca !== undefined,
    checkServerIdentity: sanMatchers.length ? (_hostname, peer) => checkSubjectAltNames(peer, sanMatchers) : acceptAnyName,
  };
}

function acceptAnyName(): undefined {
  return undefined;
}

/** At least one SAN of a configured type must match one of its matchers. */
function checkSubjectAltNames(peer: PeerCertificate, matchers: readonly SanMatcher[]): Error | undefined {
  const names = (peer.subjectaltname ?? '').split(', ');
  for (const matcher of matchers) {
    for (const name of names) {
      if (name.startsWith(matcher.prefix) && matcher.matches(name.slice(matcher.prefix.length))) return undefined;
    }
  }
  return Object.assign(new Error(`upstream certificate SANs (${peer.subjectaltname ?? 'none'}) match none of the configured names`), {
    code: 'ERR_TLS_CERT_ALTNAME_INVALID',
  });
}
