/**
 * Endpoints: the `host:port` this node publishes for itself, and the one other nodes dial for a
 * peer Node — its published endpoint when that is an address the rules believe (by default one of
 * the Node's own `status.addresses`, which its kubelet reports), else its InternalIP — each with the
 * reason when a published value is refused or there is none. Kilo's `force-endpoint` (set by an
 * admin) comes first when it is an address.
 */
import { ANNOTATION_ENDPOINT, KILO_FORCE_ENDPOINT } from '../annotations.js';
import { reservedOverlap } from './ranges.js';
import { quoted } from '../text.js';
import type { EndpointSetting, MeshNode, SkipReason } from '../types.js';
import { formatHostPort, formatIp, hostCidr, parseCidr, parseHostPort, parseIp } from '../../net/ip.js';

/** Picks the first address of a list, IPv4 preferred; undefined when none parses. */
function preferIPv4(ips: readonly string[]): string | undefined {
  const valid = ips.filter((s) => parseIp(s));
  return valid.find((s) => parseIp(s)?.family === 4) ?? valid[0];
}

/**
 * The endpoint this node publishes for itself, or a warning saying why it has none. An explicit
 * name is published as its address (other nodes believe only addresses) once `resolved` has it.
 */
export function selfEndpoint(
  node: MeshNode,
  setting: EndpointSetting,
  listenPort: number,
  resolved?: ReadonlyMap<string, string>,
): { endpoint?: string; warning?: string } {
  if (setting.mode === 'explicit') {
    const port = setting.port ?? listenPort;
    if (parseIp(setting.host) || !resolved) return { endpoint: formatHostPort(setting.host, port) };
    const address = resolved.get(setting.host);
    if (address === undefined)
      return {
        warning: `endpoint = ${setting.host} does not resolve (yet): nothing is published until it does, and other nodes fall back to this Node's InternalIP`,
      };
    return { endpoint: formatHostPort(address, port) };
  }
  const list = setting.mode === 'internal' ? node.internalIPs : node.externalIPs;
  const ip = preferIPv4(list);
  if (!ip) {
    const kind = setting.mode === 'internal' ? 'InternalIP' : 'ExternalIP';
    return {
      warning: `endpoint = ${setting.mode} but Node ${node.name} has no ${kind} in status.addresses; other nodes fall back to its InternalIP`,
    };
  }
  return { endpoint: formatHostPort(ip, listenPort) };
}

/**
 * Why a published endpoint is not believed, or undefined when it is (with its canonical form).
 * `what` names the annotation; `mode` = `any` believes every address (Kilo's force-endpoint is).
 */
function refusal(
  node: MeshNode,
  published: string,
  mode: 'addresses' | 'any',
  what = 'published endpoint',
): { problem: string } | { endpoint: string } {
  const hp = parseHostPort(published);
  if (!hp) return { problem: `${what} ${quoted(published)} is not host:port` };
  const ip = parseIp(hp.host);
  if (!ip)
    return { problem: `${what} ${quoted(published)} is a name, not an address (Node endpoints must be IP addresses)` };
  const reserved = reservedOverlap(parseCidr(hostCidr(ip))!);
  if (reserved) return { problem: `${what} ${quoted(published)} is in ${reserved.what}` };
  const own = [...node.internalIPs, ...node.externalIPs]
    .map((s) => parseIp(s))
    .some((a) => a && a.family === ip.family && a.value === ip.value);
  if (mode === 'addresses' && !own) {
    return {
      problem: `published endpoint ${quoted(published)} is not one of the Node's own addresses in status.addresses (set [wireguard] published_endpoints = any to believe published endpoints)`,
    };
  }
  return { endpoint: formatHostPort(formatIp(ip), hp.port) };
}

/**
 * Every endpoint other nodes may dial for a peer Node, best first: the one `peerEndpoint` picks,
 * then the Node's InternalIPs (both families) and ExternalIPs at the listen port (addresses its
 * kubelet reports), without duplicates or reserved addresses. Failover walks this list.
 */
export function peerCandidates(node: MeshNode, first: string, listenPort: number): string[] {
  const out = [first];
  const seen = new Set([canonical(first)]);
  for (const text of [...node.internalIPs, ...node.externalIPs]) {
    const ip = parseIp(text);
    if (!ip || reservedOverlap(parseCidr(hostCidr(ip))!)) continue;
    const ep = formatHostPort(formatIp(ip), listenPort);
    if (seen.has(canonical(ep))) continue;
    seen.add(canonical(ep));
    out.push(ep);
  }
  return out;
}

/** The canonical text of an `ip:port` endpoint (IPv6 compressed), for comparisons. */
function canonical(ep: string): string {
  const hp = parseHostPort(ep);
  const ip = hp ? parseIp(hp.host) : undefined;
  return hp && ip ? formatHostPort(formatIp(ip), hp.port) : ep;
}

/** The endpoint other nodes should dial for a peer Node, or why there is none. */
export function peerEndpoint(
  node: MeshNode,
  listenPort: number,
  mode: 'addresses' | 'any' = 'addresses',
): { endpoint?: string; problem?: SkipReason } {
  let problem: SkipReason | undefined;
  // Kilo's force-endpoint is an admin's word (wg-overlay's own credential cannot write it): any address.
  const forced = node.annotations[KILO_FORCE_ENDPOINT];
  if (forced !== undefined && forced !== '') {
    const verdict = refusal(node, forced, 'any', KILO_FORCE_ENDPOINT);
    if ('endpoint' in verdict) return { endpoint: verdict.endpoint };
    problem = {
      name: node.name,
      reason: parseHostPort(forced) ? 'endpoint-refused' : 'invalid-endpoint',
      message: verdict.problem,
      whole: false,
    };
  }
  const published = node.annotations[ANNOTATION_ENDPOINT];
  if (published !== undefined && published !== '') {
    const verdict = refusal(node, published, mode);
    if ('endpoint' in verdict) return { endpoint: verdict.endpoint, ...(problem ? { problem } : {}) };
    const reason = parseHostPort(published) ? 'endpoint-refused' : 'invalid-endpoint';
    problem = {
      name: node.name,
      reason,
      message: problem ? `${problem.message}; ${verdict.problem}` : verdict.problem,
      whole: false,
    };
  }
  const ip = preferIPv4(node.internalIPs);
  if (ip) {
    if (problem) problem.message += `; using its InternalIP ${formatHostPort(ip, listenPort)}`;
    return { endpoint: formatHostPort(ip, listenPort), ...(problem ? { problem } : {}) };
  }
  return {
    problem: {
      name: node.name,
      reason: problem?.reason ?? 'no-endpoint',
      message: `${problem ? `${problem.message} and it` : 'it'} has no InternalIP to fall back to`,
      whole: true,
    },
  };
}
