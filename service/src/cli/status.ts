/**
 * `wg-overlay status [--json]`: this node at a glance. What the device and routing table hold
 * right now (`wg show <if> dump`, `ip -j addr`, `ip -j route`) next to what the daemon wants and
 * why it leaves anything out (its status file, `<runtime_dir>/status.json`): interface, address,
 * port, and per peer its name, overlay address, endpoint, latest handshake age, rx/tx and whether
 * its routes are present; then every skipped Node or Peer with the reason. Reads only, so it works
 * while the daemon runs. Exit status 1 when the interface is missing.
 */
import { join } from 'node:path';
import { DEFAULT_CONFIG_PATH } from '../config/config.js';
import { ExecaRunner } from '../exec/runner.js';
import { readDevice } from '../host/device.js';
import { FORWARDING_OFF_WARNING, ipForwardingEnabled } from '../host/forwarding.js';
import { readLink } from '../host/link.js';
import { readRoutes } from '../host/routes.js';
import { describeError } from '../log/logger.js';
import type { InterfaceStatus, LinkStatus, RouteStatus } from '../mesh/observations/device.js';
import type { SkipReason, TopologyState } from '../mesh/types.js';
import { normalizeCidr } from '../net/ip.js';
import {
  readLiveSnapshot,
  readStatusFile,
  STATUS_FILE,
  type FailClosedStatus,
  type StatusSnapshot,
  type WatchStatus,
} from '../status/snapshot.js';
import { escapeUnsafe } from '../mesh/text.js';
import { loadCliConfig, operatorCommand } from './cluster.js';
import { formatAge } from './graph.js';
import { pidAlive } from '../util/process.js';

export const STATUS_USAGE = `Usage: wg-overlay status [--json] [--config FILE]

Shows this node's WireGuard interface, its peers (name, overlay address, endpoint, latest
handshake, traffic, routes) and every Node or Peer the daemon leaves out, with the reason.
  --json          machine-readable output
  --config FILE   config file (default ${DEFAULT_CONFIG_PATH})
Exit status: 0, or 1 when the interface is missing.
`;

/** One peer in the status. */
export interface StatusPeer {
  /** `unknown`: on the device but not a current Node or Peer. */
  kind: 'node' | 'peer' | 'unknown';
  name: string;
  publicKey: string;
  overlayAddress: string | null;
  endpoint: string | null;
  /** ISO time of the latest handshake, null = never. */
  latestHandshake: string | null;
  handshakeAgeSeconds: number | null;
  rxBytes: number;
  txBytes: number;
  allowedIPs: string[];
  /** The routes the daemon wants for this peer and whether each is in the routing table. */
  routes: Array<{ dst: string; present: boolean }>;
  routesPresent: boolean;
  /** False when the daemon wants the peer but the device does not have it (yet). */
  onDevice: boolean;
  /** A Node with several endpoints: the candidates, which is in use, and why. */
  failover: { candidates: string[]; index: number; why?: string } | null;
}

/** Everything `status` shows. */
export interface StatusView {
  node: string;
  interface: {
    name: string;
    exists: boolean;
    up: boolean;
    addresses: string[];
    listenPort: number | null;
    publicKey: string | null;
    /** False when the link exists but `wg show` failed (not root, or not WireGuard). */
    readable: boolean;
  };
  daemon: {
    statusFile: string;
    /** A status file was found. */
    found: boolean;
    /** Its writer is still running. */
    running: boolean;
    pid: number | null;
    updatedAt: string | null;
    /** Why the daemon has no desired state yet. */
    waiting: string | null;
    lastApply: { ok: boolean; error: string | null; at: string } | null;
    lastSuccessAt: string | null;
    watch: { nodes: WatchStatus; peers: WatchStatus } | null;
    /** Set when the reconcile run in progress has been going longer than the health threshold. */
    stuck: string | null;
    /** A problem reading the status file. */
    error: string | null;
  };
  peers: StatusPeer[];
  /** With location or cross granularity: this node's location and leader. */
  topology: TopologyState | null;
  /** Routes through a member of this node's location (the private network), and whether each is in place. */
  privateRoutes: Array<{ dst: string; via: string; gateway: string; present: boolean }>;
  skipped: SkipReason[];
  warnings: string[];
  /** The fail-closed rule set the daemon wants, and what it dropped. */
  failClosed: FailClosedStatus | null;
}

