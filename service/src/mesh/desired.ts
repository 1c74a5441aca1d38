/**
 * Desired state: a pure function from this node's identity, all Nodes, all external Peers and
 * the settings to the WireGuard interface, peers and routes this node should have, plus the
 * annotations it should publish and every reason a Node or Peer (or part of one) is left out.
 */
import { ANNOTATION_ENDPOINT, ANNOTATION_OVERLAY_ADDRESS, ANNOTATION_PUBLIC_KEY } from './annotations.js';
import { assignOverlayAddresses, parseOverlayCidr } from './addresses.js';
import { bySeniority } from './order.js';
import { peerContext, planPeers } from './peers.js';
import type { DesiredPeer, DesiredRoute, DesiredState, MeshNode, MeshPeer, SkipReason } from './types.js';
import type { EndpointSetting } from '../config/config.js';
import { type Cidr, cidrsOverlap, compareCidrText, formatCidr, formatHostPort, hostCidr, parseCidr, parseHostPort, parseIp } from '../net/ip.js';
import { isValidKey } from '../wireguard/keys.js';

/** The settings desired state depends on (a subset of the config, with MTU already resolved). */
export interface MeshSettings {
  interfaceName: string;
  listenPort: number;
  /** Resolved MTU, or undefined to leave it to wg-quick. */
  mtu: number | undefined;
  persistentKeepalive: number;
  overlayCidr: string;
  endpoint: EndpointSetting;
}

/** This node's identity. */
export interface SelfIdentity {
  name: string;
  publicKey: string;
}

/** Thrown when this node cannot have a desired state yet (its Node is missing or got no address). */
export class NotReadyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotReadyError';
  }
}

/** Picks the first address of a list, IPv4 preferred; undefined when none parses. */
function preferIPv4(ips: readonly string[]): string | undefined {
  const valid = ips.filter((s) => parseIp(s));
  return valid.find((s) => parseIp(s)?.family === 4) ?? valid[0];
}

/** The endpoint this node publishes for itself, or a warning saying why it has none. */
export function selfEndpoint(node: MeshNode, setting: EndpointSetting, listenPort: number): { endpoint?: string; warning?: string } {
  if (setting.mode === 'explicit') return { endpoint: formatHostPort(setting.host, setting.port ?? listenPort) };
  const list = setting.mode === 'internal' ? node.internalIPs : node.externalIPs;
  const ip = preferIPv4(list);
  if (!ip) {
    const kind = setting.mode === 'internal' ? 'InternalIP' : 'ExternalIP';
    return { warning: `endpoint = ${setting.mode} but Node ${node.name} has no ${kind} in status.addresses; other nodes fall back to its InternalIP` };
  }
  return { endpoint: formatHostPort(ip, listenPort) };
}

/** The endpoint other nodes should dial for a peer Node, or why there is none. */
export function peerEndpoint(node: MeshNode, listenPort: number): { endpoint?: string; problem?: SkipReason } {
  const published = node.annotations[ANNOTATION_ENDPOINT];
  let problem: SkipReason | undefined;
  if (published !== undefined && published !== '') {
    const hp = parseHostPort(published);
    if (hp) return { endpoint: formatHostPort(hp.host, hp.port) };
    problem = { name: node.name, reason: 'invalid-endpoint', message: `published endpoint "${published}" is not host:port`, whole: false };
  }
  const ip = preferIPv4(node.internalIPs);
  if (ip) {
    if (problem) problem.message += `; using its InternalIP ${formatHostPort(ip, listenPort)}`;
    return { endpoint: formatHostPort(ip, listenPort), ...(problem ? { problem } : {}) };
  }
  return {
    problem: {
      name: node.name,
      reason: problem ? 'invalid-endpoint' : 'no-endpoint',
      message: `${problem ? `${problem.message} and it` : 'it'} has no InternalIP to fall back to`,
      whole: true,
    },
  };
}

/**
 * Computes what this node should have applied; throws NotReadyError when it cannot yet.
 * Every valid external Peer becomes a peer with routes for its allowedIPs; invalid ones are skipped.
 */
