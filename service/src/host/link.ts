/**
 * Link commands: read a link's state (`ip -j addr`), create a WireGuard interface with kernel
 * WireGuard or userspace wireguard-go (implementation = auto tries the kernel first; as root with
 * the package installed, wireguard-go runs through its wrapper as its own user), tell which
 * of them backs a link and, when neither exists, what to install; configure a link from a
 * wg-quick config, set it up, delete it, and find the MTU for `mtu = auto`.
 */
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { type CommandRunner, withSecretFile } from '../exec/runner.js';
import type { Logger } from '../log/logger.js';
import type { LinkStatus } from '../mesh/observations/device.js';
import { normalizeCidr } from '../net/ip.js';
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
    addresses: (info.addr_info ?? [])
      .filter((a) => a.local && a.scope !== 'link')
      .map((a) => `${a.local}/${a.prefixlen}`),
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

/** The subnets on this host's links other than loopback and `exclude` (the WireGuard interface): its on-link underlay. */
export async function onLinkSubnets(runner: CommandRunner, exclude: readonly string[]): Promise<string[]> {
  const out = new Set<string>();
  for (const link of await readAllLinks(runner)) {
    if (link.name === 'lo' || exclude.includes(link.name)) continue;
    for (const a of link.addresses) {
      const c = normalizeCidr(a);
      if (c && !c.startsWith('fe80:')) out.add(c);
    }
  }
  return [...out];
}

/** WireGuard's overhead on an IPv6 underlay (the worst case), as wg-quick assumes. */
export const WIREGUARD_OVERHEAD = 80;

/** The MTU for `mtu = auto`: the MTU of the device holding one of `underlayIps`, minus 80; 1420 when unknown. */
export async function autoMtu(runner: CommandRunner, underlayIps: readonly string[]): Promise<number> {
  const links = await readAllLinks(runner);
  const dev = links.find((l) => l.addresses.some((a) => underlayIps.includes(a.split('/')[0] ?? '')));
  return dev && dev.mtu > WIREGUARD_OVERHEAD + 576 ? dev.mtu - WIREGUARD_OVERHEAD : 1420;
}

/** How an interface was created: by which implementation, and why not by the kernel when auto fell back. */
export interface CreatedLink {
  impl: Implementation;
  /** What `ip link add … type wireguard` said when the kernel could not create the link. */
  kernelError?: string;
}

/** Answers whether wireguard-go is installed (injected by tests; the host's answer is {@link wireguardGoInstalled}). */
export type WireguardGoCheck = () => Promise<boolean>;

/** Where wg-quick and the package's wireguard-go wrapper look for wireguard-go, besides PATH. */
const SYSTEM_BIN_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** Whether an executable `wireguard-go` is on PATH or in the system's bin directories. */
export const wireguardGoInstalled: WireguardGoCheck = async () => {
  const dirs = [
    ...new Set([...(process.env.PATH ?? '').split(':').filter((d) => d.startsWith('/')), ...SYSTEM_BIN_DIRS]),
  ];
  for (const dir of dirs) {
    try {
      await access(join(dir, 'wireguard-go'), constants.X_OK);
      return true;
    } catch {
      // not there
    }
  }
  return false;
};

/** The package's wrapper that runs wireguard-go as its own user, wg-overlay-wg (`wireguard-go [--managed] IF`). */
export const PACKAGED_WIREGUARD_GO = '/usr/lib/wg-overlay/wireguard-go';

/** The command line that starts wireguard-go for an interface (command first). */
export type WireguardGoArgv = (name: string) => Promise<string[]>;

/**
 * How wireguard-go is started (pure): as root with the package's wrapper installed, through the
 * wrapper (wireguard-go then runs as its own user, not root, with a control socket the daemon's
 * group can reach); otherwise wireguard-go itself, as the daemon's own user.
 */
export function wireguardGoCommand(name: string, host: { root: boolean; wrapper: boolean }): string[] {
  return host.root && host.wrapper ? [PACKAGED_WIREGUARD_GO, '--managed', name] : ['wireguard-go', name];
}

/** {@link wireguardGoCommand} on this host. */
export const hostWireguardGoArgv: WireguardGoArgv = async (name) => {
  const wrapper = await access(PACKAGED_WIREGUARD_GO, constants.X_OK).then(
    () => true,
    () => false,
  );
  return wireguardGoCommand(name, { root: process.getuid?.() === 0, wrapper });
};

/** The throwaway link {@link kernelWireGuardError} creates (15 characters, the most a link name may have). */
export const PROBE_LINK = 'wgoverlay-probe';

/**
 * Why the kernel cannot create WireGuard links, from `ip link add … type wireguard` on a throwaway
 * link (which loads the module if it can be loaded, as wg-quick's own attempt does); undefined
 * when it can (the link is deleted again).
 */
export async function kernelWireGuardError(runner: CommandRunner): Promise<string | undefined> {
  const res = await runner.run('ip', ['link', 'add', 'dev', PROBE_LINK, 'type', 'wireguard'], { allowFailure: true });
  if (res.exitCode !== 0) return res.stderr.trim() || `exit ${res.exitCode}`;
  await runner.run('ip', ['link', 'del', 'dev', PROBE_LINK], { allowFailure: true });
  return undefined;
}