/** What the view is built from. */
export interface StatusInput {
  node: string;
  iface: string;
  link: LinkStatus;
  device: InterfaceStatus | undefined;
  routes: RouteStatus[];
  snapshot: StatusSnapshot | undefined;
  snapshotError: string | undefined;
  statusFile: string;
  /** Whether the pid in the snapshot is alive. */
  pidAlive: boolean;
  /** Now, ms since the epoch. */
  now: number;
  /** Whether this host forwards IPv4 (undefined: unknown). */
  ipForwarding?: boolean | undefined;
  /** A reconcile run going longer than this is reported as stuck (ms; the health threshold). */
  stuckAfterMs?: number;
}

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

/** Why the daemon counts as stuck, when its current run has been going longer than the threshold. */
function stuckRun(snap: StatusSnapshot | undefined, i: StatusInput): string | null {
  if (!snap?.busySince || !i.pidAlive || i.stuckAfterMs === undefined) return null;
  const ms = i.now - snap.busySince;
  if (ms <= i.stuckAfterMs) return null;
  return (
    `a reconcile run has been going for ${formatAge(ms / 1000)} (threshold ${formatAge(i.stuckAfterMs / 1000)}): ` +
    'it waits for a command or a D-Bus call that does not answer; journalctl -u wg-overlay says which'
  );
}

/** The peer rows: every wanted peer with what the device says of it, then the device's unknown peers. */
function statusPeers(i: StatusInput): StatusPeer[] {
  const snap = i.snapshot;
  const dev = i.device;
  const present = new Set(i.routes.filter((r) => r.dev === i.iface).map((r) => normalizeCidr(r.dst) ?? r.dst));
  const onDevice = new Map((dev?.peers ?? []).map((p) => [p.publicKey, p]));
  const peers: StatusPeer[] = [];
  const nowS = Math.floor(i.now / 1000);
  const handshake = (t: number | undefined): { latestHandshake: string | null; handshakeAgeSeconds: number | null } =>
    t
      ? { latestHandshake: new Date(t * 1000).toISOString(), handshakeAgeSeconds: Math.max(0, nowS - t) }
      : { latestHandshake: null, handshakeAgeSeconds: null };
  for (const p of snap?.peers ?? []) {
    const d = onDevice.get(p.publicKey);
    const routes = (snap?.routes ?? [])
      .filter((r) => r.via === p.name && r.kind === p.kind)
      .map((r) => ({ dst: r.dst, present: present.has(r.dst) }));
    peers.push({
      kind: p.kind,
      name: p.name,
      publicKey: p.publicKey,
      overlayAddress: p.overlayAddress ?? null,
      endpoint: d?.endpoint ?? p.endpoint ?? null,
      ...handshake(d?.latestHandshake),
      rxBytes: d?.rxBytes ?? 0,
      txBytes: d?.txBytes ?? 0,
      allowedIPs: d?.allowedIPs ?? p.allowedIPs,
      routes,
      routesPresent: routes.every((r) => r.present),
      onDevice: d !== undefined,
      failover: p.failover ?? null,
    });
  }
  const wanted = new Set((snap?.peers ?? []).map((p) => p.publicKey));
  for (const d of dev?.peers ?? []) {
    if (wanted.has(d.publicKey)) continue;
    peers.push({
      kind: 'unknown',
      name: snap ? '(not a current Node or Peer)' : `${d.publicKey.slice(0, 10)}...`,
      publicKey: d.publicKey,
      overlayAddress: null,
      endpoint: d.endpoint ?? null,
      ...handshake(d.latestHandshake),
      rxBytes: d.rxBytes,
      txBytes: d.txBytes,
      allowedIPs: d.allowedIPs,
      routes: [],
      routesPresent: true,
      onDevice: true,
      failover: null,
    });
  }
  return peers;
}

/** The daemon section: what its status file says, and whether it is running or stuck. */
function statusDaemon(i: StatusInput): StatusView['daemon'] {
  const snap = i.snapshot;
  return {
    statusFile: i.statusFile,
    found: snap !== undefined,
    running: snap !== undefined && i.pidAlive,
    pid: snap?.pid ?? null,
    updatedAt: iso(snap?.writtenAt),
    waiting: snap?.waiting ?? null,
    lastApply: snap?.lastApply
      ? { ok: snap.lastApply.ok, error: snap.lastApply.error ?? null, at: iso(snap.lastApply.at)! }
      : null,
    lastSuccessAt: iso(snap?.lastSuccessAt),
    watch: snap?.watch ?? null,
    stuck: stuckRun(snap, i),
    error: i.snapshotError ?? null,
  };
}