export function computeDesired(self: SelfIdentity, nodes: readonly MeshNode[], settings: MeshSettings, externalPeers: readonly MeshPeer[] = []): DesiredState {
  const overlay = parseOverlayCidr(settings.overlayCidr);
  const selfNode = nodes.find((n) => n.name === self.name);
  if (!selfNode) throw new NotReadyError(`Node ${self.name} does not exist in the cluster yet`);

  const { addresses, problems } = assignOverlayAddresses(nodes, settings.overlayCidr);
  const skipped: SkipReason[] = [...problems];
  const warnings: string[] = [];
  const selfAddress = addresses.get(self.name);
  if (!selfAddress) {
    const why = problems.find((p) => p.name === self.name && p.whole)?.message ?? 'no overlay address';
    throw new NotReadyError(`Node ${self.name} has no overlay address: ${why}`);
  }

  const ownPodCidrs = selfNode.podCIDRs.map((c) => parseCidr(c)).filter((c): c is Cidr => !!c);
  const claimedCidrs: Array<{ cidr: Cidr; owner: string }> = [];
  const claimedKeys = new Map<string, string>();
  const peers: DesiredPeer[] = [];
  const routes: DesiredRoute[] = [];

  let selfSeen = false;
  for (const node of bySeniority(nodes)) {
    const isSelf = node.name === self.name;
    selfSeen ||= isSelf;
    const key = isSelf ? self.publicKey : node.annotations[ANNOTATION_PUBLIC_KEY];
    const skip = (reason: SkipReason['reason'], message: string): void => {
      skipped.push({ name: node.name, reason, message, whole: true });
    };

    // Keys: seniority decides who keeps a duplicated key.
    if (!isSelf) {
      if (key === undefined || key === '') { skip('no-public-key', 'has not published a WireGuard public key yet'); continue; }
      if (!isValidKey(key)) { skip('invalid-public-key', `published public key "${key.slice(0, 60)}" is not a base64 WireGuard key`); continue; }
      if (key === self.publicKey) {
        skip('own-public-key', `published this node's own public key`);
        if (!selfSeen) warnings.push(`older Node ${node.name} publishes this node's public key (a cloned machine?): rotate one of the keys`);
        continue;
      }
    }
    // Other nodes with this node's key were skipped above, so a holder here is never about self.
    const holder = claimedKeys.get(key!);
    if (holder !== undefined) { skip('duplicate-public-key', `publishes the same public key as older Node ${holder}`); continue; }
    claimedKeys.set(key!, node.name);

    // PodCIDRs: seniority decides overlaps; the overlay and this node's own PodCIDRs are never routed to a peer.
    const cidrs: string[] = [];
    for (const text of node.podCIDRs) {
      const c = parseCidr(text);
      if (!c) { skipped.push({ name: node.name, reason: 'invalid-pod-cidr', message: `PodCIDR "${text}" is not a CIDR; dropped`, whole: false }); continue; }
      const norm = formatCidr(c);
      const dropped = (message: string): void => {
        skipped.push({ name: node.name, reason: 'pod-cidr-conflict', message: `PodCIDR ${norm} ${message}; dropped`, whole: false });
      };
      if (cidrsOverlap(c, overlay)) { dropped(`overlaps the overlay ${formatCidr(overlay)}`); continue; }
      if (!isSelf && ownPodCidrs.some((own) => cidrsOverlap(own, c))) { dropped(`overlaps this node's own PodCIDR`); continue; }
      const older = claimedCidrs.find((k) => cidrsOverlap(k.cidr, c));
      if (older) {
        if (!isSelf) { dropped(`overlaps ${formatCidr(older.cidr)} of older Node ${older.owner}`); continue; }
      } else {
        claimedCidrs.push({ cidr: c, owner: node.name });
      }
      cidrs.push(norm);
    }
    if (isSelf) continue;

    const address = addresses.get(node.name);
    if (!address) { skip('no-overlay-address', 'got no overlay address'); continue; }
    const ep = peerEndpoint(node, settings.listenPort);
    if (ep.problem) skipped.push(ep.problem);
    if (!ep.endpoint) continue;

    const hostRoute = hostCidr(parseIp(address)!);
    peers.push({
      kind: 'node',
      name: node.name,
      publicKey: key!,
      endpoint: ep.endpoint,
      allowedIPs: [hostRoute, ...cidrs].sort(compareCidrText),
      persistentKeepalive: settings.persistentKeepalive,
    });
    for (const dst of cidrs) routes.push({ dst, dev: settings.interfaceName, via: node.name });
  }

  // External Peers: checked against every Node (not just the ones in this node's mesh) so that
  // every node skips the same Peers.
  const peerPlan = planPeers(externalPeers, peerContext(nodes, addresses, self));
  skipped.push(...peerPlan.skipped);
  for (const p of peerPlan.peers) {
    peers.push({
      kind: 'peer',
      name: p.name,
      publicKey: p.publicKey,
      endpoint: p.endpoint,
      allowedIPs: [...p.allowedIPs],
      persistentKeepalive: p.persistentKeepalive,
      ...(p.presharedKey ? { presharedKey: p.presharedKey } : {}),
    });
    for (const dst of p.allowedIPs) routes.push({ dst, dev: settings.interfaceName, via: p.name, kind: 'peer' });
  }

  const publish: Record<string, string> = {
    [ANNOTATION_PUBLIC_KEY]: self.publicKey,
    [ANNOTATION_OVERLAY_ADDRESS]: selfAddress,
  };
  const own = selfEndpoint(selfNode, settings.endpoint, settings.listenPort);
  if (own.endpoint) publish[ANNOTATION_ENDPOINT] = own.endpoint;
  if (own.warning) warnings.push(own.warning);

  peers.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : 0));
  routes.sort((a, b) => compareCidrText(a.dst, b.dst));
  return {
    iface: {
      name: settings.interfaceName,
      address: `${selfAddress}/${overlay.prefix}`,
      listenPort: settings.listenPort,
      mtu: settings.mtu,
      publicKey: self.publicKey,
    },
    peers,
    routes,
    skipped,
    addresses,
    publish,
    warnings,
  };
}
