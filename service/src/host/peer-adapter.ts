/**
 * The WireGuard peers adapter: makes the device's peers equal the desired ones with incremental
 * `wg set`. It owns what it applied: while the device is known to hold exactly that, a change is
 * diffed against it without reading the device, and the same input twice runs no command; after a
 * failure, an interface restart or `invalidate()`, the next `set()` reads the device first. A peer
 * `wg set` refuses is reported and left as it was (the others are applied), and not retried with
 * the same values until the next `invalidate()` (the periodic resync).
 */
import type { CommandRunner } from '../exec/runner.js';
import { diffKnownPeers, diffPeerDelta, diffPeers, type PeerChange } from '../mesh/desired/diff.js';
import type { PeerStatus } from '../mesh/observations/device.js';
import type { DesiredPeer, ListDelta } from '../mesh/types.js';
import { ApplyError, inStep } from './apply-error.js';
import type { AppliedChange } from './change.js';
import { applyPeerChanges, readDevice } from './device.js';

/** A peer `wg set` refused. */
export interface PeerRefusal {
  name: string;
  error: string;
}

/** The outcome of one `set()`. */
export interface PeerSetResult {
  changes: AppliedChange[];
  /** Peers `wg set` refused this time (left as they were). */
  refused: PeerRefusal[];
}

const keyOf = (c: PeerChange): string => (c.op === 'remove' ? c.publicKey : c.peer.publicKey);
const signature = (c: PeerChange): string => (c.op === 'remove' ? 'remove' : JSON.stringify(c.peer));

/** How a peer change is logged. */
function describe(c: PeerChange): AppliedChange {
  if (c.op === 'remove') return { what: `removed peer ${c.name ?? c.publicKey}`, why: c.reason };
  if (c.op === 'add')
    return {
      what: `added peer ${c.peer.name} (${c.peer.endpoint ?? 'no endpoint'}, allowed-ips ${c.peer.allowedIPs.join(',')})`,
      why: c.reason,
    };
  return { what: `updated peer ${c.peer.name}`, why: c.reason };
}

/** Keeps the peers of one WireGuard interface equal to the desired ones. */
export class PeerAdapter {
  /** Peers this adapter applied last, by public key (decides when endpoints are re-set). */
  private applied = new Map<string, DesiredPeer>();
  /** True while the device is known to hold exactly `applied`. */
  private trusted = false;
  /** The list the last `set()` applied (while trusted, a delta from it is all there is to do). */
  private lastList: readonly DesiredPeer[] | undefined;
  /** Changes `wg set` refused, by public key → the refused change's signature (not retried as they are). */
  private readonly refused = new Map<string, string>();

  /** `onRead`: told what the device holds whenever the adapter reads it (the periodic resync). */
  constructor(
    private readonly runner: CommandRunner,
    private readonly iface: string,
    private readonly onRead?: (peers: readonly PeerStatus[]) => void,
  ) {}

  /**
   * The changes `set(desired)` would make (reads the device when it is not trusted); none when
   * the device does not exist yet, as it will be created with the full config.
   */
  async plan(desired: readonly DesiredPeer[]): Promise<PeerChange[]> {
    if (this.trusted) return this.planKnown(desired);
    const dev = await inStep('peers', () => readDevice(this.runner, this.iface));
    return dev ? diffPeers(desired, dev.peers, this.applied) : [];
  }

  /**
   * Makes the device's peers equal `desired`; a repeat with equal input runs nothing. `delta`
   * (how `desired` differs from an earlier list) is used when that list is the one applied last.
   */
  async set(desired: readonly DesiredPeer[], delta?: ListDelta<DesiredPeer>): Promise<PeerSetResult> {
    // Known state is planned without a pause, so `wg set` starts before anything run alongside it.
    const known = this.trusted;
    const rebased: DesiredPeer[] = [];
    const fromLast = known && delta !== undefined && delta.from === this.lastList;
    const planned = fromLast
      ? diffPeerDelta(delta, this.applied, rebased)
      : known
        ? diffKnownPeers(desired, this.applied, rebased)
        : diffPeers(desired, await this.read(), this.applied);
    this.lastList = undefined;
    const refused: PeerRefusal[] = [];
    const kept = new Set<string>(); // peers whose device state is what it was (refused, or held back)
    // A change `wg set` refused before is not retried as it was (compared only when there are refusals).
    const plan =
      this.refused.size === 0
        ? planned
        : planned.filter((c) => {
            const again = this.refused.get(keyOf(c)) === signature(c);
            if (again) kept.add(keyOf(c));
            return !again;
          });
    if (plan.length > 0) {
      this.trusted = false;
      for (const f of await inStep('peers', () => applyPeerChanges(this.runner, this.iface, plan))) {
        const key = keyOf(f.change);
        this.refused.set(key, signature(f.change));
        kept.add(key);
        refused.push({ name: f.change.op === 'remove' ? (f.change.name ?? key) : f.change.peer.name, error: f.error });
      }
    }
    // A delta plans only what changed: refusals of peers outside it still stand.
    if (!fromLast)
      for (const key of [...this.refused.keys()]) if (!planned.some((c) => keyOf(c) === key)) this.refused.delete(key);
    if (known) this.remember(plan, rebased, kept);
    else
      this.applied = new Map(
        desired.flatMap((p): Array<[string, DesiredPeer]> => {
          const old = this.applied.get(p.publicKey);
          return kept.has(p.publicKey) ? (old ? [[p.publicKey, old]] : []) : [[p.publicKey, p]];
        }),
      );
    this.trusted = true;
    this.lastList = desired;
    const failed = new Set(refused.map((r) => r.name));
    return {
      changes: plan.filter((c) => !failed.has(c.op === 'remove' ? (c.name ?? c.publicKey) : c.peer.name)).map(describe),
      refused,
    };
  }

  /** Forgets that the device is known (and which changes it refused): the next `set()` reads it first. */
  invalidate(): void {
    this.trusted = false;
    this.lastList = undefined;
    this.refused.clear();
  }

  /** After the interface was recreated from the full config: nothing was applied by `wg set` since. */
  reset(): void {
    this.applied = new Map();
    this.trusted = false;
    this.lastList = undefined;
  }

  private planKnown(desired: readonly DesiredPeer[]): PeerChange[] {
    return diffKnownPeers(desired, this.applied);
  }

  /** After a change to a known device: what was applied, and unchanged peers in new objects (updated in place, no pass over the mesh). */
  private remember(plan: readonly PeerChange[], rebased: readonly DesiredPeer[], kept: ReadonlySet<string>): void {
    for (const c of plan) {
      if (kept.has(keyOf(c))) continue;
      if (c.op === 'remove') this.applied.delete(c.publicKey);
      else this.applied.set(c.peer.publicKey, c.peer);
    }
    for (const p of rebased) this.applied.set(p.publicKey, p);
  }

  private async read(): Promise<PeerStatus[]> {
    const dev = await inStep('peers', () => readDevice(this.runner, this.iface));
    if (!dev) throw new ApplyError('interface', `interface ${this.iface} is not a WireGuard device (wg show failed)`);
    this.onRead?.(dev.peers);
    return dev.peers;
  }
}
