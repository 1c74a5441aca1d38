/**
 * The Node annotations wg-overlay reads and writes: one prefix, defined only here.
 */

/** Prefix of every annotation wg-overlay owns on a Node. */
export const ANNOTATION_PREFIX = 'wg-overlay.io/';

/** The node's WireGuard public key (base64, 32 bytes). */
export const ANNOTATION_PUBLIC_KEY = `${ANNOTATION_PREFIX}public-key`;

/** The node's overlay address (a single IP inside the overlay CIDR, no prefix length). */
export const ANNOTATION_OVERLAY_ADDRESS = `${ANNOTATION_PREFIX}overlay-address`;

/** The node's IPv6 overlay address (a single IP inside `[overlay] cidr6`), with a dual-stack overlay. */
export const ANNOTATION_OVERLAY_ADDRESS6 = `${ANNOTATION_PREFIX}overlay-address6`;

/** Where other nodes should send WireGuard packets for this node (`host:port`). */
export const ANNOTATION_ENDPOINT = `${ANNOTATION_PREFIX}endpoint`;

/**
 * Endpoints this node saw other Nodes arrive from that none of their addresses explains (behind
 * NAT), as JSON `{"<node name>": "<ip:port>"}`; other nodes may dial them when nothing else works.
 */
export const ANNOTATION_DISCOVERED = `${ANNOTATION_PREFIX}discovered-endpoints`;

/** The longest annotation value read from another Node (characters); longer ones are dropped as hostile. */
export const MAX_ANNOTATION_LENGTH = 1024;

/** Every annotation key wg-overlay publishes, in a fixed order. */
export const OWN_ANNOTATIONS = [
  ANNOTATION_PUBLIC_KEY,
  ANNOTATION_OVERLAY_ADDRESS,
  ANNOTATION_OVERLAY_ADDRESS6,
  ANNOTATION_ENDPOINT,
  ANNOTATION_DISCOVERED,
] as const;

/** Prefix of Kilo's Node annotations, read (never written) so that Kilo clusters keep their layout. */
export const KILO_PREFIX = 'kilo.squat.ai/';

/** Kilo: the node's logical location (overrides the location label). */
export const KILO_LOCATION = `${KILO_PREFIX}location`;

/** Kilo: this node should lead its location (any value). */
export const KILO_LEADER = `${KILO_PREFIX}leader`;

/** Kilo: the endpoint others must dial for this node (`host:port`), set by an admin. */
export const KILO_FORCE_ENDPOINT = `${KILO_PREFIX}force-endpoint`;

/** Kilo: the persistent keepalive (seconds) this node uses towards its peers. */
export const KILO_PERSISTENT_KEEPALIVE = `${KILO_PREFIX}persistent-keepalive`;

/** Kilo: extra CIDRs (comma-separated) reachable in this node's location, routed to it from other locations. */
export const KILO_ALLOWED_LOCATION_IPS = `${KILO_PREFIX}allowed-location-ips`;

/** The Kilo annotations wg-overlay reads. */
export const KILO_ANNOTATIONS = [
  KILO_LOCATION,
  KILO_LEADER,
  KILO_FORCE_ENDPOINT,
  KILO_PERSISTENT_KEEPALIVE,
  KILO_ALLOWED_LOCATION_IPS,
] as const;

/** The merge patch that makes a Node's own annotations what it should publish (null removes one); undefined when none differs. */
export function ownAnnotationPatch(
  current: Readonly<Record<string, string>>,
  publish: Readonly<Record<string, string>>,
): Record<string, string | null> | undefined {
  const patch: Record<string, string | null> = {};
  for (const key of OWN_ANNOTATIONS) {
    const want = publish[key];
    const have = current[key];
    if (want !== undefined && want !== have) patch[key] = want;
    if (want === undefined && have !== undefined) patch[key] = null;
  }
  return Object.keys(patch).length > 0 ? patch : undefined;
}
