/**
 * What the downstream and upstream HTTP/1.1 codecs write alike: a head or chunk framing around body bytes, in
 * as few system calls as possible, and the check that keeps a field from splitting or ending a head.
 */
import type { Socket } from 'node:net';

/** Characters a header value or request target must not carry onto the wire. */
export const UNSAFE_FIELD = /[\r\n\0]/;

/** The last chunk of a chunked body without trailers. */
export const CHUNKED_END = '0\r\n\r\n';

/** Bodies up to this size are copied into one buffer with their framing: one write, one system call. */
const COALESCE_LIMIT = 16 * 1024;

/** The size line of a chunk of `length` bytes. */
export function chunkHeader(length: number): string {
  return `${length.toString(16)}\r\n`;
}

/**
 * Writes `prefix` (a head, a chunk size line, or both; latin1), `chunk` and `suffix` (latin1). False when the
 * socket's buffer is full.
 */
export function writeFramed(socket: Socket, prefix: string, chunk: Buffer, suffix: string): boolean {
  if (chunk.length <= COALESCE_LIMIT) {
    const out = Buffer.allocUnsafe(prefix.length + chunk.length + suffix.length);
    out.write(prefix, 0, 'latin1');
    chunk.copy(out, prefix.length);
    if (suffix !== '') out.write(suffix, prefix.length + chunk.length, 'latin1');
    return socket.write(out);
  }
  socket.cork();
  if (prefix !== '') socket.write(prefix, 'latin1');
  socket.write(chunk);
  const ok = suffix === '' || socket.write(suffix, 'latin1');
  socket.uncork();
  return ok && !socket.writableNeedDrain;
}
