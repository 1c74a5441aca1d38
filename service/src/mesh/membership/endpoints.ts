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
import {
  type Family,
  type Ip,
  formatHostPort,
  formatIp,
  hostCidr,
  parseCidr,
  parseHostPort,
  parseIp,
  unmapIPv4,
} from '../../net/ip.js';

/** The addresses of a list that parse (IPv4-mapped IPv6 addresses unmapped), in list order. */
export function addressesOf(list: readonly string[]): Ip[] {
  const out: Ip[] = [];
  for (const text of list) {
    const ip = parseIp(text);
    if (ip) out.push(unmapIPv4(ip));
  }
  return out;
}

/**
 * The one "IPv4 first" rule: the first address of a list of that family (the first IPv4 one, else
 * the first of any family, when `family` is not given); undefined when none parses.
 */
export function firstAddress(list: readonly string[], family?: Family): Ip | undefined {
  const ips = addressesOf(list);
  return family ? ips.find((ip) => ip.family === family) : (ips.find((ip) => ip.family === 4) ?? ips[0]);
}

/** The first address of a list (IPv4 first) as canonical text. */
function preferIPv4(list: readonly string[]): string | undefined {
  const ip = firstAddress(list);
  return ip ? formatIp(ip) : undefined;
}

/** An `ip:port` endpoint in its one canonical form. */
export interface CanonicalEndpoint {
  /** The address, IPv4-mapped IPv6 unmapped. */
  ip: Ip;
  port: number;
  /** `ip:port` or `[ip6]:port`, the address in canonical form (RFC 5952 for IPv6). */
  text: string;
}

/** The canonical form of an `ip:port` endpoint; undefined when it is not one (a name is not an address). */
export function canonicalEndpoint(text: string): CanonicalEndpoint | undefined {
  const hp = parseHostPort(text);
  const parsed = hp ? parseIp(hp.host) : undefined;
  if (!hp || !parsed) return undefined;
  const ip = unmapIPv4(parsed);
  return { ip, port: hp.port, text: formatHostPort(formatIp(ip), hp.port) };
}

/** What reserved range an address lies in (loopback, link-local, …), if any. */
export function reservedAddress(ip: Ip): string | undefined {
  return reservedOverlap(parseCidr(hostCidr(ip))!)?.what;
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
        warning:
          `endpoint = ${setting.host} does not resolve (yet): nothing is published until it does, ` +
          "and other nodes fall back to this Node's InternalIP",
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
  if (!parseHostPort(published)) return { problem: `${what} ${quoted(published)} is not host:port` };
  const ep = canonicalEndpoint(published);
  if (!ep)
    return { problem: `${what} ${quoted(published)} is a name, not an address (Node endpoints must be IP addresses)` };
  const { ip } = ep;
  const reserved = reservedAddress(ip);
  if (reserved) return { problem: `${what} ${quoted(published)} is in ${reserved}` };
  const own = addressesOf([...node.internalIPs, ...node.externalIPs]).some(
    (a) => a.family === ip.family && a.value === ip.value,
  );
  if (mode === 'addresses' && !own) {
    return {
      problem:
        `published endpoint ${quoted(published)} is not one of the Node's own addresses in status.addresses ` +
        '(set [wireguard] published_endpoints = any to believe published endpoints)',
    };
  }
  return { endpoint: ep.text };
}

/**
 * Every endpoint other nodes may dial for a peer Node, best first: the one `peerEndpoint` picks,
 * then the Node's InternalIPs (both families) and ExternalIPs at the listen port (addresses its
 * kubelet reports), without duplicates or reserved addresses. Failover walks this list.
 */
export function peerCandidates(node: MeshNode, first: string, listenPort: number): string[] {
  const out = [first];
  const seen = new Set([canonicalEndpoint(first)?.text ?? first]);
  for (const ip of addressesOf([...node.internalIPs, ...node.externalIPs])) {
    if (reservedAddress(ip)) continue;
    const ep = formatHostPort(formatIp(ip), listenPort);
    if (seen.has(ep)) continue;
    seen.add(ep);
    out.push(ep);
  }
  return out;
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
