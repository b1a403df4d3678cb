/**
 * A minimal RFC 6455 WebSocket client and server for tests (text frames, close, ping), so that WebSocket
 * proxying is tested against the protocol itself without a dependency: the handshake with
 * `Sec-WebSocket-Accept`, masked client frames, unmasked server frames.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { type AddressInfo, connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export function acceptKey(key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64');
}

const OPCODE_TEXT = 0x1;
const OPCODE_CLOSE = 0x8;
const OPCODE_PING = 0x9;
const OPCODE_PONG = 0xa;

/** One frame, FIN set; masked with a fresh key when `masked` (client to server). */
export function encodeFrame(opcode: number, payload: Buffer, masked: boolean): Buffer {
  const length = payload.length;
  const lengthBytes = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const head = Buffer.alloc(2 + lengthBytes + (masked ? 4 : 0));
  head[0] = 0x80 | opcode;
  head[1] = (masked ? 0x80 : 0) | (lengthBytes === 0 ? length : lengthBytes === 2 ? 126 : 127);
  if (lengthBytes === 2) head.writeUInt16BE(length, 2);
  else if (lengthBytes === 8) head.writeBigUInt64BE(BigInt(length), 2);
  if (!masked) return Buffer.concat([head, payload]);
  const mask = randomBytes(4);
  mask.copy(head, 2 + lengthBytes);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i]! ^= mask[i & 3]!;
  return Buffer.concat([head, body]);
}

interface Frame {
  opcode: number;
  payload: Buffer;
}

/** Splits a byte stream into frames (unmasking them), keeping an incomplete tail for the next chunk. */
class FrameReader {
  private buffer: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const frames: Frame[] = [];
    for (;;) {
      const b = this.buffer;
      if (b.length < 2) break;
      let length = b[1]! & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (b.length < 4) break;
        length = b.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (b.length < 10) break;
        length = Number(b.readBigUInt64BE(2));
        offset = 10;
      }
      const masked = (b[1]! & 0x80) !== 0;
      const mask = masked ? b.subarray(offset, offset + 4) : undefined;
      if (masked) offset += 4;
      if (b.length < offset + length) break;
      const payload = Buffer.from(b.subarray(offset, offset + length));
      if (mask !== undefined) for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
      frames.push({ opcode: b[0]! & 0x0f, payload });
      this.buffer = b.subarray(offset + length);
    }
    return frames;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Server

export interface WebSocketServer {
  port: number;
  /** Upgrade requests received: path and headers as the server saw them. */
  upgrades: { path: string; headers: IncomingMessage['headers'] }[];
  close(): Promise<void>;
}

export interface WebSocketServerOptions {
  /** The text sent back for every text message received. */
  reply: (message: string) => string;
  /** Serve over TLS with this certificate and key (PEM). */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Body (with status 400) for requests without an upgrade. */
  plainBody?: string;
}

/** A WebSocket server answering each text message with `reply(message)`, and plain requests with a 400. */
export async function startWebSocketServer(options: WebSocketServerOptions): Promise<WebSocketServer> {
  const plainBody = options.plainBody ?? 'Only WebSocket connections are welcome here';
  const onRequest = (_req: IncomingMessage, res: import('node:http').ServerResponse): void => {
    res.writeHead(400, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(plainBody) });
    res.end(plainBody);
  };
  const server: Server = options.tls ? createHttpsServer({ ...options.tls }, onRequest) : createHttpServer(onRequest);
  const upgrades: WebSocketServer['upgrades'] = [];
  const sockets = new Set<Socket>();
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    upgrades.push({ path: req.url ?? '', headers: req.headers });
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const key = req.headers['sec-websocket-key'];
    if (typeof key !== 'string' || String(req.headers.upgrade).toLowerCase() !== 'websocket') {
      socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      return;
    }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${acceptKey(key)}\r\n\r\n`);
    const reader = new FrameReader();
    const onData = (chunk: Buffer): void => {
      for (const frame of reader.push(chunk)) {
        if (frame.opcode === OPCODE_TEXT) socket.write(encodeFrame(OPCODE_TEXT, Buffer.from(options.reply(frame.payload.toString())), false));
        else if (frame.opcode === OPCODE_PING) socket.write(encodeFrame(OPCODE_PONG, frame.payload, false));
        else if (frame.opcode === OPCODE_CLOSE) socket.end(encodeFrame(OPCODE_CLOSE, frame.payload, false));
      }
    };
    if (head.length > 0) onData(head);
    socket.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    upgrades,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Client

export interface WebSocketClient {
  /** The 101 response's headers (lower-case names). */
  headers: Record<string, string>;
  send(text: string): void;
  /** The next text message from the server (messages are queued until read). */
  receive(): Promise<string>;
  /** Sends a close frame and waits for the connection to close. */
  close(): Promise<void>;
  socket: Socket;
}

export interface HandshakeResult {
  status: number;
  headers: Record<string, string>;
  /** The response body, for a refused upgrade (read until the connection closed). */
  body: string;
  /** Set when the server switched protocols. */
  client?: WebSocketClient;
}

export interface WebSocketConnectOptions {
  port: number;
  path?: string;
  tls?: boolean;
  headers?: Record<string, string>;
}

/**
 * Opens a WebSocket (`ws://127.0.0.1:port/path`, or `wss://` without certificate checks); resolves with the
 * handshake's outcome, and a client when the server answered 101 with the right `Sec-WebSocket-Accept`.
 */