/** Builds the status view (pure). */
export function buildStatusView(i: StatusInput): StatusView {
  const snap = i.snapshot;
  const dev = i.device;
  const viaGateway = new Set(
    i.routes.filter((r) => r.gateway).map((r) => `${normalizeCidr(r.dst) ?? r.dst}|${r.gateway}`),
  );
  return {
    node: i.node,
    interface: {
      name: i.iface,
      exists: i.link.exists,
      up: i.link.up,
      addresses: i.link.addresses,
      listenPort: dev?.listenPort ?? null,
      publicKey: dev?.publicKey ?? null,
      readable: dev !== undefined,
    },
    daemon: statusDaemon(i),
    peers: statusPeers(i),
    topology: snap?.topology ?? null,
    privateRoutes: (snap?.routes ?? [])
      .filter((r) => r.gateway)
      .map((r) => ({ dst: r.dst, via: r.via, gateway: r.gateway!, present: viaGateway.has(`${r.dst}|${r.gateway}`) })),
    skipped: snap?.skipped ?? [],
    warnings: [...(i.ipForwarding === false ? [FORWARDING_OFF_WARNING] : []), ...(snap?.warnings ?? [])],
    failClosed: snap?.failClosed ?? null,
  };
}

/** Bytes as `512 B`, `1.2 KiB`, `3.4 MiB`. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

function ago(isoTime: string | null, now: number): string {
  return isoTime === null ? 'never' : `${formatAge((now - Date.parse(isoTime)) / 1000)} ago`;
}

function describeWatch(what: string, w: WatchStatus, now: number): string {
  switch (w.state) {
    case 'up':
      return `${what} up`;
    case 'absent':
      return `${what}: the Peer CRD is not installed`;
    case 'starting':
      return `${what} starting`;
    case 'off':
      return `${what} off`;
    default:
      return `${what} DOWN for ${formatAge((now - w.since) / 1000)}${w.error ? ` (${w.error})` : ''}`;
  }
}

/** Lays out rows as left-aligned columns. */
function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) =>
    r
      .map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!)))
      .join('  ')
      .trimEnd(),
  );
}

/** A JSON replacer that writes out control and bidi characters in every string (they are escaped twice over in JSON). */
export function safeStrings(_key: string, value: unknown): unknown {
  return typeof value === 'string' ? escapeUnsafe(value) : value;
}

/** Who a status is about, in its first lines: a node's daemon (the default), or a host's `wg-overlay connect`. */
export interface StatusSubject {
  /** E.g. "wg-overlay on node-a". */
  title: string;
  /** What runs: "daemon". */
  process: string;
  /** Said when there is no status file. */
  noStatus: string;
  /** Said when the interface is missing. */
  noInterface: string;
}

/** The subject of a node's `wg-overlay status`. */
function nodeSubject(v: StatusView): StatusSubject {
  return {
    title: `wg-overlay on ${v.node}`,
    process: 'daemon',
    noStatus: '(is it running? systemctl status wg-overlay)',
    noInterface: 'it does not exist on this node (not created yet, or deleted; journalctl -u wg-overlay says why)',
  };
}

