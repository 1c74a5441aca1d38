/**
 * Reads whether this host forwards IPv4 packets (`net.ipv4.ip_forward`): without it, pods behind
 * this node are unreachable from other nodes, which the daemon and `status` both warn about.
 */
import { readFile } from 'node:fs/promises';

/** The warning shown when forwarding is off. */
export const FORWARDING_OFF_WARNING =
  'IPv4 forwarding is off (net.ipv4.ip_forward = 0): pods behind this node are unreachable from other nodes; ' +
  'enable it with sysctl -w net.ipv4.ip_forward=1';

/** True when IPv4 forwarding is on; undefined when it cannot be read. */
export async function ipForwardingEnabled(): Promise<boolean | undefined> {
  try {
    return (await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim() === '1';
  } catch {
    return undefined;
  }
}
