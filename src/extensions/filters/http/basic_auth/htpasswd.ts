/**
 * The user list of `envoy.filters.http.basic_auth`: htpasswd lines `user:{SHA}<base64 of the SHA-1 of the
 * password>`, read once when the configuration is compiled. As Envoy, `{SHA}` is the only hash format accepted;
 * empty lines and `#` comments are skipped. Every bad line is reported with its number (never its hash).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { envoy } from '../../../../generated/envoy.js';
import { type ConfigError, childPath } from '../../../../config/errors.js';
import { readDataSource } from '../../../../dataplane/router/route-action.js';

const SHA_PREFIX = '{SHA}';
const SHA1_BYTES = 20;
/** Compared against when the user is unknown, so that an unknown user costs what a wrong password does. */
const NO_HASH = Buffer.alloc(SHA1_BYTES);

/** User name → the SHA-1 digest of their password. */
export class Htpasswd {
  private constructor(private readonly users: ReadonlyMap<string, Buffer>) {}

  static compile(source: envoy.config.core.v3.DataSource | undefined, path: string, errors: ConfigError[]): Htpasswd {
    const usersPath = childPath(path, 'users');
    const text = source === undefined ? '' : (readDataSource(source, usersPath, errors)?.toString('utf8') ?? '');
    const users = new Map<string, Buffer>();
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.endsWith('\r') ? lines[i]!.slice(0, -1) : lines[i]!;
      if (line === '' || line.startsWith('#')) continue;
      const fail = (what: string): void => {
        errors.push({ code: 'invalid_value', path: usersPath, message: `htpasswd line ${i + 1}: ${what}` });
      };
      const colon = line.indexOf(':');
      if (colon < 0) {
        fail('expected user:{SHA}hash');
        continue;
      }
      const name = line.slice(0, colon);
      const hash = line.slice(colon + 1);
      if (name === '' || hash === '') fail('empty user name or password hash');
      else if (users.has(name)) fail(`duplicate user "${name}"`);
      else if (!hash.startsWith(SHA_PREFIX)) fail(`unsupported hash format for user "${name}": only {SHA} is supported`);
      else {
        const digest = decodeSha1(hash.slice(SHA_PREFIX.length));
        if (digest === undefined) fail(`invalid {SHA} hash for user "${name}": expected the base64 of a 20-byte SHA-1`);
        else users.set(name, digest);
      }
    }
    return new Htpasswd(users);
  }

  /** The password matches the user's hash; compared in constant time. */
  verify(user: string, password: string): boolean {
    const expected = this.users.get(user);
    const actual = createHash('sha1').update(password).digest();
    return timingSafeEqual(actual, expected ?? NO_HASH) && expected !== undefined;
  }
}

const BASE64 = /^[A-Za-z0-9+/]{27}=$/;

function decodeSha1(text: string): Buffer | undefined {
  if (!BASE64.test(text)) return undefined;
  const digest = Buffer.from(text, 'base64');
  return digest.length === SHA1_BYTES ? digest : undefined;
}
