/**
 * codec_type AUTO on a plaintext connection: HTTP/2 with prior knowledge starts with the client preface, anything
 * else is HTTP/1.1. The first bytes are read until they are the preface, or stop matching it (for an HTTP/1.1
 * request, at the first byte), then put back for the chosen codec.
 */
import type { Socket } from 'node:net';
import { listen, type Listeners, unlisten } from '../../../util/listeners.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export interface PrefaceOwner {
  /** The socket's first bytes were read and put back; reading is paused. */
  onPreface(socket: Socket, http2: boolean): void;
}

const kSniff = Symbol('portico.prefaceSniff');
type SniffSocket = Socket & { [kSniff]?: Sniff };

interface Sniff {
  owner: PrefaceOwner;
  received: Buffer;
}

/** Calls `owner.onPreface` once the socket's first bytes tell; a socket closing before that is just closed. */
export function sniffPreface(socket: Socket, owner: PrefaceOwner): void {
  (socket as SniffSocket)[kSniff] = { owner, received: Buffer.alloc(0) };
  listen(socket, SNIFF_LISTENERS);
}

function onSniffData(this: SniffSocket, data: Buffer): void {
  const sniff = this[kSniff]!;
  const received = sniff.received.length === 0 ? data : Buffer.concat([sniff.received, data]);
  const length = Math.min(received.length, PREFACE.length);
  const http2 = received.subarray(0, length).equals(PREFACE.subarray(0, length));
  if (http2 && length < PREFACE.length) {
    sniff.received = received;
    return;
  }
  this.pause();
  unlisten(this, SNIFF_LISTENERS);
  this[kSniff] = undefined;
  this.unshift(received);
  sniff.owner.onPreface(this, http2);
}

function onSniffTimeout(this: SniffSocket): void {
  this.destroy();
}

function onSniffEnd(this: SniffSocket): void {
  // Only part of the preface came before the client's FIN: no request to answer.
  this.destroy();
}

function onSniffError(): void {
  // 'close' follows.
}

function onSniffClose(this: SniffSocket): void {
  unlisten(this, SNIFF_LISTENERS);
  this[kSniff] = undefined;
}

const SNIFF_LISTENERS: Listeners = [
  ['data', onSniffData],
  ['timeout', onSniffTimeout],
  ['end', onSniffEnd],
  ['error', onSniffError],
  ['close', onSniffClose],
];
