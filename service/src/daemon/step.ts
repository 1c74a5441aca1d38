/**
 * One reconcile step, free of timers: from the latest Nodes, external peers and config it
 * computes this node's desired state, publishes its own annotations, hands the wg-quick file its
 * new contents, and hands the desired interface, peers and routes to the host adapters, logging
 * one line per change with its reason. Scheduling, retries and readiness live in the loop.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Config } from '../config/config.js';
import { membershipSettings, meshSettings, type RuntimeFacts } from '../config/mesh-settings.js';
import type { CommandRunner } from '../exec/runner.js';
import { inStep } from '../host/apply-error.js';
import type { AppliedChange } from '../host/change.js';
import type { InterfaceOwner } from '../host/interface-owner.js';
import { autoMtu } from '../host/link.js';
import type { PeerAdapter } from '../host/peer-adapter.js';
import type { RouteAdapter } from '../host/route-adapter.js';
import type { NodePublisher } from '../kube/node-publisher.js';
import type { Logger } from '../log/logger.js';
import { ANNOTATION_DISCOVERED, OWN_ANNOTATIONS } from '../mesh/annotations.js';
import { DiscoveredIndex } from '../mesh/observations/nat.js';
import { formatIp, parseHostPort, parseIp } from '../net/ip.js';
import { desiredFor, NotReadyError, type TopologyInput } from '../mesh/desired/desired.js';
import { MeshEngine, sameNode } from '../mesh/membership/engine.js';
import type { Membership } from '../mesh/membership/membership.js';
import type { DesiredState, ExternalPeer, MembershipSettings, MeshNode, MeshSettings } from '../mesh/types.js';
import { StateReporter } from '../util/backoff.js';
import { toWgQuickConfig } from '../wireguard/conf.js';
import type { WgQuickFile } from '../wireguard/conf-file.js';

/** This node's identity: its Node name and WireGuard key pair. */
export interface Identity {
  name: string;
  privateKey: string;
  publicKey: string;
}

/** The location leader Leases, as the step sees them. */
export interface Leadership {
  /** Live holders by location id. */
  holders(): ReadonlyMap<string, string>;
  /** Holders whose Lease ran out, by location id. */
  lapsed(): ReadonlyMap<string, string>;
  /** True once the Leases were read (or could not be): until then `holders()` means nothing. */
  known(): boolean;
  /** What this node wants from its location's Lease (undefined: none). */
  want(wish: { location: string; candidates: readonly string[]; leader?: string } | undefined): void;
}

/** Endpoint failover and NAT observations, as the step sees them. */
export interface Endpoints {
  /** The endpoints chosen instead of peers' best ones, and the names whose choice changed. */
  take(): { chosen: ReadonlyMap<string, string>; changed: ReadonlySet<string> };
  /** Peers (by name) this node saw arrive from an endpoint none of their addresses explains. */
  readonly observed: Readonly<Record<string, string>>;
}

/** The parts a step works with. */
export interface StepParts {
  runner: CommandRunner;
  log: Logger;
  identity: Identity;
  publisher: NodePublisher;
  iface: InterfaceOwner;
  peers: PeerAdapter;
  routes: RouteAdapter;
  confFile: WgQuickFile;
  /** The location leader Leases (absent: granularity = location has no Leases, leaders by rank only). */
  leadership?: Leadership | undefined;
  /** Endpoint failover (absent: off). */
  endpoints?: Endpoints | undefined;
}

/** How a step ended (when it did not throw). */
export interface StepOutcome {
  /** True when the full desired state is applied. */
  applied: boolean;
  /** Run again (forced) after `retry.ms`, for `retry.why`: waiting for something outside the daemon. */
  retry?: { ms: number; why: string };
  /** Run again (forced) at once, for this reason: the host must be read. */
  followUp?: string;
}

/** How many changes of one run are logged at info (the first apply at scale makes thousands). */
const CHANGES_LOGGED_PER_RUN = 50;

