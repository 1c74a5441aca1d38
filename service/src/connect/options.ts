/**
 * The options of `wg-overlay connect`, checked and with their defaults resolved: the kubeconfig
 * (`--kubeconfig`, `$KUBECONFIG`, `~/.kube/config`), the Peer's name (the host name), the
 * interface (`wgo0`), the addresses and ranges, the keepalive, the key file and the directories.
 */
import { hostname, homedir } from 'node:os';
import { join } from 'node:path';
import { formatCidr, parseCidr } from '../net/ip.js';

/** Where `connect` keeps its private keys (one per interface, mode 0600). */
export const CONNECT_STATE_DIR = '/var/lib/wg-overlay-connect';
/** Where a running `connect` writes its status file (one directory per interface) for `connect --status`. */
export const CONNECT_RUNTIME_DIR = '/run/wg-overlay-connect';
/** The interface `connect` brings up unless told otherwise. */
export const DEFAULT_CONNECT_INTERFACE = 'wgo0';
/** The keepalive (seconds) `connect` keeps towards the nodes, and asks of them, unless told otherwise. */
export const DEFAULT_CONNECT_KEEPALIVE = 25;

/** A problem with the command line (exit status 2). */
export class ConnectUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConnectUsageError';
  }
}

/** What `connect` was asked to do. */
export interface ConnectOptions {
  kubeconfig: string;
  /** The Peer's name (an RFC 1123 subdomain). */
  name: string;
  iface: string;
  /** This host's addresses given with `--address` (host CIDRs, at most one per family). */
  addresses: string[];
  /** Extra ranges routed into the cluster (`--allowed-ips`). */
  allowedIPs: string[];
  /** Ranges behind this host the cluster routes to it (`--advertise-routes`). */
  advertiseRoutes: string[];
  keepalive: number;
  privateKey: string;
  keep: boolean;
  /** The config file with the cluster's settings, when one was named. */
  config: string | undefined;
  /** Where the status file goes. */
  runtimeDir: string;
}

/** The command line as parsed (parseArgs' values). */
export interface ConnectArgs {
  kubeconfig?: string | undefined;
  name?: string | undefined;
  interface?: string | undefined;
  address?: string[] | undefined;
  'allowed-ips'?: string[] | undefined;
  'advertise-routes'?: string[] | undefined;
  'persistent-keepalive'?: string | undefined;
  'private-key'?: string | undefined;
  keep?: boolean | undefined;
  config?: string | undefined;
}

/** The kubeconfig kubectl would use: `$KUBECONFIG` (its first file), else `~/.kube/config`. */
export function defaultKubeconfig(env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  const first = (env.KUBECONFIG ?? '').split(':').find((p) => p !== '');
  return first ?? join(home, '.kube', 'config');
}

/** True for a name the API server allows for a cluster-scoped object (RFC 1123 subdomain). */
export function isObjectName(s: string): boolean {
  return s.length <= 253 && /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(s);
}

/** The host name as a Peer name: lower case, anything else than letters, digits, `-` and `.` made `-`. */
export function defaultPeerName(host: string = hostname()): string {
  return host
    .toLowerCase()
    .replace(/[^a-z0-9.-]+/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '')
    .slice(0, 253);
}

/** A Linux interface name: 1-15 characters, no `/`, no white space. */
function isInterfaceName(s: string): boolean {
  return /^[A-Za-z0-9_=+.-]{1,15}$/.test(s) && s !== '.' && s !== '..';
}

/** The CIDRs of a list option (comma-separated, repeatable), normalised; a bad one is a usage error. */
export function cidrList(texts: readonly string[] | undefined, option: string): string[] {
  const out: string[] = [];
  for (const t of (texts ?? []).flatMap((x) => x.split(',')).map((x) => x.trim())) {
    if (!t) continue;
    const c = parseCidr(t);
    if (!c || !t.includes('/')) throw new ConnectUsageError(`${option}: "${t}" is not a CIDR (e.g. 10.96.0.0/12)`);
    if (!out.includes(formatCidr(c))) out.push(formatCidr(c));
  }
  return out;
}

/** `--address`: one address per family, as host CIDRs (an address without a length is a host). */
function addressList(texts: readonly string[] | undefined): string[] {
  const out: string[] = [];
  for (const t of (texts ?? []).flatMap((x) => x.split(',')).map((x) => x.trim())) {
    if (!t) continue;
    const c = parseCidr(t.includes('/') ? t : `${t}/${t.includes(':') ? 128 : 32}`);
    if (!c) throw new ConnectUsageError(`--address: "${t}" is not an address (e.g. 10.255.0.7 or 10.255.0.7/32)`);
    if (c.prefix !== (c.family === 4 ? 32 : 128))
      throw new ConnectUsageError(
        `--address ${t}: give this host's one address (e.g. ${formatCidr({ ...c, prefix: c.family === 4 ? 32 : 128 }).split('/')[0]}); ` +
          'ranges behind this host go in --advertise-routes',
      );
    if (out.some((o) => parseCidr(o)!.family === c.family))
      throw new ConnectUsageError(`--address: at most one IPv${c.family} address`);
    out.push(formatCidr(c));
  }
  return out;
}

/** The keepalive of `--persistent-keepalive` (seconds, 0 = off). */
function keepaliveOf(text: string | undefined): number {
  if (text === undefined) return DEFAULT_CONNECT_KEEPALIVE;
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535)
    throw new ConnectUsageError(`--persistent-keepalive ${text}: not a number of seconds in 0-65535`);
  return Number(text);
}

/** The options of a command line, defaults resolved; a ConnectUsageError says what is wrong. */
export function connectOptions(a: ConnectArgs, env: NodeJS.ProcessEnv = process.env): ConnectOptions {
  const name = a.name ?? defaultPeerName();
  if (!isObjectName(name))
    throw new ConnectUsageError(
      `${a.name === undefined ? `the host name gives the Peer name "${name}", which` : `--name ${name}:`} is not a valid ` +
        'object name (lower case letters, digits, "-" and "."; at most 253 characters): give one with --name',
    );
  const iface = a.interface ?? DEFAULT_CONNECT_INTERFACE;
  if (!isInterfaceName(iface))
    throw new ConnectUsageError(`--interface ${iface}: not an interface name (1-15 letters, digits, "_=+.-")`);
  return {
    kubeconfig: a.kubeconfig ?? defaultKubeconfig(env),
    name,
    iface,
    addresses: addressList(a.address),
    allowedIPs: cidrList(a['allowed-ips'], '--allowed-ips'),
    advertiseRoutes: cidrList(a['advertise-routes'], '--advertise-routes'),
    keepalive: keepaliveOf(a['persistent-keepalive']),
    privateKey: a['private-key'] ?? join(CONNECT_STATE_DIR, `${iface}.key`),
    keep: a.keep ?? false,
    config: a.config,
    runtimeDir: join(CONNECT_RUNTIME_DIR, iface),
  };
}
