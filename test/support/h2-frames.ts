/**
 * HTTP/2 frames written by hand (RFC 9113 §4), for the protocol-abuse tests a well-behaved client library will not
 * send: floods of PING, SETTINGS and CONTINUATION frames, header blocks past the announced limit, more streams than
 * SETTINGS_MAX_CONCURRENT_STREAMS. Header blocks use HPACK literals without indexing (RFC 7541 §6.2.2).
 */
import net from 'node:net';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
export const enum FrameType {
  Data = 0,
  Headers = 1,
  RstStream = 3,
  Settings = 4,
  Ping = 6,
  Goaway = 7,
  Continuation = 9,
}
export const END_STREAM = 0x1;
export const END_HEADERS = 0x4;

export function frame(type: FrameType, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK integer with a 7-bit prefix. */
function integer(n: number): Buffer {
  if (n < 127) return Buffer.from([n]);
  const out = [127];
  for (n -= 127; n >= 128; n = Math.floor(n / 128)) out.push((n % 128) + 128);
  out.push(n);
  return Buffer.from(out);
}

export function literalHeader(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0]), integer(name.length), Buffer.from(name), integer(value.length), Buffer.from(value)]);
}

/** `GET /path` on http with `:authority: host`, then `extra` fields. */
export function requestBlock(path = '/', extra: Buffer[] = []): Buffer {
  // 0x82 :method GET, 0x86 :scheme http (static table), then :path and :authority as literals.
  return Buffer.concat([Buffer.from([0x82, 0x86]), literalHeader(':path', path), literalHeader(':authority', 'localhost'), ...extra]);
}

export interface ReceivedFrame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/**
 * Connects, sends the preface, an empty SETTINGS and `bytes`, and collects the frames the server sends until it
 * closes the connection or `waitMs` passes. With `pauseMs`, nothing is read for that long first, so that the
 * server's replies pile up on its side.
 */
export function exchange(port: number, bytes: Buffer, { pauseMs = 0, waitMs = 3000 } = {}): Promise<{ frames: ReceivedFrame[]; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let closed = false;
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', () => {});
    if (pauseMs > 0) {
      socket.pause();
      setTimeout(() => socket.resume(), pauseMs);
    }
    const done = (): void => {
      clearTimeout(timer);
      const all = Buffer.concat(chunks);
      const frames: ReceivedFrame[] = [];
      for (let o = 0; o + 9 <= all.length; ) {
        const length = all.readUIntBE(o, 3);
        frames.push({ type: all[o + 3]!, flags: all[o + 4]!, stream: all.readUInt32BE(o + 5) & 0x7fffffff, payload: all.subarray(o + 9, o + 9 + length) });
        o += 9 + length;
      }
      socket.destroy();
      resolve({ frames, closed });
    };
    const timer = setTimeout(done, pauseMs + waitMs);
    socket.on('close', () => {
      closed = true;
      done();
    });
    socket.write(Buffer.concat([PREFACE, frame(FrameType.Settings, 0, 0), bytes]));
  });
}

/** The error code of the GOAWAY among `frames`, if any. */
export function goawayCode(frames: readonly ReceivedFrame[]): number | undefined {
  const goaway = frames.find((f) => f.type === FrameType.Goaway);
  return goaway?.payload.readUInt32BE(4);
}