/** True when two desired states hold the same interface and the very same peer and route objects. */
function sameDesired(a: DesiredState, b: DesiredState): boolean {
  if (!isDeepStrictEqual(a.iface, b.iface)) return false;
  // Derived from `a`: only the delta can differ.
  if (b.peersDelta?.from === a.peers && b.routesDelta?.from === a.routes) {
    return (
      b.peersDelta.added.length +
        b.peersDelta.removed.length +
        b.routesDelta.added.length +
        b.routesDelta.removed.length ===
      0
    );
  }
  const sameRefs = <T>(x: readonly T[], y: readonly T[]): boolean =>
    x === y || (x.length === y.length && x.every((v, i) => v === y[i]));
  return sameRefs(a.peers, b.peers) && sameRefs(a.routes, b.routes);
}

/** The settings membership depends on, as one comparable text. */
function membershipKey(s: MembershipSettings): string {
  return JSON.stringify({ ...s, resolved: s.resolved ? [...s.resolved] : undefined });
}

/** The reconcile step of one node. */
export class MeshStep {
  private readonly nodes = new Map<string, MeshNode>();
  /** Where Nodes saw each other arrive from (their discovered-endpoints annotations). */
  private readonly discovered = new DiscoveredIndex();
  private nodesKnown = false;
  private externalPeers: ExternalPeer[] | undefined;
  private engine: { key: string; engine: MeshEngine } | undefined;
  private mtuCache: { ips: string; mtu: number } | undefined;
  private facts: RuntimeFacts = { resolved: new Map() };
  private lastApplied: DesiredState | undefined;
  private readonly reporter = new StateReporter();
  private loggedSkips = new Set<string>();
  private loggedSkipsOf: unknown;
  private quietChanges = 0;
  private loggedWarnings = '';
  /** The latest desired state (also when applying it failed). */
  desired: DesiredState | undefined;
  /** Why the latest run could not compute a desired state yet (undefined once it could). */
  waiting: string | undefined;
  /** Peers the device refused in the latest run, one sentence each (also in the status file). */
  refusedPeers: string[] = [];

  constructor(
    private readonly parts: StepParts,
    private config: Config,
    waitForPeers: boolean,
  ) {
    if (!waitForPeers) this.externalPeers = [];
  }

  /** Takes a new complete Node list (a list or re-list); true when something the mesh uses changed. */
  setNodes(nodes: readonly MeshNode[]): boolean {
    const first = !this.nodesKnown;
    this.nodesKnown = true;
    const seen = new Set(nodes.map((n) => n.name));
    let changed = first;
    for (const n of nodes) changed = this.upsertNode(n) || changed;
    for (const name of [...this.nodes.keys()]) if (!seen.has(name)) changed = this.removeNode(name) || changed;
    return changed;
  }

  /** Takes one added or changed Node; true when something the mesh uses changed. */
  upsertNode(node: MeshNode): boolean {
    const old = this.nodes.get(node.name);
    if (old && sameNode(old, node)) return false;
    this.nodes.set(node.name, node);
    this.discovered.update(node);
    this.engine?.engine.upsertNode(node);
    return true;
  }

  /** Takes one deleted Node; true when there was one by that name. */
  removeNode(name: string): boolean {
    if (!this.nodes.delete(name)) return false;
    this.discovered.remove(name);
    this.engine?.engine.removeNode(name);
    return true;
  }

  /** Takes a new complete list of external peers; true when something changed. */
  setExternalPeers(peers: readonly ExternalPeer[]): boolean {
    const same =
      this.externalPeers !== undefined &&
      JSON.stringify(keyedByName(this.externalPeers)) === JSON.stringify(keyedByName(peers));
    if (same) return false;
    this.externalPeers = [...peers];
    this.engine?.engine.setExternalPeers(this.externalPeers);
    return true;
  }

  /** Endpoints other Nodes saw Node `name` arrive from (candidates for failover). */
  discoveredFor(name: string): string[] {
    return this.discovered.about(name);
  }

  /** Why the wg-quick file could not be written the last time, if it could not. */
  get configFileError(): string | undefined {
    return this.parts.confFile.error;
  }

  /** Whether a list of external peers was set (or none is waited for). */
  get externalPeersKnown(): boolean {
    return this.externalPeers !== undefined;
  }

  /** Takes what the daemon learnt at run time (the API server's addresses, resolved names). */
  setFacts(facts: RuntimeFacts): void {
    this.facts = { ...this.facts, ...facts };
  }

