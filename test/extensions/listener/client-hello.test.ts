/**
 * The TLS inspector's ClientHello parser on real hellos (captured from node's TLS client by a plain TCP server),
 * split at every byte, spread over several records, truncated, too large, and on bytes that are not TLS.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { before, describe, it } from 'node:test';
import { parseClientHello } from '../../../src/extensions/filters/listener/tls_inspector/client-hello.js';

/** The first flight of `tls.connect` with these options, as a server reads it off the wire. */
async function captureClientHello(options: tls.ConnectionOptions): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const received = new Promise<Buffer>((resolve) => {
      server.once('connection', (socket) => {
        const chunks: Buffer[] = [];
        socket.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          const all = Buffer.concat(chunks);
          // A hello is one record here: its header says how long it is.
          if (all.length >= 5 && all.length >= 5 + all.readUInt16BE(3)) {
            socket.destroy();
            resolve(all);
          }
        });
      });
    });
    const client = tls.connect({ host: '127.0.0.1', port, ...options });
    client.on('error', () => {});
    const hello = await received;
    client.destroy();
    return hello;
  } finally {
    server.close();
  }
}

/** The same handshake message, re-framed in records of at most `size` bytes. */
function fragment(hello: Buffer, size: number): Buffer {
  const message = hello.subarray(5);
  const records: Buffer[] = [];
  for (let offset = 0; offset < message.length; offset += size) {
    const part = message.subarray(offset, offset + size);
    const header = Buffer.from([0x16, 0x03, 0x01, 0, 0]);
    header.writeUInt16BE(part.length, 3);
    records.push(header, part);
  }
  return Buffer.concat(records);
}

const MAX = 16 * 1024;

describe('parseClientHello', () => {
  let withBoth: Buffer;
  let bare: Buffer;

  before(async () => {
    withBoth = await captureClientHello({ servername: 'Api.Example.com', ALPNProtocols: ['h2', 'http/1.1'] });
    // An IP literal: node sends no SNI.
    bare = await captureClientHello({});
  });

  it('finds the SNI and the ALPN list of a real ClientHello', () => {
    assert.deepEqual(parseClientHello(withBoth, MAX), { kind: 'tls', serverName: 'Api.Example.com', alpn: ['h2', 'http/1.1'] });
  });

  it('reports neither when the client sends neither', () => {
    assert.deepEqual(parseClientHello(bare, MAX), { kind: 'tls', serverName: '', alpn: [] });
  });

  it('asks for more bytes at every truncation point, and ignores what follows the hello', () => {
    for (let length = 0; length < withBoth.length; length++) {
      assert.deepEqual(parseClientHello(withBoth.subarray(0, length), MAX), { kind: 'incomplete' }, `truncated at ${length}`);
    }
    const followed = Buffer.concat([withBoth, Buffer.from('trailing')]);
    assert.equal(parseClientHello(followed, MAX).kind, 'tls');
  });

  it('joins a hello spread over several records', () => {
    const spread = fragment(withBoth, 50);
    assert.deepEqual(parseClientHello(spread, MAX), { kind: 'tls', serverName: 'Api.Example.com', alpn: ['h2', 'http/1.1'] });
    assert.deepEqual(parseClientHello(spread.subarray(0, spread.length - 1), MAX), { kind: 'incomplete' });
  });

  it('refuses a hello larger than the limit, from its header alone', () => {
    assert.deepEqual(parseClientHello(withBoth.subarray(0, 9), 64), { kind: 'too_large' });
  });

  it('says not_tls for plaintext and for garbage', () => {
    for (const text of ['GET / HTTP/1.1\r\n', 'PRI * HTTP/2.0\r\n', '\x16\x01\x00', '\x16\x03\x01\x00\x00']) {
      assert.deepEqual(parseClientHello(Buffer.from(text, 'latin1'), MAX), { kind: 'not_tls' }, JSON.stringify(text));
    }
    // A handshake record that holds another message type than ClientHello (here a ServerHello).
    const serverHello = Buffer.from(withBoth);
    serverHello[5] = 0x02;
    assert.deepEqual(parseClientHello(serverHello, MAX), { kind: 'not_tls' });
  });

  it('says not_tls when lengths inside the hello are inconsistent', () => {
    // Make the extensions block claim one byte more than the message holds.
    const broken = Buffer.from(withBoth);
    const sessionIdAt = 5 + 4 + 2 + 32;
    const suitesAt = sessionIdAt + 1 + broken[sessionIdAt]!;
    const compressionAt = suitesAt + 2 + broken.readUInt16BE(suitesAt);
    const extensionsAt = compressionAt + 1 + broken[compressionAt]!;
    broken.writeUInt16BE(broken.readUInt16BE(extensionsAt) + 1, extensionsAt);
    assert.deepEqual(parseClientHello(broken, MAX), { kind: 'not_tls' });
  });

  it('never throws on random bytes after a valid record header', () => {
    let seed = 7;
    const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) & 0xff;
    for (let round = 0; round < 500; round++) {
      const body = Buffer.from(Array.from({ length: 1 + (round % 200) }, random));
      const header = Buffer.from([0x16, 0x03, 0x01, 0, 0, 0x01, 0, 0, body.length]);
      header.writeUInt16BE(body.length + 4, 3);
      const kind = parseClientHello(Buffer.concat([header, body]), MAX).kind;
      assert.ok(kind === 'tls' || kind === 'not_tls', kind);
    }
  });
});
