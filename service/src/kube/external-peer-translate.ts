/**
 * The external-peer boundary: Kilo's `Peer` custom resource (kilo.squat.ai/v1alpha1,
 * cluster-scoped), where the API serves it, and its translation into the core's plain
 * `ExternalPeer` (fields as found, bounded in length; the core validates them), as
 * `node-translate.ts` does for Nodes.
 */
import type { ExternalPeer } from '../mesh/types.js';

/** API group of the external-peer resource (Kilo's Peer). */
export const EXTERNAL_PEER_GROUP = 'kilo.squat.ai';
/** API version of the external-peer resource. */
export const EXTERNAL_PEER_VERSION = 'v1alpha1';
/** Resource (plural) name of the external-peer resource. */
export const EXTERNAL_PEER_PLURAL = 'peers';
/** The API path of the external-peer collection (cluster-scoped). */
export const EXTERNAL_PEER_API_PATH = `/apis/${EXTERNAL_PEER_GROUP}/${EXTERNAL_PEER_VERSION}/${EXTERNAL_PEER_PLURAL}`;

/** Longest string accepted from an external peer's spec field; longer values are cut (and then fail validation). */
const MAX_FIELD_LENGTH = 1024;

/** An external peer (Kilo's Peer) as it arrives from the API (untrusted JSON). */
export interface ExternalPeerObject {
  metadata?: { name?: string; creationTimestamp?: string | Date };
  spec?: unknown;
}

/** A name as the API server allows for a cluster-scoped object (RFC 1123 subdomain). */
function isObjectName(s: string): boolean {
  return s.length <= 253 && /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(s);
}

/** A field as text (cut to a safe length); numbers and other JSON as their JSON text. */
function asText(v: unknown): string {
  const s = typeof v === 'string' ? v : (JSON.stringify(v) ?? String(v));
  return s.length > MAX_FIELD_LENGTH ? s.slice(0, MAX_FIELD_LENGTH) : s;
}

/** A field as a number: undefined when absent, NaN when not a number. */
function asNumber(v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  return typeof v === 'number' ? v : NaN;
}

/** Translates an external-peer object (Kilo's Peer) into an ExternalPeer; undefined without a usable name. */
export function toExternalPeer(obj: ExternalPeerObject): ExternalPeer | undefined {
  const name = obj.metadata?.name;
  if (typeof name !== 'string' || !isObjectName(name)) return undefined;
  const created = obj.metadata?.creationTimestamp;
  const createdMs = created === undefined ? NaN : new Date(created as unknown as string).getTime();
  const spec = (typeof obj.spec === 'object' && obj.spec !== null ? obj.spec : {}) as Record<string, unknown>;
  const allowed = spec.allowedIPs;
  const ep =
    typeof spec.endpoint === 'object' && spec.endpoint !== null
      ? (spec.endpoint as Record<string, unknown>)
      : undefined;
  const dnsOrIP = typeof ep?.dnsOrIP === 'object' && ep.dnsOrIP !== null ? (ep.dnsOrIP as Record<string, unknown>) : {};
  const optText = (v: unknown): string | undefined => (v === undefined || v === null ? undefined : asText(v));
  return {
    name,
    createdAt: Number.isFinite(createdMs) ? createdMs : Infinity,
    allowedIPs: Array.isArray(allowed)
      ? allowed.slice(0, 1000).map(asText)
      : allowed === undefined || allowed === null
        ? undefined
        : [asText(allowed)],
    publicKey: optText(spec.publicKey),
    presharedKey: optText(spec.presharedKey),
    persistentKeepalive: asNumber(spec.persistentKeepalive),
    endpoint:
      ep === undefined ? undefined : { dns: optText(dnsOrIP.dns), ip: optText(dnsOrIP.ip), port: asNumber(ep.port) },
  };
}