  /** The external peers as last set. */
  get externalPeerList(): readonly ExternalPeer[] {
    return this.externalPeers ?? [];
  }

  /** Replaces the settings (config reload); the next run re-reads the host. */
  setConfig(config: Config): void {
    this.config = config;
    this.mtuCache = undefined;
  }

  /** The running settings. */
  get settings(): Config {
    return this.config;
  }

  /** One run: `force` re-reads the host even when the desired state did not change. */
  async run(reasons: readonly string[], force: boolean, changes: string[]): Promise<StepOutcome> {
    this.quietChanges = 0;
    try {
      return await this.runLogged(reasons, force, changes);
    } finally {
      if (this.quietChanges > 0)
        this.parts.log.info(`… and ${this.quietChanges} more changes in this run (each logged at debug level)`);
    }
  }

  private async runLogged(reasons: readonly string[], force: boolean, changes: string[]): Promise<StepOutcome> {
    const desired = await this.computeOrWait();
    if (!desired) return { applied: false };
    const { identity, confFile, log } = this.parts;
    const selfNode = this.nodes.get(identity.name)!;
    await this.publish(selfNode, desired, changes);
    await confFile.set(() => toWgQuickConfig(desired, identity.privateKey));
    if (!force && this.lastApplied && sameDesired(this.lastApplied, desired)) return { applied: true };
    log.debug(`reconcile: ${reasons.join(', ') || 'resync'}`);
    if (force) this.invalidate();
    const outcome = await this.apply(desired, changes);
    if (outcome.applied) this.lastApplied = desired;
    return outcome;
  }

  /** The membership engine for these settings (rebuilt from the current lists when they change). */
  private membership(settings: MeshSettings): Membership {
    const key = membershipKey(membershipSettings(settings));
    if (this.engine?.key !== key) {
      const engine = new MeshEngine(membershipSettings(settings), {
        name: this.parts.identity.name,
        publicKey: this.parts.identity.publicKey,
      });
      engine.setNodes([...this.nodes.values()]);
      engine.setExternalPeers(this.externalPeers ?? []);
      this.engine = { key, engine };
    }
    return this.engine.engine.result();
  }

  /** Forgets what the host holds: every adapter reads it on its next set. */
  invalidate(): void {
    this.parts.iface.invalidate();
    this.parts.peers.invalidate();
    this.parts.routes.invalidate();
  }

  /** Hands the desired state to the adapters: interface first, then peers and routes together. */
  private async apply(desired: DesiredState, changes: string[]): Promise<StepOutcome> {
    const { iface, peers, routes, confFile, identity } = this.parts;
    const source = { config: () => toWgQuickConfig(desired, identity.privateKey), writeFile: () => confFile.flush() };
    let restartWhy: string | undefined;
    if (this.config.wireguard.apply === 'restart') {
      const plan = await peers.plan(desired.peers);
      if (plan.length > 0)
        restartWhy = `apply = restart and ${plan.length} peer change(s): ${plan.map((c) => c.reason).join('; ')}`;
    }
    const ifaceResult = await iface.set(desired.iface, source, restartWhy);
    this.record(changes, ifaceResult.changes);
    if (!ifaceResult.ready) return { applied: false, retry: { ms: 2000, why: `looking for ${desired.iface.name}` } };
    if (ifaceResult.recreated) {
      // The device now holds exactly the config's peers, and no routes.
      peers.reset();
      routes.invalidate();
    }
    // A route only ever names the interface, so its order against `wg set` does not matter, and
    // running both at once halves the latency.
    const [peerResult, routeResult] = await Promise.all([
      peers.set(desired.peers, desired.peersDelta),
      routes.set(desired.routes, desired.routesDelta),
    ]);
    this.record(changes, peerResult.changes);
    this.refusedPeers = peerResult.refused.map(
      (r) =>
        `peer ${r.name} could not be applied (${r.error}); the other peers are applied, and it is tried again at the next resync`,
    );
    if (this.reporter.changed('refused', this.refusedPeers.join('\n')))
      for (const line of this.refusedPeers) this.parts.log.warning(line);
    this.record(changes, routeResult.changes);
    return routeResult.clash
      ? { applied: true, followUp: 'a route already existed: checking the routing table' }
      : { applied: true };
  }

