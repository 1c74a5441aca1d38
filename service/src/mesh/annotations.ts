/**
 * The Node annotations wg-overlay reads and writes: one prefix, defined only here.
 */

/** Prefix of every annotation wg-overlay owns on a Node. */
export const ANNOTATION_PREFIX = 'wg-overlay.io/';

/** The node's WireGuard public key (base64, 32 bytes). */
export const ANNOTATION_PUBLIC_KEY = `${ANNOTATION_PREFIX}public-key`;

/** The node's overlay address (a single IP inside the overlay CIDR, no prefix length). */
export const ANNOTATION_OVERLAY_ADDRESS = `${ANNOTATION_PREFIX}overlay-address`;

/** Where other nodes should send WireGuard packets for this node (`host:port`). */
export const ANNOTATION_ENDPOINT = `${ANNOTATION_PREFIX}endpoint`;

/** Every annotation key wg-overlay publishes, in a fixed order. */
export const OWN_ANNOTATIONS = [ANNOTATION_PUBLIC_KEY, ANNOTATION_OVERLAY_ADDRESS, ANNOTATION_ENDPOINT] as const;
