import { connect, type Socket } from 'node:net';
import type { envoy } from '../../../generated/envoy.js';
import type { ConfigError } from '../../../config/errors.js';
import { HEALTHY, type HealthProbe, NETWORK_FAILURE, type ProbeResult, type ProbeTarget } from './probe.js';

type TcpHealthCheck = envoy.config.core.v3.HealthCheck.TcpHealthCheck;
type Payload = envoy.config.core.v3.HealthCheck.Payload;

/** A TCP check: bytes to send, and the blocks expected back; with neither it only connects. */
export interface TcpCheckSpec {
  send: Buffer;
  receive: readonly Buffer[];
}

/** `Payload.text` is hex (`"000000FF"`); `binary` is raw bytes (base64 in JSON). */
function payloadBytes(payload: Payload, path: string, errors: ConfigError[]): Buffer {
  if (payload.binary !== undefined) return Buffer.from(payload.binary);
  const text = payload.text ?? '';
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(text)) {
    errors.push({ code: 'invalid_value', path: `${path}.text`, message: `"${text}" is not hex-encoded bytes` });
    return Buffer.alloc(0);
  }
  return Buffer.from(text, 'hex');
}

export function compileTcpCheck(config: TcpHealthCheck, path: string, errors: ConfigError[]): TcpCheckSpec {
  return {
    send: config.send === undefined ? Buffer.alloc(0) : payloadBytes(config.send, `${path}.send`, errors),
    receive: (config.receive ?? []).map((payload, i) => payloadBytes(payload, `${path}.receive[${i}]`, errors)),
  };
}

/**
 * Envoy's "fuzzy" match: every expected block is found in what arrived, in order, not necessarily next to each
 * other.
 */
export function receivedAll(data: Buffer, expected: readonly Buffer[]): boolean {
  let from = 0;
  for (const block of expected) {
    const at = data.indexOf(block, from);
    if (at < 0) return false;
    from = at + block.length;
  }
  return true;
}

/** Checks over plain TCP: connect, write `send`, wait until everything in `receive` came back. */
export class TcpProbe implements HealthProbe {
  private socket: Socket | undefined;
  private received = Buffer.alloc(0);
  private done: ((result: ProbeResult) => void) | undefined;

  constructor(
    private readonly spec: TcpCheckSpec,
    private readonly reuseConnection: boolean,
  ) {}

  check(target: ProbeTarget, done: (result: ProbeResult) => void): void {
    this.done = done;
    this.received = Buffer.alloc(0);
    const socket = this.socket;
    if (socket !== undefined && !socket.destroyed && !socket.connecting) {
      this.sendAndWait(socket);
      return;
    }
    const fresh = connect({ host: target.address, port: target.port });
    this.socket = fresh;
    fresh.setNoDelay(true);
    // Health checking never keeps a process alive by itself (its timers are unref'd too).
    fresh.unref();
    fresh.on('connect', () => this.sendAndWait(fresh));
    fresh.on('data', (chunk: Buffer) => this.onData(fresh, chunk));
    fresh.on('error', () => undefined);
    fresh.on('close', () => {
      if (this.socket !== fresh) return;
      this.socket = undefined;
      // Closed before the check concluded: the host went away.
      this.finish(NETWORK_FAILURE);
    });
  }

  abort(): void {
    this.done = undefined;
    this.dropConnection();
  }

  close(): void {
    this.abort();
  }

  private sendAndWait(socket: Socket): void {
    if (this.spec.send.length > 0) socket.write(this.spec.send);
    if (this.spec.receive.length === 0) this.finish(HEALTHY);
  }

  private onData(socket: Socket, chunk: Buffer): void {
    if (this.done === undefined || socket !== this.socket) return;
    this.received = Buffer.concat([this.received, chunk]);
    if (receivedAll(this.received, this.spec.receive)) this.finish(HEALTHY);
  }

  private finish(result: ProbeResult): void {
    const done = this.done;
    if (done === undefined) return;
    this.done = undefined;
    if (!this.reuseConnection) this.dropConnection();
    done(result);
  }

  private dropConnection(): void {
    const socket = this.socket;
    this.socket = undefined;
    socket?.destroy();
  }
}
