/**
 * A nudge: one small UDP datagram to a peer's overlay address, which makes WireGuard send to the
 * peer's endpoint (and the peer answer, with a keepalive at least) — so that endpoint failover can
 * tell an idle peer from one whose endpoint cannot be sent to.
 */
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';

/** The discard port: nothing listens there, and whatever answers does not matter. */
const DISCARD_PORT = 9;

/** Sends one datagram to `address` (an overlay address routed through the tunnel); resolves when it has been handed to the kernel. */
export function nudge(address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = createSocket(isIPv6(address) ? 'udp6' : 'udp4');
    socket.once('error', (err) => {
      socket.close();
      reject(err);
    });
    socket.send(Buffer.from([0]), DISCARD_PORT, address, (err) => {
      socket.close();
      if (err) reject(new Error(`nudging ${address}: ${err.message}`));
      else resolve();
    });
  });
}