/** Renders the view for a terminal. */
export function renderStatusText(v: StatusView, now: number, subject: StatusSubject = nodeSubject(v)): string {
  const out: string[] = [];
  out.push(...headerLines(v, now, subject));
  if (v.topology) out.push(...topologyLines(v));
  if (v.failClosed) out.push(...failClosedLines(v.failClosed, now));
  const nodes = v.peers.filter((p) => p.kind === 'node').length;
  const external = v.peers.filter((p) => p.kind === 'peer').length;
  const unknown = v.peers.length - nodes - external;
  out.push(
    '',
    `peers: ${v.peers.length} (${nodes} nodes, ${external} external peers${unknown ? `, ${unknown} unknown` : ''})`,
  );
  if (v.peers.length > 0) {
    const rows = [['NAME', 'KIND', 'OVERLAY ADDRESS', 'ENDPOINT', 'HANDSHAKE', 'RX', 'TX', 'ROUTES']];
    for (const p of v.peers) {
      const missing = p.routes.filter((r) => !r.present).map((r) => r.dst);
      const routes =
        p.routes.length === 0 ? '-' : missing.length === 0 ? `ok (${p.routes.length})` : `MISSING ${missing.join(',')}`;
      rows.push([
        p.name,
        p.kind,
        p.overlayAddress ?? '-',
        `${p.endpoint ?? '(none)'}${p.failover ? ` (${p.failover.index + 1}/${p.failover.candidates.length})` : ''}`,
        p.onDevice
          ? p.handshakeAgeSeconds === null
            ? 'never'
            : `${formatAge(p.handshakeAgeSeconds)} ago`
          : 'NOT ON DEVICE',
        formatBytes(p.rxBytes),
        formatBytes(p.txBytes),
        routes,
      ]);
    }
    out.push(...table(rows).map((l) => `  ${l}`));
  }
  const failing = v.peers.filter((p) => p.failover && p.failover.index > 0);
  if (failing.length > 0) {
    out.push('', 'endpoint failover:');
    for (const p of failing) {
      const f = p.failover!;
      const why = f.why ? `: ${f.why}` : '';
      out.push(`  ${p.name}: candidate ${f.index + 1} of ${f.candidates.length} (${f.candidates.join(', ')})${why}`);
    }
  }
  if (v.skipped.length > 0) {
    out.push('', `skipped: ${v.skipped.length}`);
    for (const s of v.skipped)
      out.push(
        `  ${s.kind === 'peer' ? 'Peer' : 'Node'} ${s.name}${s.whole ? '' : ' (partly)'}: ${s.message} [${s.reason}]`,
      );
  }
  if (v.warnings.length > 0) {
    out.push('', 'warnings:');
    for (const w of v.warnings) out.push(`  ${w}`);
  }
  // Everything shown may hold text from the API: no control or bidi character reaches the terminal.
  return `${out.map(escapeUnsafe).join('\n')}\n`;
}

/** The daemon's and the interface's state, the first lines of `status`. */
function headerLines(v: StatusView, now: number, subject: StatusSubject): string[] {
  const out: string[] = [];
  const d = v.daemon;
  if (!d.found) {
    const why = d.error ? ` (${d.error})` : ` ${subject.noStatus}`;
    out.push(`${subject.title}: no status from the ${subject.process} in ${d.statusFile}${why}`);
  } else {
    const state = d.running
      ? `${subject.process} running (pid ${d.pid})`
      : `${subject.process} NOT running (pid ${d.pid} is gone; status from ${ago(d.updatedAt, now)})`;
    const apply = d.lastApply
      ? d.lastApply.ok
        ? `last run ok ${ago(d.lastApply.at, now)}`
        : `LAST APPLY FAILED ${ago(d.lastApply.at, now)}: ${d.lastApply.error}`
      : 'no run yet';
    out.push(`${subject.title}: ${state}; ${apply}; last full sync ${ago(d.lastSuccessAt, now)}`);
    if (d.watch)
      out.push(`  API: ${describeWatch('nodes', d.watch.nodes, now)}; ${describeWatch('peers', d.watch.peers, now)}`);
    if (d.waiting) out.push(`  waiting: ${d.waiting}`);
    if (d.stuck) out.push(`  STUCK: ${d.stuck}`);
  }
  const i = v.interface;
  if (!i.exists) {
    out.push(`interface ${i.name}: MISSING - ${subject.noInterface}`);
  } else {
    const parts = [i.up ? 'up' : 'DOWN', `address ${i.addresses.join(', ') || '(none)'}`];
    if (i.listenPort !== null) parts.push(`listen port ${i.listenPort}`);
    out.push(`interface ${i.name}: ${parts.join(', ')}`);
    if (i.publicKey) out.push(`  public key ${i.publicKey}`);
    if (!i.readable) out.push('  cannot read the WireGuard device (wg show failed: run as root)');
  }
  return out;
}

