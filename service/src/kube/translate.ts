/**
 * The Kubernetes boundary: turns client-node's `V1Node` into the core's plain `MeshNode`,
 * keeping only what the mesh needs (and only wg-overlay's own annotations), and Kilo's `Peer`
 * custom resource into a plain `MeshPeer` (fields as found; the core validates them).
 */
import type { V1Node } from '@kubernetes/client-node';
import { ANNOTATION_PREFIX } from '../mesh/annotations.js';
import type { MeshNode, MeshPeer } from '../mesh/types.js';

/** Longest annotation value accepted from another Node; longer values are dropped as hostile. */
const MAX_ANNOTATION_LENGTH = 1024;

/** Translates a `V1Node` (or the same JSON shape) into a MeshNode; undefined without a name. */
export function toMeshNode(node: V1Node): MeshNode | undefined {
  const name = node.metadata?.name;
  if (!name) return undefined;
  const created = node.metadata?.creationTimestamp;
  const createdMs = created === undefined ? NaN : new Date(created as unknown as string).getTime();
  const addresses = Array.isArray(node.status?.addresses) ? node.status!.addresses : [];
  const pick = (type: string): string[] =>
    addresses.filter((a) => a?.type === type && typeof a.address === 'string').map((a) => a.address.trim());
  const specList = node.spec?.podCIDRs;
  const podCIDRs = Array.isArray(specList) && specList.length > 0
    ? specList.filter((c): c is string => typeof c === 'string')
    : typeof node.spec?.podCIDR === 'string' && node.spec.podCIDR !== '' ? [node.spec.podCIDR] : [];
  const annotations: Record<string, string> = {};
  for (const [k, v] of Object.entries(node.metadata?.annotations ?? {})) {
    if (k.startsWith(ANNOTATION_PREFIX) && typeof v === 'string' && v.length <= MAX_ANNOTATION_LENGTH) annotations[k] = v.trim();
  }
  return {
    name,
    createdAt: Number.isFinite(createdMs) ? createdMs : Infinity,
    internalIPs: pick('InternalIP'),
    externalIPs: pick('ExternalIP'),
    podCIDRs,
    annotations,
  };
}

/** Longest string accepted from a Peer's spec field; longer values are cut (and then fail validation). */
const MAX_PEER_FIELD_LENGTH = 1024;

/** Kilo's Peer as it arrives from the API (untrusted JSON). */
export interface PeerObject {
  metadata?: { name?: string; creationTimestamp?: string | Date };
  spec?: unknown;
}

/** A name as the API server allows for a cluster-scoped object (RFC 1123 subdomain). */
function isObjectName(s: string): boolean {
  return s.length <= 253 && /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(s);
}

/** A field as text (cut to a safe length); numbers and other JSON as their JSON text. */
function asText(v: unknown): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v) ?? String(v);
  return s.length > MAX_PEER_FIELD_LENGTH ? s.slice(0, MAX_PEER_FIELD_LENGTH) : s;
}

/** A field as a number: undefined when absent, NaN when not a number. */
function asNumber(v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  return typeof v === 'number' ? v : NaN;
}

/** Translates a Peer object into a MeshPeer; undefined without a usable name. */
export function toMeshPeer(obj: PeerObject): MeshPeer | undefined {
  const name = obj.metadata?.name;
  if (typeof name !== 'string' || !isObjectName(name)) return undefined;
  const created = obj.metadata?.creationTimestamp;
  const createdMs = created === undefined ? NaN : new Date(created as unknown as string).getTime();
  const spec = (typeof obj.spec === 'object' && obj.spec !== null ? obj.spec : {}) as Record<string, unknown>;
  const allowed = spec.allowedIPs;
  const ep = typeof spec.endpoint === 'object' && spec.endpoint !== null ? spec.endpoint as Record<string, unknown> : undefined;
  const dnsOrIP = typeof ep?.dnsOrIP === 'object' && ep.dnsOrIP !== null ? ep.dnsOrIP as Record<string, unknown> : {};
  const optText = (v: unknown): string | undefined => (v === undefined || v === null ? undefined : asText(v));
  return {
    name,
    createdAt: Number.isFinite(createdMs) ? createdMs : Infinity,
    allowedIPs: Array.isArray(allowed) ? allowed.slice(0, 1000).map(asText) : allowed === undefined || allowed === null ? undefined : [asText(allowed)],
    publicKey: optText(spec.publicKey),
    presharedKey: optText(spec.presharedKey),
    persistentKeepalive: asNumber(spec.persistentKeepalive),
    endpoint: ep === undefined ? undefined : { dns: optText(dnsOrIP.dns), ip: optText(dnsOrIP.ip), port: asNumber(ep.port) },
  };
}
