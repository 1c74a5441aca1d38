/**
 * The endpoint watch: while some Node peer can be dialled at more than one endpoint (its own
 * addresses, and endpoints other nodes saw it arrive from), it reads the device every third of the
 * failover timeout, runs each such peer's failover state machine (`mesh/failover.ts`), nudges
 * the quiet peers it asks for, and hands the daemon the endpoint chosen for each peer not on its
 * best one; each switch is logged with its reason and counted by it. From every reading (its
 * own, or the periodic resync's) it also notes the peers that arrive from an endpoint none of
 * their addresses explains — behind NAT — for this node to publish as
 * `wg-overlay.io/discovered-endpoints`. With no such peer it reads nothing.
 */
import { describeError, type Logger } from '../log/logger.js';
import type { ClusterView } from '../mesh/cluster-view.js';
import {
  failoverStep,
  initialState,
  type FailoverState,
  type FailoverTiming,
  type SwitchReason,
} from '../mesh/observations/failover.js';
import type { InterfaceStatus, PeerStatus } from '../mesh/observations/device.js';
import { observeArrivals } from '../mesh/observations/nat.js';
import { escapeUnsafe } from '../mesh/text.js';
import type { DesiredPeer, DesiredState, ListDelta } from '../mesh/types.js';
import type { Part } from './part.js';

/** Options of the endpoint watch. */
export interface EndpointWatchOptions {
  /**
   * Reads the device (shared with the metrics: at most one read at a time), with an answer at
   * most `maxAgeMs` old: each round needs a reading of its own.
   */
  read(maxAgeMs: number): Promise<InterfaceStatus | undefined>;
  /** The Node peers the daemon wants now. */
  peers(): readonly DesiredPeer[];
  /** Endpoints other nodes saw a Node arrive from (by Node name). */
  discovered(name: string): readonly string[];
  /** The Nodes other nodes report arriving from somewhere (default: none). */
  reported?(): Iterable<string>;
  timing: FailoverTiming;
  log: Logger;
  /** A choice changed: the daemon must apply it. */
  onChoice(): void;
  /** This node's observations changed: the daemon must publish them. */
  onObserved(): void;
  /**
   * A peer's endpoint was switched, for `reason` (`reset`: back to its best one because its
   * candidates changed); the metrics count them.
   */
  onSwitch?(reason: SwitchReason | 'reset'): void;
  /** Sends the peer one packet through the tunnel (failover asks for it when a live peer goes quiet). */
  nudge?(peer: DesiredPeer): void;
  now?: () => number;
}

/**
 * The Node peers of the desired state by name, and those with several endpoints of their own,
 * kept up to date from each desired state's delta: a change costs what it changed, not the mesh.
 */
class FollowedPeers {
  readonly byName = new Map<string, DesiredPeer>();
  /** Names of the peers with more than one candidate of their own. */
  readonly several = new Set<string>();
  private basis: readonly DesiredPeer[] | undefined;

  /** Takes the desired peers (with the delta from the ones followed before, when they derive from them). */
  follow(peers: readonly DesiredPeer[], delta?: ListDelta<DesiredPeer>): void {
    if (peers === this.basis) return;
    if (delta && this.basis !== undefined && delta.from === this.basis) {
      for (const p of delta.removed) if (this.byName.get(p.name) === p) this.drop(p.name);
      for (const p of delta.added) this.add(p);
    } else {
      this.byName.clear();
      this.several.clear();
      for (const p of peers) this.add(p);
    }
    this.basis = peers;
  }

  private add(p: DesiredPeer): void {
    if (p.kind !== 'node') return;
    this.byName.set(p.name, p);
    if ((p.candidates?.length ?? 0) > 1) this.several.add(p.name);
    else this.several.delete(p.name);
  }

  private drop(name: string): void {
    this.byName.delete(name);
    this.several.delete(name);
  }
}

/** One peer's failover: its candidates and state. */
interface Tracked {
  candidates: string[];
  state: FailoverState;
}

