/**
 * A TLS ClientHello parser for the TLS inspector: from the first bytes of a connection, whether they start a
 * TLS handshake and, if so, the SNI and ALPN the client offers. Pure: it reads a buffer and never consumes it.
 */

export type ClientHelloResult =
  /** The bytes so far are a prefix of a ClientHello: wait for more. */
  | { kind: 'incomplete' }
  /** Not a TLS handshake (plaintext, or bytes no TLS client sends). */
  | { kind: 'not_tls' }
  /** The ClientHello would not fit in `maxSize` bytes. */
  | { kind: 'too_large' }
  | { kind: 'tls'; serverName: string; alpn: string[] };

const RECORD_HEADER = 5;
const CONTENT_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 0x01;
const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
const SNI_HOST_NAME = 0;

const INCOMPLETE: ClientHelloResult = { kind: 'incomplete' };
const NOT_TLS: ClientHelloResult = { kind: 'not_tls' };
const TOO_LARGE: ClientHelloResult = { kind: 'too_large' };

/**
 * Reads the ClientHello at the start of `data`. The handshake message may span several records (large hellos,
 * post-quantum key shares), so record payloads are joined until the whole message is there.
 */
export function parseClientHello(data: Buffer, maxSize: number): ClientHelloResult {
  const fragments: Buffer[] = [];
  let handshakeBytes = 0;
  let messageLength = -1;
  let offset = 0;
  while (messageLength < 0 || handshakeBytes < 4 + messageLength) {
    if (data.length - offset < 1) return INCOMPLETE;
    if (data[offset] !== CONTENT_HANDSHAKE) return NOT_TLS;
    // Record versions are 3.x (SSL 3.0 to TLS 1.2; TLS 1.3 hellos still say 3.1).
    if (data.length - offset >= 2 && data[offset + 1] !== 3) return NOT_TLS;
    if (data.length - offset < RECORD_HEADER) return INCOMPLETE;
    const recordLength = data.readUInt16BE(offset + 3);
    if (recordLength === 0) return NOT_TLS;
    if (offset + RECORD_HEADER + recordLength > maxSize) return TOO_LARGE;
    const available = Math.min(recordLength, data.length - offset - RECORD_HEADER);
    fragments.push(data.subarray(offset + RECORD_HEADER, offset + RECORD_HEADER + available));
    handshakeBytes += available;
    if (messageLength < 0 && handshakeBytes >= 4) {
      const head = fragments.length === 1 ? fragments[0]! : Buffer.concat(fragments);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) return NOT_TLS;
      messageLength = head.readUIntBE(1, 3);
      if (4 + messageLength > maxSize) return TOO_LARGE;
    }
    if (available < recordLength) {
      return messageLength >= 0 && handshakeBytes >= 4 + messageLength ? helloOf(fragments, messageLength) : INCOMPLETE;
    }
    offset += RECORD_HEADER + recordLength;
  }
  return helloOf(fragments, messageLength);
}

function helloOf(fragments: Buffer[], messageLength: number): ClientHelloResult {
  const message = fragments.length === 1 ? fragments[0]! : Buffer.concat(fragments);
  return parseHelloBody(message.subarray(4, 4 + messageLength)) ?? NOT_TLS;
}

/** The body of a ClientHello; undefined when it is malformed. */
function parseHelloBody(body: Buffer): ClientHelloResult | undefined {
  const reader = new Reader(body);
  // legacy_version, random, then the variable-length session id, cipher suites and compression methods.
  if (!reader.skip(2 + 32) || !reader.skipVector(1) || !reader.skipVector(2) || !reader.skipVector(1)) return undefined;
  let serverName = '';
  let alpn: string[] = [];
  // A hello without extensions is valid (SSL 3.0 style), with neither SNI nor ALPN.
  if (reader.remaining === 0) return { kind: 'tls', serverName, alpn };
  const extensions = reader.vector(2);
  if (extensions === undefined || reader.remaining !== 0) return undefined;
  while (extensions.remaining > 0) {
    const type = extensions.uint(2);
    const payload = extensions.vector(2);
    if (type === undefined || payload === undefined) return undefined;
    if (type === EXT_SERVER_NAME) {
      const name = parseServerName(payload);
      if (name === undefined) return undefined;
      serverName = name;
    } else if (type === EXT_ALPN) {
      const protocols = parseAlpn(payload);
      if (protocols === undefined) return undefined;
      alpn = protocols;
    }
  }
  return { kind: 'tls', serverName, alpn };
}

/** `server_name`: a list of (name_type, name); only host_name entries exist in practice. */
function parseServerName(payload: Reader): string | undefined {
  const list = payload.vector(2);
  if (list === undefined) return undefined;
  while (list.remaining > 0) {
    const type = list.uint(1);
    const name = list.vector(2);
    if (type === undefined || name === undefined) return undefined;
    if (type === SNI_HOST_NAME) return name.rest().toString('latin1');
  }
  return '';
}

/** `application_layer_protocol_negotiation`: a list of non-empty protocol names. */
function parseAlpn(payload: Reader): string[] | undefined {
  const list = payload.vector(2);
  if (list === undefined) return undefined;
  const protocols: string[] = [];
  while (list.remaining > 0) {
    const protocol = list.vector(1);
    if (protocol === undefined || protocol.remaining === 0) return undefined;
    protocols.push(protocol.rest().toString('latin1'));
  }
  return protocols;
}

/** Bounds-checked reads of TLS's big-endian integers and length-prefixed vectors. */
class Reader {
  private offset = 0;

  constructor(private readonly buffer: Buffer) {}

  get remaining(): number {
    return this.buffer.length - this.offset;
  }

  skip(n: number): boolean {
    if (this.remaining < n) return false;
    this.offset += n;
    return true;
  }

  uint(size: 1 | 2): number | undefined {
    if (this.remaining < size) return undefined;
    const value = this.buffer.readUIntBE(this.offset, size);
    this.offset += size;
    return value;
  }

  /** A vector with a `lengthSize`-byte length prefix, as a reader of its own. */
  vector(lengthSize: 1 | 2): Reader | undefined {
    const length = this.uint(lengthSize);
    if (length === undefined || this.remaining < length) return undefined;
    const inner = new Reader(this.buffer.subarray(this.offset, this.offset + length));
    this.offset += length;
    return inner;
  }

  skipVector(lengthSize: 1 | 2): boolean {
    return this.vector(lengthSize) !== undefined;
  }

  rest(): Buffer {
    const rest = this.buffer.subarray(this.offset);
    this.offset = this.buffer.length;
    return rest;
  }
}
