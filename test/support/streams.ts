/** Bulk transfers through a proxied connection, for backpressure and half-close tests. */
import { createHash } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Writes `size` bytes (a repeating pattern) as fast as the socket takes them, waiting for `drain` whenever its
 * buffer is full, then half-closes it. Resolves once the peer has closed its side too, with the digest of what
 * was sent and everything received (after `received`, bytes that arrived before the call).
 */
export async function sendAndHalfClose(socket: Socket, size: number, received: Buffer = Buffer.alloc(0)): Promise<{ sent: string; received: Buffer }> {
  const chunks: Buffer[] = [received];
  const done = new Promise<void>((resolve, reject) => {
    socket.on('data', (data: Buffer) => chunks.push(data));
    socket.on('end', () => resolve());
    socket.on('error', reject);
  });
  socket.resume();
  const chunk = Buffer.alloc(64 * 1024);
  for (let i = 0; i < chunk.length; i++) chunk[i] = i & 0xff;
  const sent = createHash('sha256');
  for (let written = 0; written < size; written += chunk.length) {
    sent.update(chunk);
    if (!socket.write(chunk)) await new Promise((resolve) => socket.once('drain', resolve));
  }
  socket.end();
  await done;
  return { sent: sent.digest('hex'), received: Buffer.concat(chunks) };
}

/** Connects to 127.0.0.1:port (from `localAddress` if given), sends a line, and resolves with what came back before the connection closed. */
export function tcpExchange(port: number, localAddress?: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: '127.0.0.1', port, ...(localAddress === undefined ? {} : { localAddress }) });
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (data += chunk));
    socket.on('error', () => {});
    socket.on('close', () => resolve(data));
    socket.end('hello\n');
  });
}