/** Chooses endpoints for peers with several, and notes peers behind NAT. */
export class EndpointWatch implements Part {
  readonly name = 'endpoint watch';
  private timer: NodeJS.Timeout | undefined;
  private readonly tracked = new Map<string, Tracked>();
  private readonly chosen = new Map<string, string>();
  private changed = new Set<string>();
  private observedNow: Record<string, string> = {};
  private busy = false;
  private readonly now: () => number;
  private readonly followed = new FollowedPeers();

  constructor(private readonly o: EndpointWatchOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Time between rounds: a third of the failover timeout, at least a second. */
  get intervalMs(): number {
    return Math.max(1_000, Math.floor(this.o.timing.timeoutMs / 3));
  }

  start(): void {
    this.timer = setInterval(() => void this.check(), this.intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** The endpoints chosen instead of peers' best ones, and the names whose choice changed since the last call. */
  take(): { chosen: ReadonlyMap<string, string>; changed: ReadonlySet<string> } {
    const changed = this.changed;
    this.changed = new Set();
    return { chosen: this.chosen, changed };
  }

  /** Peers (by name) this node saw arrive from an endpoint none of their addresses explains. */
  get observed(): Readonly<Record<string, string>> {
    return this.observedNow;
  }

  /** Where each tracked peer stands, for the status file. */
  describe(name: string): { candidates: string[]; index: number; why?: string } | undefined {
    const t = this.tracked.get(name);
    return t
      ? { candidates: t.candidates, index: t.state.index, ...(t.state.why ? { why: t.state.why } : {}) }
      : undefined;
  }

  /** How many peers failover follows (they have several candidates), and how many of them are not on their best one. */
  counts(): { tracked: number; fallback: number } {
    return { tracked: this.tracked.size, fallback: this.chosen.size };
  }

  /** Follows a new desired state (the daemon calls it after every run): its delta keeps the peers current. */
  followDesired(d: { peers: readonly DesiredPeer[]; peersDelta?: ListDelta<DesiredPeer> | undefined }): void {
    this.followed.follow(d.peers, d.peersDelta);
  }

  /** The peers with several endpoints and those endpoints, best first: their own, then what others report. */
  private wanted(): Map<string, { peer: DesiredPeer; candidates: string[] }> {
    this.followed.follow(this.o.peers());
    const out = new Map<string, { peer: DesiredPeer; candidates: string[] }>();
    const names = new Set([...this.followed.several, ...(this.o.reported?.() ?? [])]);
    for (const name of names) {
      const peer = this.followed.byName.get(name);
      if (!peer) continue;
      const own = peer.candidates ?? (peer.endpoint ? [peer.endpoint] : []);
      const candidates = [...new Set([...own, ...this.o.discovered(name)])];
      if (candidates.length > 1) out.set(name, { peer, candidates });
    }
    return out;
  }

  /** A reading made by someone else (the periodic resync): used for the NAT observations. */
  sawDevice(peers: readonly PeerStatus[]): void {
    this.observe(peers);
  }

  /** One round (the timer runs one every third of the timeout): track the peers with several endpoints; read the device only if there are any. */
  async check(): Promise<void> {
    if (this.busy) return;
    const wanted = this.wanted();
    this.forgetOthers(wanted);
    if (wanted.size === 0) return;
    this.busy = true;
    try {
      // Half a round: a reading cached for the metrics (or by the previous round) is not taken
      // for a new one, which would leave every other round without news and stretch the failover.
      const dev = await this.o.read(Math.floor(this.intervalMs / 2));
      if (!dev) return;
      this.observe(dev.peers);
      const byKey = new Map(dev.peers.map((d) => [d.publicKey, d]));
      for (const { peer, candidates } of wanted.values()) {
        const d = byKey.get(peer.publicKey);
        if (d) this.stepOne(peer, candidates, d);
      }
    } catch (err) {
      this.o.log.debug(
        `endpoint watch: reading the device failed: ${err instanceof Error ? err.message : String(err)}`,
      );
    } finally {
      this.busy = false;
    }
  }

  /** Peers that no longer have several endpoints go back to their best one. */
  private forgetOthers(wanted: ReadonlyMap<string, unknown>): void {
    for (const name of [...this.tracked.keys()]) {
      if (wanted.has(name)) continue;
      this.tracked.delete(name);
      if (!this.chosen.delete(name)) continue;
      this.changed.add(name);
      this.o.onSwitch?.('reset');
    }
    if (this.changed.size > 0) this.o.onChoice();
  }

  private stepOne(p: DesiredPeer, candidates: string[], d: PeerStatus): void {
    const { name } = p;
    const now = this.now();
    let t = this.tracked.get(name);
    if (!t || t.candidates.join() !== candidates.join()) {
      t = { candidates, state: initialState(now, this.o.timing) };
      this.tracked.set(name, t);
      if (this.chosen.delete(name)) {
        this.changed.add(name);
        this.o.onSwitch?.('reset');
        this.o.onChoice();
      }
    }
    const reading = {
      latestHandshake: d.latestHandshake,
      rxBytes: d.rxBytes,
      txBytes: d.txBytes,
      endpoint: d.endpoint,
    };
    const step = failoverStep(t.state, { count: candidates.length, reading, now, timing: this.o.timing });
    t.state = step.state;
    if (step.nudge) this.o.nudge?.(p);
    if (!step.switchTo) return;
    const from = this.chosen.get(name) ?? candidates[0];
    const to = candidates[step.switchTo.index]!;
    if (step.switchTo.index === 0) this.chosen.delete(name);
    else this.chosen.set(name, to);
    this.changed.add(name);
    this.o.onSwitch?.(step.switchTo.reason);
    this.o.log.info(
      `endpoint of Node ${escapeUnsafe(name)}: ${from} → ${to}, ` +
        `candidate ${step.switchTo.index + 1} of ${candidates.length} (why: ${step.switchTo.why})`,
    );
    this.o.onChoice();
  }

  /** Notes the peers that arrive from an endpoint none of their own addresses explains (NAT). */
  private observe(devPeers: readonly PeerStatus[]): void {
    const next = observeArrivals(devPeers, this.o.peers(), this.now());
    if (JSON.stringify(next) === JSON.stringify(this.observedNow)) return;
    this.observedNow = next;
    this.o.onObserved();
  }
}

/** What a reconcile step's endpoint watch is made from, besides what every step's watch takes alike. */
export interface StepWatchOptions extends Pick<
  EndpointWatchOptions,
  'read' | 'log' | 'onChoice' | 'onObserved' | 'reported' | 'onSwitch'
> {
  /** The step: its desired peers are followed, its view knows where Nodes arrive from (asked late: it is made after its watch). */
  step(): { readonly desired: DesiredState | undefined; readonly view: ClusterView };
  /** Its `nudge` sends one datagram to an overlay address through the tunnel (absent: no nudges). */
  nudger: { nudge?(address: string): Promise<void> };
}

/**
 * The endpoint watch of a reconcile step (the daemon's or `connect`'s), unless failover is off
 * (`endpoint_failover = 0`): a quiet peer after `seconds`, the best endpoint tried again after a
 * minute (backing off to half an hour), a quiet live peer nudged at its overlay address.
 */
export function stepEndpointWatch(seconds: number, o: StepWatchOptions): EndpointWatch | undefined {
  if (seconds === 0) return undefined;
  const { step, nudger, ...rest } = o;
  return new EndpointWatch({
    ...rest,
    peers: () => step().desired?.peers ?? [],
    discovered: (name) => step().view.observations.accepted(name),
    timing: { timeoutMs: seconds * 1000, probeAfterMs: 60_000, maxProbeAfterMs: 30 * 60_000 },
    nudge: (peer) => {
      const host = peer.allowedIPs.find((c) => c.endsWith('/32') || c.endsWith('/128'));
      if (host && nudger.nudge)
        nudger
          .nudge(host.slice(0, host.lastIndexOf('/')))
          .catch((err) => o.log.debug(`endpoint watch: nudging ${peer.name}: ${describeError(err)}`));
    },
  });
}