export function connectWebSocket(options: WebSocketConnectOptions): Promise<HandshakeResult> {
  const key = randomBytes(16).toString('base64');
  const socket: Socket = options.tls
    ? tlsConnect({ port: options.port, host: '127.0.0.1', rejectUnauthorized: false, servername: 'localhost' })
    : netConnect({ port: options.port, host: '127.0.0.1' });
  const extra = Object.entries(options.headers ?? {}).map(([name, value]) => `${name}: ${value}\r\n`).join('');
  socket.write(
    `GET ${options.path ?? '/'} HTTP/1.1\r\nhost: localhost:${options.port}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n` +
      `sec-websocket-key: ${key}\r\nsec-websocket-version: 13\r\n${extra}\r\n`,
  );
  return new Promise<HandshakeResult>((resolve, reject) => {
    let buffer = Buffer.alloc(0);
    let head: { status: number; headers: Record<string, string> } | undefined;
    const onData = (chunk: Buffer): void => {
      buffer = Buffer.concat([buffer, chunk]);
      if (head !== undefined) return;
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      const lines = buffer.subarray(0, end).toString('latin1').split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      head = { status: Number(lines[0]!.split(' ')[1]), headers };
      buffer = buffer.subarray(end + 4);
      if (head.status !== 101) return;
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', reject);
      if (headers['sec-websocket-accept'] !== acceptKey(key)) {
        socket.destroy();
        reject(new Error(`bad sec-websocket-accept ${headers['sec-websocket-accept']}`));
        return;
      }
      resolve({ status: 101, headers, body: '', client: new Client(socket, headers, buffer) });
    };
    const onEnd = (): void => {
      if (head === undefined) reject(new Error(`connection closed before a response: ${buffer.toString()}`));
      else resolve({ ...head, body: buffer.toString() });
      socket.destroy();
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', reject);
  });
}

class Client implements WebSocketClient {
  private readonly reader = new FrameReader();
  private readonly messages: string[] = [];
  private readonly waiting: { resolve: (m: string) => void; reject: (e: Error) => void }[] = [];
  private closed: Promise<void>;
  private failure: Error | undefined;

  constructor(
    readonly socket: Socket,
    readonly headers: Record<string, string>,
    rest: Buffer,
  ) {
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('connection closed')));
    if (rest.length > 0) this.onData(rest);
  }

  send(text: string): void {
    this.socket.write(encodeFrame(OPCODE_TEXT, Buffer.from(text), true));
  }

  receive(): Promise<string> {
    const message = this.messages.shift();
    if (message !== undefined) return Promise.resolve(message);
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  async close(): Promise<void> {
    if (!this.socket.destroyed) this.socket.write(encodeFrame(OPCODE_CLOSE, Buffer.from([0x03, 0xe8]), true));
    await this.closed;
  }

  private onData(chunk: Buffer): void {
    for (const frame of this.reader.push(chunk)) {
      if (frame.opcode === OPCODE_TEXT) {
        const text = frame.payload.toString();
        const waiter = this.waiting.shift();
        if (waiter !== undefined) waiter.resolve(text);
        else this.messages.push(text);
      } else if (frame.opcode === OPCODE_CLOSE) {
        this.socket.end();
      }
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const waiter of this.waiting.splice(0)) waiter.reject(err);
  }
}
