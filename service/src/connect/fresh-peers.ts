/**
 * Quick first handshakes with nodes that just joined: a node publishes its key before its own
 * interface holds this host's Peer, so the first handshake initiation may arrive too early, and
 * WireGuard retries only every 5 s; a new peer without a handshake is therefore removed and added
 * again as it was (a new peer initiates at once) 0.3, 0.6, 1, 2 and 3 seconds after it came.
 */
import type { CommandRunner } from '../exec/runner.js';
import { applyPeerChanges } from '../host/device.js';
import type { Logger } from '../log/logger.js';
import type { InterfaceStatus } from '../mesh/observations/device.js';
import type { DesiredPeer } from '../mesh/types.js';
import type { Part } from '../daemon/part.js';

/** When a new peer without a handshake is added again (ms after it came). */
export const FRESH_RETRIES_MS: readonly number[] = [300, 600, 1_000, 2_000, 3_000];

/** What the retries take. */
export interface FreshPeersOptions {
  runner: CommandRunner;
  iface: string;
  log: Logger;
  /** Reads the device (at most `maxAgeMs` old). */
  read(maxAgeMs: number): Promise<InterfaceStatus | undefined>;
  /** The peer with this key as wanted now (undefined: no longer wanted). */
  current(publicKey: string): DesiredPeer | undefined;
}

/** Re-adds new peers whose first handshake did not come through. */
export class FreshPeers implements Part {
  readonly name = 'new peer handshakes';
  private known: Set<string> | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(private readonly o: FreshPeersOptions) {}

  start(): void {}

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  /** Told the peers after every run: those not seen before are watched (not the first run's: their nodes hold this host already). */
  applied(peers: readonly DesiredPeer[]): void {
    const keys = new Set(peers.map((p) => p.publicKey));
    const before = this.known;
    this.known = keys;
    if (!before || this.stopped) return;
    for (const p of peers) if (!before.has(p.publicKey)) for (const ms of FRESH_RETRIES_MS) this.later(ms, p);
  }

  private later(ms: number, peer: DesiredPeer): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      void this.retry(peer);
    }, ms);
    this.timers.add(t);
  }

  /** Removes the peer when it is still wanted and has no handshake, and adds it again as it is now wanted. */
  private async retry(first: DesiredPeer): Promise<void> {
    if (this.stopped) return;
    const dev = await this.o.read(0).catch(() => undefined);
    const now = dev?.peers.find((p) => p.publicKey === first.publicKey);
    const peer = this.o.current(first.publicKey);
    if (!now || !peer || now.latestHandshake > 0 || this.stopped) return;
    this.o.log.debug(`no handshake with new node ${peer.name} yet: adding it again, which initiates one at once`);
    const reason = 'a first handshake';
    const { runner, iface } = this.o;
    const failed = [
      ...(await applyPeerChanges(runner, iface, [
        { op: 'remove', publicKey: peer.publicKey, name: peer.name, reason },
      ])),
      ...(await applyPeerChanges(runner, iface, [{ op: 'add', peer, reason }])),
    ];
    for (const f of failed) this.o.log.warning(`adding node ${peer.name} again: ${f.error}`);
  }
}