/** The fail-closed rule set: what may leave only through the tunnel, the exemptions, the drops. */
function failClosedLines(f: FailClosedStatus, now: number): string[] {
  if (!f.enabled) return ['', `fail closed: off (no nftables table ${f.table})`];
  const by = (reason: string): FailClosedStatus['blocked'] => f.blocked.filter((b) => b.reason === reason);
  const carried = by('carried');
  const dropped = f.dropped ? `; ${f.dropped.total} packets dropped since the table was loaded` : '';
  const out = [
    '',
    `fail closed: on (nftables table ${f.table}): ${f.blocked.length} ranges leave only through ${f.iface} ` +
      `(${carried.length} carried, ${by('kept').length} kept, ${by('pod-network').length} pod networks)${dropped}`,
  ];
  const rows: string[][] = [];
  const listed = carried.length <= 20 ? f.blocked : f.blocked.filter((b) => b.reason !== 'carried');
  for (const b of listed) rows.push([`  ${b.reason}`, b.dst, `${b.owner}: ${b.what}`]);
  if (listed.length < f.blocked.length)
    rows.push(['  carried', `(${carried.length} ranges)`, 'wg-overlay status --json lists them']);
  for (const e of f.exempt) rows.push([`  exempt`, e.dst, e.what]);
  if (rows.length) out.push(...table(rows));
  if (f.hops.length) out.push(`  through members of this location (private network): ${f.hops.join(', ')}`);
  const latest = f.dropped?.latest;
  if (latest)
    out.push(`  latest drops ${ago(new Date(latest.at).toISOString(), now)}: ${latest.ranges.join(', ') || '-'}`);
  return out;
}

/** Where this node stands in a location or cross topology, and its routes over the private network. */
function topologyLines(v: StatusView): string[] {
  const t = v.topology!;
  const role =
    t.granularity === 'cross'
      ? 'tunnels to every node of other locations'
      : t.leads
        ? `this node leads it (${t.why})`
        : `led by ${t.leader} (${t.why}); other locations are reached through it`;
  const out = [`location ${t.location} (granularity ${t.granularity}): ${role}`];
  const locations = t.locations.map((l) => {
    const leader = t.granularity === 'location' ? `, leader ${l.leader}` : '';
    return `${l.name} (${l.members.length} node${l.members.length === 1 ? '' : 's'}${leader})`;
  });
  out.push(`  locations: ${locations.join('; ')}`);
  if (v.privateRoutes.length > 0) {
    const missing = v.privateRoutes.filter((r) => !r.present);
    const state = missing.length
      ? `, MISSING ${missing.map((r) => `${r.dst} via ${r.gateway}`).join(', ')}`
      : ', all in place';
    out.push(`  routes over the private network: ${v.privateRoutes.length}${state}`);
  }
  return out;
}

/** `wg-overlay status`: resolves with the exit status. */
export const statusCommand = operatorCommand(
  { name: 'status', usage: STATUS_USAGE, options: { json: { type: 'boolean' } }, positionals: false } as const,
  async ({ values }, { out, err }) => {
    const config = await loadCliConfig(values.config, err);
    const runner = new ExecaRunner();
    const iface = config.wireguard.interface;
    const link = await readLink(runner, iface);
    const device = link.exists ? await readDevice(runner, iface).catch(() => undefined) : undefined;
    const routes = await readRoutes(runner).catch(() => [] as RouteStatus[]);
    let snapshot: StatusSnapshot | undefined;
    let snapshotError: string | undefined;
    try {
      // The running daemon answers from memory; the file it writes now and then is the fallback.
      snapshot = (await readLiveSnapshot(config.state.runtimeDir)) ?? (await readStatusFile(config.state.runtimeDir));
    } catch (e) {
      snapshotError = describeError(e);
    }
    const now = Date.now();
    const view = buildStatusView({
      node: snapshot?.node ?? config.kubernetes.nodeName,
      iface,
      link,
      device,
      routes,
      snapshot,
      snapshotError,
      statusFile: join(config.state.runtimeDir, STATUS_FILE),
      pidAlive: snapshot ? pidAlive(snapshot.pid) : false,
      now,
      ipForwarding: await ipForwardingEnabled(),
      stuckAfterMs: config.metrics.watchDownThresholdSeconds * 1000,
    });
    out.write(values.json ? `${JSON.stringify(view, safeStrings, 2)}\n` : renderStatusText(view, now));
    return link.exists ? 0 : 1;
  },
);
