/**
 * One node's plan from the cluster view: the membership under its settings, the keepalive of a
 * node seen behind NAT, the desired state (with its NAT observations to publish), and what it
 * wants from its location's leader Lease — everything the reconcile step needs, decided purely.
 */
import { ANNOTATION_DISCOVERED } from '../annotations.js';
import { compareSeniority } from '../membership/order.js';
import type { ClusterView } from '../cluster-view.js';
import { leaderWish, NO_LIVENESS, type LeaderWish, type Liveness } from '../observations/leadership.js';
import { natKeepalive, observationsText } from '../observations/nat.js';
import type { DesiredState, MembershipSettings, MeshNode, MeshSettings, SelfIdentity } from '../types.js';
import { desiredFor, NotReadyError } from './desired.js';
import { firewallFor, type DesiredFirewall } from './firewall.js';
import type { EndpointChoice } from './peer-set.js';
import type { TopologySettings } from './topology.js';

/** What one node's plan is made from. */
export interface NodePlanInput {
  view: ClusterView;
  self: SelfIdentity;
  settings: MeshSettings;
  /** The previous plan's desired state (the next one is derived from it where it can be). */
  previous?: DesiredState | undefined;
  /** With location or cross granularity: the topology settings and who the leader Leases show alive. */
  topology?: { settings: TopologySettings; liveness?: Liveness | undefined } | undefined;
  /** Endpoints failover chose. */
  choice?: EndpointChoice | undefined;
  /** This node's NAT observations (peers seen arriving from endpoints none of their addresses explains). */
  observed?: Readonly<Record<string, string>> | undefined;
  /** The fail-closed rule set found on the host, when there is no previous desired state (after a restart). */
  firewallBefore?: Pick<DesiredFirewall, 'blocked'> | undefined;
}

/** One node's plan. */
export interface NodePlan {
  desired: DesiredState;
  /** Where other nodes see this node arrive from when that is none of its addresses (it keeps a keepalive then). */
  behindNat?: string[] | undefined;
  /** What this node wants from its location's leader Lease (location granularity only). */
  wish?: LeaderWish | undefined;
  /** An older Node that publishes this node's public key (a clone or a squatter): this node must take a new key. */
  keyTakenBy?: string | undefined;
}

/**
 * The older Node that publishes `self`'s public key, if any: the key goes to the senior claimant
 * everywhere, so this node is out of the mesh until it takes a new key (a younger one that copies
 * the key is out itself).
 */
export function keyTakenBy(view: ClusterView, self: SelfIdentity): string | undefined {
  const me = view.node(self.name);
  if (!me) return undefined;
  let older: MeshNode | undefined;
  // Looked up by key (no scan of every Node); the oldest wins, as it would in a scan in name order.
  for (const name of view.namesWithKey(self.publicKey)) {
    const n = view.node(name);
    if (n && name !== self.name && compareSeniority(n, me) < 0 && (!older || compareSeniority(n, older) < 0)) older = n;
  }
  return older?.name;
}

/** The part of the mesh settings membership decides by (the same on every node of a cluster). */
export function membershipSettings(s: MeshSettings): MembershipSettings {
  return {
    overlayCidr: s.overlayCidr,
    listenPort: s.listenPort,
    ...(s.overlayCidr6 ? { overlayCidr6: s.overlayCidr6 } : {}),
    ...(s.podCidrs ? { podCidrs: s.podCidrs } : {}),
    ...(s.minPrefix ? { minPrefix: s.minPrefix } : {}),
    ...(s.externalRanges ? { externalRanges: s.externalRanges } : {}),
    ...(s.protectedRanges ? { protectedRanges: s.protectedRanges } : {}),
    ...(s.claimLocationRanges ? { claimLocationRanges: true } : {}),
    ...(s.kiloAnnotations === false ? { kiloAnnotations: false } : {}),
    ...(s.publishedEndpoints ? { publishedEndpoints: s.publishedEndpoints } : {}),
    ...(s.resolved ? { resolved: s.resolved } : {}),
  };
}

/** The plan of node `self`; throws NotReadyError while it cannot have one (its Node missing, no address). */
export function planNode(i: NodePlanInput): NodePlan {
  const selfNode = i.view.node(i.self.name);
  if (!selfNode) throw new NotReadyError(`Node ${i.self.name} does not exist yet`);
  const nat = natKeepalive(selfNode, i.view.observations.reported(i.self.name), i.settings.persistentKeepalive);
  const settings =
    nat.keepalive === i.settings.persistentKeepalive
      ? i.settings
      : { ...i.settings, persistentKeepalive: nat.keepalive };
  const liveness = i.topology?.liveness ?? NO_LIVENESS;
  const desired = desiredFor({
    self: i.self,
    selfNode,
    membership: i.view.membership(membershipSettings(settings)),
    settings,
    previous: i.previous,
    topology: i.topology ? { settings: i.topology.settings, nodes: i.view.nodes, liveness } : undefined,
    choice: i.choice,
  });
  const firewall = firewallFor({
    desired,
    nodes: i.view.nodes,
    self: selfNode,
    settings: {
      enabled: settings.failClosed !== undefined,
      iface: settings.interfaceName,
      overlayCidr: settings.overlayCidr,
      overlayCidr6: settings.overlayCidr6,
      podNetworks: settings.failClosed?.podNetworks,
      apiAddresses: settings.localGuard?.apiAddresses ?? [],
      localRoutes: i.topology?.settings.localRoutes ?? true,
    },
    previous: i.previous?.firewall ?? i.firewallBefore,
    keyless: i.view.namesWithKey(''),
  });
  // The same rule set as before is the same object: the step and the adapter see at once that nothing changed.
  desired.firewall = firewall;
  const text = observationsText(i.observed ?? {});
  if (text) desired.publish[ANNOTATION_DISCOVERED] = text;
  return {
    desired,
    behindNat: nat.behindNat,
    wish: leaderWish(desired.topology, liveness),
    keyTakenBy: keyTakenBy(i.view, i.self),
  };
}
