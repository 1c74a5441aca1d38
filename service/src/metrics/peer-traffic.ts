/**
 * Per-peer traffic as counters that never go backwards while the daemon runs: every device reading
 * is compared with the previous one of the same peer, and only the growth is added, so a peer
 * removed and added again, a new key, or a recreated interface (whose counters start from 0 again)
 * continues the count instead of resetting it; also notes when the device's endpoint for a peer
 * moved without the daemon asking (WireGuard followed the peer: NAT, or the peer's own switch).
 */
import type { PeerStatus } from '../mesh/observations/device.js';
import type { DesiredPeer } from '../mesh/types.js';

/** One configured peer's traffic and device state, as of the latest reading that showed it. */
export interface PeerTrafficEntry {
  kind: 'node' | 'peer';
  name: string;
  /** Bytes received from the peer since the daemon first saw it (never decreasing). */
  rxTotal: number;
  /** Bytes sent to the peer since the daemon first saw it (never decreasing). */
  txTotal: number;
  /** Unix seconds of the latest handshake; 0 = never. */
  latestHandshake: number;
  /** The endpoint the device uses now, if any. */
  endpoint: string | undefined;
}

/** What is kept per peer between readings. */
interface Kept extends PeerTrafficEntry {
  publicKey: string;
  /** The device's own counters at the previous reading. */
  rx: number;
  tx: number;
}

/** How a counter grew between two readings: all of it when the device's counter started again (it went down). */
function growth(before: number, now: number, sameKey: boolean): number {
  return sameKey && now >= before ? now - before : now;
}

/** Accumulates the device's per-peer counters into monotonic totals, for the peers this node configured. */
export class PeerTraffic {
  private readonly kept = new Map<string, Kept>();

  /** `roamed` is called once for every peer whose endpoint moved to one the daemon did not set. */
  constructor(private readonly roamed: (peer: DesiredPeer) => void = () => undefined) {}

  /**
   * Takes one device reading (readings must come in the order they were made). Peers the daemon
   * did not configure are ignored; peers it no longer wants are forgotten.
   */
  see(device: readonly PeerStatus[], desired: readonly DesiredPeer[]): void {
    const byKey = new Map(device.map((d) => [d.publicKey, d]));
    const wanted = new Set<string>();
    for (const p of desired) {
      const id = `${p.kind}/${p.name}`;
      wanted.add(id);
      const d = byKey.get(p.publicKey);
      if (d) this.seeOne(id, p, d);
    }
    for (const id of this.kept.keys()) if (!wanted.has(id)) this.kept.delete(id);
  }

  private seeOne(id: string, p: DesiredPeer, d: PeerStatus): void {
    const k = this.kept.get(id);
    const next: Kept = {
      kind: p.kind,
      name: p.name,
      publicKey: p.publicKey,
      rx: d.rxBytes,
      tx: d.txBytes,
      rxTotal: d.rxBytes,
      txTotal: d.txBytes,
      latestHandshake: d.latestHandshake,
      endpoint: d.endpoint,
    };
    if (k) {
      const sameKey = k.publicKey === p.publicKey;
      next.rxTotal = k.rxTotal + growth(k.rx, d.rxBytes, sameKey);
      next.txTotal = k.txTotal + growth(k.tx, d.txBytes, sameKey);
      if (sameKey && k.endpoint && d.endpoint && d.endpoint !== k.endpoint && d.endpoint !== p.endpoint) this.roamed(p);
    }
    this.kept.set(id, next);
  }

  /** Every configured peer seen on the device, in the order first seen. */
  entries(): PeerTrafficEntry[] {
    return [...this.kept.values()];
  }
}