  /** The desired state, or undefined (with `waiting` set and logged once) when there is none yet. */
  private async computeOrWait(): Promise<DesiredState | undefined> {
    const { identity, log } = this.parts;
    if (!this.nodesKnown) return this.wait('waiting for the Node list from the API server');
    if (!this.externalPeers) {
      return this.wait('waiting for the Peer list from the API server', (w) => log.info(`${w} before the first apply`));
    }
    const selfNode = this.nodes.get(identity.name);
    if (!selfNode) {
      return this.wait(`Node ${identity.name} does not exist yet`, (w) =>
        log.warning(`${w}; waiting for it (set [kubernetes] node_name if this node is registered under another name)`),
      );
    }
    const mtu = await this.resolveMtu(selfNode);
    try {
      const settings = this.behindNat(selfNode, meshSettings(this.config, mtu, this.facts));
      this.desired = desiredFor(
        identity,
        selfNode,
        this.membership(settings),
        settings,
        this.desired,
        this.topologyInput(),
        this.parts.endpoints?.take(),
      );
      this.addObserved(this.desired);
      this.wantLease(this.desired);
      // A node (re)starting must not lead by rank for a moment while another one holds the Lease.
      if (
        this.desired.topology?.granularity === 'location' &&
        this.parts.leadership &&
        !this.parts.leadership.known()
      ) {
        return this.wait('waiting for the location leader Leases from the API server', (w) =>
          log.info(`${w} before applying`),
        );
      }
    } catch (err) {
      if (err instanceof NotReadyError) return this.wait(err.message, (w) => log.warning(w));
      throw err;
    }
    this.reporter.changed('ready', 'ok');
    this.waiting = undefined;
    this.logSkips(this.desired);
    return this.desired;
  }

  /**
   * Behind NAT (another Node saw this one arrive from an address that is none of its own), a
   * keepalive of 25 s keeps the mapping open when none is configured.
   */
  private behindNat(selfNode: MeshNode, settings: MeshSettings): MeshSettings {
    if (settings.persistentKeepalive > 0) return settings;
    const own = new Set(
      [...selfNode.internalIPs, ...selfNode.externalIPs]
        .map((t) => parseIp(t))
        .filter((ip) => !!ip)
        .map((ip) => formatIp(ip!)),
    );
    const seen = this.discovered
      .about(selfNode.name)
      .map((ep) => parseHostPort(ep)?.host)
      .filter((h): h is string => !!h);
    if (!seen.some((h) => !own.has(formatIp(parseIp(h)!)))) return settings;
    if (this.reporter.changed('nat', seen.join()))
      this.parts.log.info(
        `other nodes see this node arrive from ${seen.join(', ')}, not one of its own addresses (behind NAT): keepalive 25 s towards every peer`,
      );
    return { ...settings, persistentKeepalive: 25 };
  }

  /** Adds this node's NAT observations to what it publishes (bounded, as other nodes read them). */
  private addObserved(desired: DesiredState): void {
    const observed = this.parts.endpoints?.observed ?? {};
    let text = JSON.stringify(observed);
    // Other nodes ignore annotations over 1 KiB: keep the first entries (by name) that fit.
    while (text.length > 1000)
      text = JSON.stringify(
        Object.fromEntries(Object.entries(JSON.parse(text) as Record<string, string>).slice(0, -1)),
      );
    if (text !== '{}') desired.publish[ANNOTATION_DISCOVERED] = text;
  }

  /** What location or cross granularity needs (undefined for a full mesh). */
  private topologyInput(): TopologyInput | undefined {
    const m = this.config.mesh;
    if (m.granularity === 'full') return undefined;
    const lead = this.parts.leadership;
    return {
      settings: {
        granularity: m.granularity,
        locationLabel: m.locationLabel,
        reachable: m.reachable,
        localRoutes: m.localRoutes,
      },
      nodes: this.nodes,
      holders: lead?.holders() ?? new Map(),
      lapsed: lead?.lapsed() ?? new Map(),
    };
  }