/** How to install wireguard-go, in the words of the error messages. */
const INSTALL_WIREGUARD_GO = 'Debian, Ubuntu: apt install wireguard-go; Fedora: dnf install wireguard-go';

/** What an admin must do on a node that has neither kernel WireGuard nor wireguard-go. */
export function noWireGuardMessage(kernelError: string): string {
  return (
    'no WireGuard on this node: the kernel cannot create WireGuard links ' +
    `(ip link add … type wireguard: ${kernelError.replace(/\.$/, '')}; the wireguard module is missing, blacklisted or refused) ` +
    `and wireguard-go is not installed. Install wireguard-go (${INSTALL_WIREGUARD_GO}) ` +
    'or make the wireguard kernel module loadable (Linux 5.6 and later: modprobe wireguard)'
  );
}

/** How {@link createLink} makes the interface. */
export interface CreateLinkOptions {
  /** `auto` tries kernel WireGuard and falls back to wireguard-go. */
  implementation: 'auto' | Implementation;
  /** Takes wireguard-go's banner (at debug). */
  log: Logger;
  /** Whether wireguard-go is installed (default: looked up on this host). */
  hasWireguardGo?: WireguardGoCheck;
  /** How wireguard-go is started (default: {@link hostWireguardGoArgv}). */
  wireguardGoArgv?: WireguardGoArgv;
}

/**
 * Creates the interface `name` as `how` says. The error when neither kernel WireGuard nor
 * wireguard-go exists says what to install.
 */
export async function createLink(runner: CommandRunner, name: string, how: CreateLinkOptions): Promise<CreatedLink> {
  const { implementation, log, hasWireguardGo = wireguardGoInstalled, wireguardGoArgv = hostWireguardGoArgv } = how;
  let kernelError: string | undefined;
  if (implementation !== 'userspace') {
    const res = await runner.run('ip', ['link', 'add', 'dev', name, 'type', 'wireguard'], { allowFailure: true });
    if (res.exitCode === 0) return { impl: 'kernel' };
    kernelError = res.stderr.trim() || `exit ${res.exitCode}`;
    if (implementation === 'kernel')
      throw new Error(
        `creating ${name} with kernel WireGuard: ${kernelError} (set implementation = auto or userspace to use wireguard-go)`,
      );
  }
  // wireguard-go daemonises itself; its banner on stderr goes to debug, not the journal at large.
  const [cmd = 'wireguard-go', ...args] = await wireguardGoArgv(name);
  const res = await runner.run(cmd, args, { allowFailure: true });
  if (res.stderr.trim()) log.debug(`${cmd} ${name}: ${res.stderr.trim()}`);
  if (res.exitCode !== 0) {
    if (!(await hasWireguardGo())) {
      throw new Error(
        kernelError !== undefined
          ? noWireGuardMessage(kernelError)
          : `creating ${name} with wireguard-go (implementation = userspace): wireguard-go is not installed; ` +
              `install it (${INSTALL_WIREGUARD_GO})`,
      );
    }
    throw new Error(
      `creating ${name} with wireguard-go: exit ${res.exitCode}: ${res.stderr.trim().split('\n').pop() ?? ''}`,
    );
  }
  return kernelError !== undefined ? { impl: 'userspace', kernelError } : { impl: 'userspace' };
}

/** Which implementation backs an existing link (`ip -d link`: kind wireguard, or a tun device for wireguard-go); undefined when unknown. */
export async function linkImplementation(runner: CommandRunner, name: string): Promise<Implementation | undefined> {
  const res = await runner.run('ip', ['-j', '-d', 'link', 'show', 'dev', name], { allowFailure: true });
  if (res.exitCode !== 0) return undefined;
  const kind = (JSON.parse(res.stdout.trim() || '[]') as Array<{ linkinfo?: { info_kind?: string } }>)[0]?.linkinfo
    ?.info_kind;
  return kind === 'wireguard' ? 'kernel' : kind === 'tun' ? 'userspace' : undefined;
}

/** Loads a whole wg-quick config into an existing interface: key, port, peers, address, MTU, up. */
export async function configureLink(runner: CommandRunner, name: string, cfg: WgQuickConfig): Promise<void> {
  await withSecretFile(stripWgQuick(cfg), (file) => runner.run('wg', ['setconf', name, file]));
  const current = await readLink(runner, name);
  for (const a of current.addresses) {
    if (!cfg.iface.address.includes(a))
      await runner.run('ip', ['address', 'del', a, 'dev', name], { allowFailure: true });
  }
  for (const a of cfg.iface.address) {
    if (!current.addresses.includes(a)) await runner.run('ip', ['address', 'replace', a, 'dev', name]);
  }
  const mtuArgs = cfg.iface.mtu !== undefined ? ['mtu', String(cfg.iface.mtu)] : [];
  await runner.run('ip', ['link', 'set', 'dev', name, ...mtuArgs, 'up']);
}

/** Makes `want` (or none) the only global IPv6 address of the interface, without touching anything else. */
export async function setIPv6Address(
  runner: CommandRunner,
  name: string,
  want: string | undefined,
  current: readonly string[],
): Promise<void> {
  for (const a of current)
    if (a.includes(':') && a !== want)
      await runner.run('ip', ['-6', 'address', 'del', a, 'dev', name], { allowFailure: true });
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
