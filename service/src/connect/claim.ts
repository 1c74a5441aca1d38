/**
 * How `connect` comes to hold its Peer: it takes over a Peer of its name that carries its key
 * (keeping its addresses), refuses one that carries another key or a key another Peer already
 * uses, picks its addresses by the core's rule, has the mesh's own verdict on the claim, and
 * creates or updates the Peer (a create that loses a race reads it again).
 */
import type { Logger } from '../log/logger.js';
import { ANNOTATION_OVERLAY_ADDRESS6 } from '../mesh/annotations.js';
import { choosePeerAddress, peerClaimProblem } from '../mesh/membership/peer-address.js';
import type { ExternalPeer, MembershipSettings, MeshNode } from '../mesh/types.js';
import { type Family, parseCidr } from '../net/ip.js';
import { toExternalPeer } from '../kube/external-peer-translate.js';
import { peerObject, PeerRequestError, type PeerClient, type PeerObject } from '../kube/peer-resource.js';
import { isDeepStrictEqual } from 'node:util';

/** A refusal `connect` cannot get past by itself (a name taken, a claim the mesh refuses). */
export class ConnectError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConnectError';
  }
}

/** What claiming the Peer takes. */
export interface ClaimInput {
  client: PeerClient;
  name: string;
  publicKey: string;
  /** Where the private key is (named in the message about a name taken by another key). */
  keyFile: string;
  keepalive: number;
  /** Every Node and Peer, as listed. */
  nodes: readonly MeshNode[];
  externalPeers: readonly ExternalPeer[];
  settings: MembershipSettings;
  /** Addresses given with `--address`. */
  addresses: readonly string[];
  /** Ranges behind this host (`--advertise-routes`). */
  advertise: readonly string[];
  /** Ranges the chosen addresses must stay out of (the extra ranges, this host's subnets). */
  avoid: readonly string[];
  log: Logger;
}

/** The Peer as claimed. */
export interface Claimed {
  object: PeerObject;
  /** This host's addresses (host CIDRs, IPv4 first). */
  addresses: string[];
  /** True when the Peer was made now (false: taken over). */
  created: boolean;
}

const familyOf = (cidr: string): Family | undefined => parseCidr(cidr)?.family;

/** The families this host needs an address in: IPv4, and IPv6 when the cluster has an IPv6 overlay or IPv6 pods. */
export function familiesNeeded(nodes: readonly MeshNode[], settings: MembershipSettings): Family[] {
  const six =
    !!settings.overlayCidr6 ||
    nodes.some((n) => n.annotations[ANNOTATION_OVERLAY_ADDRESS6] || n.podCIDRs.some((c) => familyOf(c) === 6));
  return six ? [4, 6] : [4];
}

/** Refuses a Peer of this name with another key, and a key some other Peer already uses. */
function checkOwnership(i: ClaimInput, existing: PeerObject | undefined): void {
  const key = existing?.spec.publicKey;
  if (existing && key !== i.publicKey)
    throw new ConnectError(
      `the name ${i.name} is taken: Peer ${i.name} exists with another public key (${String(key)}` +
        `${existing.metadata.creationTimestamp ? `, created ${existing.metadata.creationTimestamp}` : ''}); ` +
        `choose another name with --name, or, if it is this host's and its key file ${i.keyFile} was lost, ` +
        `delete it first: kubectl delete peer ${i.name}`,
    );
  const other = i.externalPeers.find((p) => p.name !== i.name && p.publicKey === i.publicKey);
  if (other)
    throw new ConnectError(
      `this host's public key ${i.publicKey} is already the key of Peer ${other.name}: ` +
        `run with --name ${other.name} to take it over, or delete it (kubectl delete peer ${other.name})`,
    );
}

/** This host's addresses: those given, else the taken-over Peer's, else chosen; one per family needed or given. */
function addressesFor(i: ClaimInput, existing: PeerObject | undefined): string[] {
  const held = ((Array.isArray(existing?.spec.allowedIPs) ? existing.spec.allowedIPs : []) as unknown[])
    .filter((t): t is string => typeof t === 'string')
    .filter((t) => {
      const c = parseCidr(t);
      return !!c && c.prefix === (c.family === 4 ? 32 : 128);
    });
  const out: string[] = [];
  const families = [...new Set([...familiesNeeded(i.nodes, i.settings), ...i.addresses.map((a) => familyOf(a)!)])];
  for (const family of families.sort()) {
    const given = i.addresses.find((a) => familyOf(a) === family) ?? held.find((a) => familyOf(a) === family);
    if (given) {
      out.push(given);
      continue;
    }
    const choice = choosePeerAddress({ ...i, family, avoid: i.avoid });
    if ('problem' in choice) throw new ConnectError(`choosing this host's IPv${family} address: ${choice.problem}`);
    out.push(choice.address);
  }
  return out;
}

/** Creates or takes over the Peer, with the mesh's verdict on it first; throws ConnectError or PeerRequestError. */
export async function claimPeer(i: ClaimInput): Promise<Claimed> {
  for (let attempt = 0; ; attempt += 1) {
    const existing = await i.client.find(i.name);
    checkOwnership(i, existing);
    const addresses = addressesFor(i, existing);
    const spec = {
      allowedIPs: [...addresses, ...i.advertise],
      publicKey: i.publicKey,
      persistentKeepalive: i.keepalive,
    };
    const wanted = peerObject(i.name, spec, existing);
    const asPeer = toExternalPeer({ ...wanted, metadata: { ...wanted.metadata, ...existingTime(existing) } })!;
    const problem = peerClaimProblem({
      nodes: i.nodes,
      externalPeers: i.externalPeers,
      settings: i.settings,
      peer: asPeer,
    });
    if (problem) throw new ConnectError(`every node would leave Peer ${i.name} out: ${problem}`);
    if (existing) {
      const same =
        isDeepStrictEqual(existing.spec, wanted.spec) &&
        isDeepStrictEqual(existing.metadata.labels, wanted.metadata.labels);
      const object = same ? existing : await i.client.replace(wanted);
      i.log.notice(
        `took over Peer ${i.name} (same public key)${same ? '' : `; allowedIPs ${spec.allowedIPs.join(', ')}`}`,
      );
      return { object, addresses, created: false };
    }
    try {
      const object = await i.client.create(wanted);
      i.log.notice(`created Peer ${i.name}: allowedIPs ${spec.allowedIPs.join(', ')}, public key ${i.publicKey}`);
      return { object, addresses, created: true };
    } catch (err) {
      // Created by someone else in the meantime: read it again (once).
      if (!(err instanceof PeerRequestError && err.status === 409) || attempt > 0) throw err;
    }
  }
}

/** The creation time of a Peer that exists (a new one is the youngest claim: none). */
function existingTime(existing: PeerObject | undefined): { creationTimestamp?: string } {
  return existing?.metadata.creationTimestamp ? { creationTimestamp: existing.metadata.creationTimestamp } : {};
}
