/**
 * Endpoints: the `host:port` this node publishes for itself, and the one other nodes dial for a
 * peer Node (its published endpoint, else its InternalIP), each with the reason when there is none.
 */
import { ANNOTATION_ENDPOINT } from './annotations.js';
import type { EndpointSetting, MeshNode, SkipReason } from './types.js';
import { formatHostPort, parseHostPort, parseIp } from '../net/ip.js';

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
