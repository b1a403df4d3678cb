/**
 * Joins two connected sockets into one byte stream each way, with backpressure (a side that cannot keep up
 * pauses reading on the other), as Envoy's TCP proxy and upgraded HTTP connections do. A side that ends (FIN)
 * ends the other's write side while the opposite direction keeps flowing (half-close); a side that fails or is
 * reset tears the other down; a side closed cleanly both ways lets the other flush what it was given.
 */
import type { Socket } from 'node:net';

const kPeer = Symbol('portico.splicePeer');
type SplicedSocket = Socket & { [kPeer]?: Socket };

export function splice(a: Socket, b: Socket): void {
  for (const [socket, peer] of [[a, b], [b, a]] as const) {
    socket.allowHalfOpen = true;
    (socket as SplicedSocket)[kPeer] = peer;
    socket.on('error', onSplicedError);
    socket.on('close', onSplicedClose);
  }
  a.pipe(b);
  b.pipe(a);
}

function onSplicedError(this: SplicedSocket): void {
  this.destroy();
}

function onSplicedClose(this: SplicedSocket): void {
  if (!this.readableEnded || !this.writableFinished) this[kPeer]?.destroy();
}
