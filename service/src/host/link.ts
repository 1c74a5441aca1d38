/**
 * Link commands: read a link's state (`ip -j addr`), create a WireGuard interface with kernel
 * WireGuard or userspace wireguard-go (implementation = auto tries the kernel first), configure it
 * from a wg-quick config, set it up, delete it, and find the MTU for `mtu = auto`.
 */
import { type CommandRunner, withSecretFile } from '../exec/runner.js';
import type { Logger } from '../log/logger.js';
import type { LinkStatus } from '../mesh/status.js';
import { type WgQuickConfig, stripWgQuick } from '../wireguard/wgquick.js';

/** Which WireGuard implementation backs an interface. */
export type Implementation = 'kernel' | 'userspace';

interface IpAddrInfo {
  ifname?: string;
  mtu?: number;
  flags?: string[];
  operstate?: string;
  addr_info?: Array<{ local?: string; prefixlen?: number; scope?: string }>;
}

/** Reads a link; `exists: false` when there is none by that name. */
export async function readLink(runner: CommandRunner, name: string): Promise<LinkStatus> {
  const res = await runner.run('ip', ['-j', 'addr', 'show', 'dev', name], { allowFailure: true });
  if (res.exitCode !== 0) return { name, exists: false, up: false, mtu: 0, addresses: [] };
  const info = (JSON.parse(res.stdout.trim() || '[]') as IpAddrInfo[])[0];
  if (!info) return { name, exists: false, up: false, mtu: 0, addresses: [] };
  return {
    name,
    exists: true,
    up: (info.flags ?? []).includes('UP'),
    mtu: info.mtu ?? 0,
    addresses: (info.addr_info ?? []).filter((a) => a.local && a.scope !== 'link').map((a) => `${a.local}/${a.prefixlen}`),
  };
}

/** Lists all links with their addresses (for finding the underlay device and its MTU). */
export async function readAllLinks(runner: CommandRunner): Promise<LinkStatus[]> {
  const res = await runner.run('ip', ['-j', 'addr', 'show']);
  return (JSON.parse(res.stdout.trim() || '[]') as IpAddrInfo[]).map((info) => ({
    name: info.ifname ?? '',
    exists: true,
    up: (info.flags ?? []).includes('UP'),
    mtu: info.mtu ?? 0,
    addresses: (info.addr_info ?? []).filter((a) => a.local).map((a) => `${a.local}/${a.prefixlen}`),
  }));
}

/** WireGuard's overhead on an IPv6 underlay (the worst case), as wg-quick assumes. */
export const WIREGUARD_OVERHEAD = 80;

/** The MTU for `mtu = auto`: the MTU of the device holding one of `underlayIps`, minus 80; 1420 when unknown. */
export async function autoMtu(runner: CommandRunner, underlayIps: readonly string[]): Promise<number> {
  const links = await readAllLinks(runner);
  const dev = links.find((l) => l.addresses.some((a) => underlayIps.includes(a.split('/')[0] ?? '')));
  return dev && dev.mtu > WIREGUARD_OVERHEAD + 576 ? dev.mtu - WIREGUARD_OVERHEAD : 1420;
}

/** Creates the interface; `auto` tries kernel WireGuard and falls back to wireguard-go. */
export async function createLink(runner: CommandRunner, name: string, implementation: 'auto' | Implementation, log: Logger): Promise<Implementation> {
  if (implementation !== 'userspace') {
    const res = await runner.run('ip', ['link', 'add', 'dev', name, 'type', 'wireguard'], { allowFailure: true });
    if (res.exitCode === 0) return 'kernel';
    if (implementation === 'kernel') throw new Error(`creating ${name} with kernel WireGuard: ${res.stderr.trim() || `exit ${res.exitCode}`} (set implementation = auto or userspace to use wireguard-go)`);
    log.info(`kernel WireGuard is not available (${res.stderr.trim() || `exit ${res.exitCode}`}); using userspace wireguard-go`);
  }
  // wireguard-go daemonises itself; its banner on stderr goes to debug, not the journal at large.
  const res = await runner.run('wireguard-go', [name], { allowFailure: true });
  if (res.stderr.trim()) log.debug(`wireguard-go ${name}: ${res.stderr.trim()}`);
  if (res.exitCode !== 0) throw new Error(`creating ${name} with wireguard-go: exit ${res.exitCode}: ${res.stderr.trim().split('\n').pop() ?? ''}`);
  return 'userspace';
}

/** Loads a whole wg-quick config into an existing interface: key, port, peers, address, MTU, up. */
export async function configureLink(runner: CommandRunner, name: string, cfg: WgQuickConfig): Promise<void> {
  await withSecretFile(stripWgQuick(cfg), (file) => runner.run('wg', ['setconf', name, file]));
  const current = await readLink(runner, name);
  for (const a of current.addresses) {
    if (!cfg.iface.address.includes(a)) await runner.run('ip', ['address', 'del', a, 'dev', name], { allowFailure: true });
  }
  for (const a of cfg.iface.address) {
    if (!current.addresses.includes(a)) await runner.run('ip', ['address', 'replace', a, 'dev', name]);
  }
  const mtuArgs = cfg.iface.mtu !== undefined ? ['mtu', String(cfg.iface.mtu)] : [];
  await runner.run('ip', ['link', 'set', 'dev', name, ...mtuArgs, 'up']);
}

/** Makes `want` (or none) the only global IPv6 address of the interface, without touching anything else. */
export async function setIPv6Address(runner: CommandRunner, name: string, want: string | undefined, current: readonly string[]): Promise<void> {
  for (const a of current) if (a.includes(':') && a !== want) await runner.run('ip', ['-6', 'address', 'del', a, 'dev', name], { allowFailure: true });
  if (want && !current.includes(want)) await runner.run('ip', ['-6', 'address', 'replace', want, 'dev', name]);
}

/** Sets the interface up. */
export async function setLinkUp(runner: CommandRunner, name: string): Promise<void> {
  await runner.run('ip', ['link', 'set', 'dev', name, 'up']);
}

/** Deletes the interface (wireguard-go exits by itself when its link goes away). */
export async function deleteLink(runner: CommandRunner, name: string): Promise<void> {
  await runner.run('ip', ['link', 'del', 'dev', name], { allowFailure: true });
}
