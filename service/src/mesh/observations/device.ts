/**
 * Observed state (`*Status`): what the WireGuard device and the routing table actually hold,
 * as read by the adapters. Plain data, compared against `Desired*` by the diff functions.
 */

/** One peer as `wg show <if> dump` reports it. */
export interface PeerStatus {
  publicKey: string;
  /** True when a preshared key is set (the key itself is not kept). */
  hasPresharedKey: boolean;
  /** Current endpoint `ip:port`, undefined when none is known. */
  endpoint: string | undefined;
  /** Allowed IPs, normalised and sorted. */
  allowedIPs: string[];
  /** Unix seconds of the latest handshake; 0 = never. */
  latestHandshake: number;
  rxBytes: number;
  txBytes: number;
  /** Seconds; 0 = off. */
  persistentKeepalive: number;
}

/** The WireGuard interface as observed. */
export interface InterfaceStatus {
  name: string;
  /** Public key of the configured private key; undefined when no private key is set. */
  publicKey: string | undefined;
  listenPort: number;
  fwmark: number;
  peers: PeerStatus[];
}

/** A link as `ip -j link/addr` reports it. */
export interface LinkStatus {
  name: string;
  exists: boolean;
  up: boolean;
  mtu: number;
  /** Addresses with prefix length, e.g. `100.64.2.5/10`. */
  addresses: string[];
}

/** One route in the main table. */
export interface RouteStatus {
  dst: string;
  dev: string | undefined;
  /** The next hop (`via`), when the route has one. */
  gateway?: string | undefined;
  /** Routing protocol number or name as `ip -j` prints it. */
  protocol: string;
}

/** How long a handshake counts as fresh (s): WireGuard's REJECT_AFTER_TIME, after which a session is dead. */
export const FRESH_HANDSHAKE_SECONDS = 180;

/** True when a latest handshake (unix seconds; 0 = never) is at most FRESH_HANDSHAKE_SECONDS old at `nowMs`. */
export function isFreshHandshake(latestHandshake: number, nowMs: number): boolean {
  return latestHandshake > 0 && nowMs / 1000 - latestHandshake <= FRESH_HANDSHAKE_SECONDS;
}
