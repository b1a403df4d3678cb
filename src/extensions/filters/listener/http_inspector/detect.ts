/**
 * The HTTP inspector's detection, pure: from the first bytes of a plaintext connection, whether they are the
 * HTTP/2 prior-knowledge preface or an HTTP/1.x request line.
 */

export type HttpDetection = 'http/1.0' | 'http/1.1' | 'h2c' | 'not_http' | 'incomplete';

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** A request line longer than this is not worth waiting for (Envoy reads at most 8 KiB too). */
export const MAX_INSPECT_BYTES = 8192;

/** A method is an RFC 9110 token. */
const TCHAR = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]";
const TOKEN = new RegExp(`^${TCHAR}+$`);
const REQUEST_LINE = new RegExp(`^${TCHAR}+ \\S+ HTTP/1\\.([01])$`);

export function detectHttp(data: Buffer): HttpDetection {
  const prefaceBytes = Math.min(data.length, H2_PREFACE.length);
  if (prefaceBytes > 0 && data.compare(H2_PREFACE, 0, prefaceBytes, 0, prefaceBytes) === 0) {
    return prefaceBytes === H2_PREFACE.length ? 'h2c' : 'incomplete';
  }
  const end = data.indexOf('\r\n', 0, 'latin1');
  const line = data.subarray(0, end < 0 ? Math.min(data.length, MAX_INSPECT_BYTES) : end).toString('latin1');
  if (end < 0) return data.length < MAX_INSPECT_BYTES && startsRequestLine(line) ? 'incomplete' : 'not_http';
  const version = REQUEST_LINE.exec(line)?.[1];
  return version === undefined ? 'not_http' : version === '0' ? 'http/1.0' : 'http/1.1';
}

/** Whether `line` (no CRLF yet) can still grow into `METHOD target HTTP/1.x`. */
function startsRequestLine(line: string): boolean {
  const [method, target, version, ...extra] = line.split(' ');
  if (extra.length > 0 || method === undefined || (method !== '' && !TOKEN.test(method))) return false;
  if (target === undefined) return true;
  if (method === '' || /\s/.test(target)) return false;
  if (version === undefined) return true;
  if (target === '') return false;
  // The CR of the line's CRLF may have arrived alone.
  if (version.endsWith('\r')) return version === 'HTTP/1.0\r' || version === 'HTTP/1.1\r';
  return 'HTTP/1.0'.startsWith(version) || 'HTTP/1.1'.startsWith(version);
}