  /** Tells the Leases which location this node is in and who should lead it (location granularity only). */
  private wantLease(desired: DesiredState): void {
    const t = desired.topology;
    const mine = t?.granularity === 'location' ? t.locations.find((l) => l.id === t.locationId) : undefined;
    this.parts.leadership?.want(
      mine ? { location: mine.id, candidates: mine.candidates, leader: mine.leader } : undefined,
    );
  }

  private wait(why: string, logOnce?: (why: string) => void): undefined {
    this.waiting = why;
    if (this.reporter.changed('ready', why)) logOnce?.(why);
    return undefined;
  }

  private async resolveMtu(selfNode: MeshNode): Promise<number> {
    const m = this.config.wireguard.mtu;
    if (m !== 'auto') return m;
    const underlay = [...selfNode.internalIPs, ...selfNode.externalIPs];
    const ips = underlay.join(',');
    if (this.mtuCache?.ips === ips) return this.mtuCache.mtu;
    const mtu = await inStep('interface', () => autoMtu(this.parts.runner, underlay));
    this.mtuCache = { ips, mtu };
    return mtu;
  }

  /** Logs each applied change with its reason: the first ones of a run at info, the rest (a start at scale) at debug. */
  private record(changes: string[], applied: readonly AppliedChange[]): void {
    for (const c of applied) {
      changes.push(c.what);
      if (changes.length <= CHANGES_LOGGED_PER_RUN) this.parts.log.info(`${c.what} (why: ${c.why})`);
      else {
        this.quietChanges += 1;
        this.parts.log.debug(`${c.what} (why: ${c.why})`);
      }
    }
  }

  private logSkips(desired: DesiredState): void {
    // The engine hands out the same arrays while nothing in them changed.
    if (this.loggedSkipsOf === desired.skipped && this.loggedWarnings === desired.warnings.join('\n')) return;
    this.loggedSkipsOf = desired.skipped;
    this.loggedWarnings = desired.warnings.join('\n');
    // A Node that has not published its key yet is just joining: info, not a problem.
    const lines = [
      ...desired.skipped.map((s) => ({
        warn: s.reason !== 'no-public-key',
        text: `${s.kind === 'peer' ? 'Peer' : 'Node'} ${s.whole ? 'skipped' : 'partly ignored'}: ${s.name}: ${s.message}`,
      })),
      ...desired.warnings.map((text) => ({ warn: true, text })),
    ];
    // Each refusal is logged once, when it appears, not again whenever another one changes.
    const before = this.loggedSkips;
    this.loggedSkips = new Set(lines.map((l) => l.text));
    let shown = 0;
    let quiet = 0;
    for (const l of lines) {
      if (before.has(l.text)) continue;
      if (shown >= CHANGES_LOGGED_PER_RUN) {
        quiet += 1;
        this.parts.log.debug(l.text);
        continue;
      }
      shown += 1;
      if (l.warn) this.parts.log.warning(l.text);
      else this.parts.log.info(l.text);
    }
    if (quiet > 0)
      this.parts.log.warning(
        `… and ${quiet} more Nodes or Peers left out or partly ignored (\`wg-overlay status\` lists them all)`,
      );
  }

  private async publish(selfNode: MeshNode, desired: DesiredState, changes: string[]): Promise<void> {
    const patch: Record<string, string | null> = {};
    for (const key of OWN_ANNOTATIONS) {
      const want = desired.publish[key];
      const have = selfNode.annotations[key];
      if (want !== undefined && want !== have) patch[key] = want;
      if (want === undefined && have !== undefined) patch[key] = null;
    }
    if (Object.keys(patch).length === 0) return;
    await inStep('publish', () => this.parts.publisher.patchAnnotations(selfNode.name, patch));
    const what = Object.entries(patch)
      .map(([k, v]) => `${k}=${v ?? '(removed)'}`)
      .join(' ');
    this.record(changes, [
      { what: `published on Node ${selfNode.name}: ${what}`, why: "published values differ from this node's" },
    ]);
  }
}

/** A list sorted by name, for comparing two lists whatever their order. */
function keyedByName<T extends { name: string }>(items: readonly T[]): T[] {
  return [...items].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
