/**
 * A provider's keys (a JWKS), imported once into node:crypto key objects, and the signature check of a JWT
 * against them. Verification is synchronous (node:crypto): a request with a cached JWKS is decided inside its
 * decodeHeaders, without pausing. jose's verify would be asynchronous (WebCrypto); it mints the tokens in tests.
 */
import { createHmac, createPublicKey, createSecretKey, type KeyObject, constants, timingSafeEqual, verify } from 'node:crypto';

/** What a token's `alg` needs: a key type (and curve), a digest, and how the signature is laid out. */
interface Algorithm {
  kty: 'RSA' | 'EC' | 'OKP' | 'oct';
  crv?: string;
  digest: string | null;
  pss?: boolean;
}

const ALGORITHMS: Record<string, Algorithm> = {
  RS256: { kty: 'RSA', digest: 'sha256' },
  RS384: { kty: 'RSA', digest: 'sha384' },
  RS512: { kty: 'RSA', digest: 'sha512' },
  PS256: { kty: 'RSA', digest: 'sha256', pss: true },
  PS384: { kty: 'RSA', digest: 'sha384', pss: true },
  PS512: { kty: 'RSA', digest: 'sha512', pss: true },
  ES256: { kty: 'EC', crv: 'P-256', digest: 'sha256' },
  ES384: { kty: 'EC', crv: 'P-384', digest: 'sha384' },
  ES512: { kty: 'EC', crv: 'P-521', digest: 'sha512' },
  EdDSA: { kty: 'OKP', digest: null },
  HS256: { kty: 'oct', digest: 'sha256' },
  HS384: { kty: 'oct', digest: 'sha384' },
  HS512: { kty: 'oct', digest: 'sha512' },
};

export function isSupportedAlgorithm(alg: string): boolean {
  return Object.hasOwn(ALGORITHMS, alg);
}

interface Jwk {
  kid: string | undefined;
  alg: string | undefined;
  kty: string;
  crv: string | undefined;
  key: KeyObject;
}

export class Jwks {
  private constructor(private readonly keys: readonly Jwk[]) {}

  /** Parses a JWKS document (or a single JWK); throws with the reason when it holds no usable key. */
  static parse(text: string): Jwks {
    const doc: unknown = JSON.parse(text);
    if (doc === null || typeof doc !== 'object') throw new Error('a JWKS is a JSON object');
    const list = Array.isArray((doc as { keys?: unknown }).keys) ? (doc as { keys: unknown[] }).keys : [doc];
    const keys: Jwk[] = [];
    for (const entry of list) {
      if (entry === null || typeof entry !== 'object') continue;
      const jwk = entry as Record<string, unknown>;
      if (jwk.use !== undefined && jwk.use !== 'sig') continue;
      try {
        const key = jwk.kty === 'oct' ? createSecretKey(Buffer.from(String(jwk.k ?? ''), 'base64url')) : createPublicKey({ key: jwk as never, format: 'jwk' });
        keys.push({ kid: typeof jwk.kid === 'string' ? jwk.kid : undefined, alg: typeof jwk.alg === 'string' ? jwk.alg : undefined, kty: String(jwk.kty), crv: typeof jwk.crv === 'string' ? jwk.crv : undefined, key });
      } catch {
        // A key Node cannot import is skipped, as Envoy skips keys it does not understand.
      }
    }
    if (keys.length === 0) throw new Error('the JWKS has no usable signing key');
    return new Jwks(keys);
  }

  hasKid(kid: string): boolean {
    return this.keys.some((k) => k.kid === kid);
  }

  /**
   * Whether `signature` over `signingInput` verifies with a key fit for `alg` (and `kid`, when the token names
   * one): true, false, or 'no_key' when no key fits (Envoy tells that apart from a bad signature).
   */
  verify(alg: string, kid: string | undefined, signingInput: string, signature: Buffer): boolean | 'no_key' {
    const algorithm = ALGORITHMS[alg]!;
    let candidates = 0;
    for (const jwk of this.keys) {
      if (kid !== undefined && jwk.kid !== undefined && jwk.kid !== kid) continue;
      if (jwk.alg !== undefined && jwk.alg !== alg) continue;
      if (jwk.kty !== algorithm.kty || (algorithm.crv !== undefined && jwk.crv !== algorithm.crv)) continue;
      candidates++;
      if (verifyWith(algorithm, jwk.key, signingInput, signature)) return true;
    }
    return candidates === 0 ? 'no_key' : false;
  }
}

function verifyWith(algorithm: Algorithm, key: KeyObject, signingInput: string, signature: Buffer): boolean {
  try {
    const data = Buffer.from(signingInput);
    switch (algorithm.kty) {
      case 'oct': {
        const expected = createHmac(algorithm.digest!, key).update(data).digest();
        return expected.length === signature.length && timingSafeEqual(expected, signature);
      }
      case 'EC':
        return verify(algorithm.digest, data, { key, dsaEncoding: 'ieee-p1363' }, signature);
      case 'RSA':
        return algorithm.pss
          ? verify(algorithm.digest, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }, signature)
          : verify(algorithm.digest, data, key, signature);
      default:
        return verify(null, data, key, signature);
    }
  } catch {
    return false;
  }
}
