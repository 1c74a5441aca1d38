/**
 * The cluster as the core sees it: the Nodes and external peers read from the API, everyone's NAT
 * observations, and the incremental membership engine for the settings in force (rebuilt from the
 * lists when they change). The daemon, the operator commands and the tests' simulated world all
 * keep the cluster in one of these.
 */
import { ANNOTATION_PUBLIC_KEY } from './annotations.js';
import { MeshEngine, sameNode } from './membership/engine.js';
import type { Membership } from './membership/membership.js';
import { byName } from './membership/order.js';
import { ObservationIndex } from './observations/nat.js';
import type { ExternalPeer, MembershipSettings, MeshNode, SelfIdentity } from './types.js';

/** The settings membership depends on, as one comparable text. */
function membershipKey(s: MembershipSettings): string {
  return JSON.stringify({ ...s, resolved: s.resolved ? [...s.resolved] : undefined });
}

const NONE: ReadonlySet<string> = new Set();

/** The Nodes, external peers and observations of a cluster, and the membership they make. */
export class ClusterView {
  private readonly nodeMap = new Map<string, MeshNode>();
  /** Names of Nodes by the public key they publish ('' for none), kept on every change: no scan of every Node per step. */
  private readonly byKey = new Map<string, Set<string>>();
  /** Where Nodes saw each other arrive from (their discovered-endpoints annotations). */
  readonly observations = new ObservationIndex();
  private peers: ExternalPeer[] | undefined;
  private listed = false;
  private engine: { key: string; engine: MeshEngine } | undefined;

  /**
   * `self`: the viewing node (its own key is the one it claims; absent for an operator's view).
   * `waitForPeers`: the external peers are unknown until a list of them is set (the daemon waits for it).
   */
  constructor(private opts: { self?: SelfIdentity; waitForPeers?: boolean } = {}) {
    if (!opts.waitForPeers) this.peers = [];
  }

  /** A view of complete lists (an operator command's one read). */
  static of(nodes: readonly MeshNode[], peers: readonly ExternalPeer[], self?: SelfIdentity): ClusterView {
    const view = new ClusterView(self ? { self } : {});
    view.setNodes(nodes);
    view.setExternalPeers(peers);
    return view;
  }

  /** True once a complete Node list was set. */
  get nodesListed(): boolean {
    return this.listed;
  }

  /** True once a list of external peers was set (or none is waited for). */
  get externalPeersListed(): boolean {
    return this.peers !== undefined;
  }

  /** The Node by that name, if there is one. */
  node(name: string): MeshNode | undefined {
    return this.nodeMap.get(name);
  }

  /** Every Node by name. */
  get nodes(): ReadonlyMap<string, MeshNode> {
    return this.nodeMap;
  }

  /** Names of the Nodes that publish `publicKey` ('' : those that publish none). */
  namesWithKey(publicKey: string): ReadonlySet<string> {
    return this.byKey.get(publicKey) ?? NONE;
  }

  /** The external peers as last set. */
  get externalPeers(): readonly ExternalPeer[] {
    return this.peers ?? [];
  }

  /** Takes a new complete Node list (a list or re-list); true when something the mesh uses changed. */
  setNodes(nodes: readonly MeshNode[]): boolean {
    let changed = !this.listed;
    this.listed = true;
    const seen = new Set(nodes.map((n) => n.name));
    for (const n of nodes) changed = this.upsertNode(n) || changed;
    for (const name of [...this.nodeMap.keys()]) if (!seen.has(name)) changed = this.removeNode(name) || changed;
    return changed;
  }

  /** Takes one added or changed Node; true when something the mesh uses changed. */
  upsertNode(node: MeshNode): boolean {
    const old = this.nodeMap.get(node.name);
    if (old && sameNode(old, node)) return false;
    if (old) this.unindexKey(old);
    this.nodeMap.set(node.name, node);
    const key = node.annotations[ANNOTATION_PUBLIC_KEY] ?? '';
    let names = this.byKey.get(key);
    if (!names) this.byKey.set(key, (names = new Set()));
    names.add(node.name);
    this.observations.update(node);
    this.engine?.engine.upsertNode(node);
    return true;
  }

  /** Takes one deleted Node; true when there was one by that name. */
  removeNode(name: string): boolean {
    const old = this.nodeMap.get(name);
    if (!old) return false;
    this.nodeMap.delete(name);
    this.unindexKey(old);
    this.observations.remove(name);
    this.engine?.engine.removeNode(name);
    return true;
  }

  private unindexKey(node: MeshNode): void {
    const key = node.annotations[ANNOTATION_PUBLIC_KEY] ?? '';
    const names = this.byKey.get(key);
    names?.delete(node.name);
    if (names?.size === 0) this.byKey.delete(key);
  }

  /** Takes a new complete list of external peers; true when something changed. */
  setExternalPeers(peers: readonly ExternalPeer[]): boolean {
    const text = (list: readonly ExternalPeer[]): string => JSON.stringify([...list].sort(byName));
    if (this.peers !== undefined && text(this.peers) === text(peers)) return false;
    this.peers = [...peers];
    this.engine?.engine.setExternalPeers(this.peers);
    return true;
  }

  /** Takes the viewing node's new identity (a new key): the membership is decided again. */
  setSelf(self: SelfIdentity): void {
    this.opts = { ...this.opts, self };
    this.engine = undefined;
  }

  /** The membership under these settings (the engine is rebuilt from the lists when the settings change). */
  membership(settings: MembershipSettings): Membership {
    const key = membershipKey(settings);
    if (this.engine?.key !== key) {
      const engine = new MeshEngine(settings, this.opts.self);
      engine.setNodes([...this.nodeMap.values()]);
      engine.setExternalPeers(this.peers ?? []);
      this.engine = { key, engine };
    }
    return this.engine.engine.result();
  }
}
