/**
 * The daemon's status file (`<runtime_dir>/status.json`): after every reconcile and every change
 * of the API watches the daemon writes what it wants applied and why anything is skipped, so
 * `wg-overlay status` (another process) can show it next to what the device holds right now.
 * It holds public keys only, never a private or preshared key.
 */
import { mkdir } from 'node:fs/promises';
import { get } from 'node:http';
import { join } from 'node:path';
import type { DropReport } from '../daemon/firewall-drops.js';
import type { ReconcileReport } from '../daemon/report.js';
import { FIREWALL_TABLE } from '../host/nft-rules.js';
import type { DesiredFirewall } from '../mesh/desired/firewall.js';
import type { DesiredPeer, DesiredRoute, DesiredState, SkipReason, TopologyState } from '../mesh/types.js';
import { escapeUnsafe } from '../mesh/text.js';
import { hasErrorCode, writeFileAtomic } from '../util/atomic-file.js';
import { readText } from '../util/read-failure.js';

/** Name of the status file inside the runtime directory. */
export const STATUS_FILE = 'status.json';

/** State of one API watch. */
export interface WatchStatus {
  /** `up`, `down`, `absent` (the Peer CRD is not installed), `off` or `starting`. */
  state: 'up' | 'down' | 'absent' | 'off' | 'starting';
  /** When the state began (ms since the epoch). */
  since: number;
  /** The last error, when down. */
  error?: string;
}

/** One peer the daemon wants on the interface (its fields as in the desired state, and what status adds). */
export interface SnapshotPeer extends Pick<
  DesiredPeer,
  'kind' | 'name' | 'publicKey' | 'endpoint' | 'allowedIPs' | 'persistentKeepalive'
> {
  /** A Node's overlay address (undefined for an external Peer). */
  overlayAddress: string | undefined;
  hasPresharedKey: boolean;
  /** A Node with more than one endpoint: its candidates, the one in use, and why it was chosen. */
  failover?: { candidates: string[]; index: number; why?: string } | undefined;
  /** Endpoints other Nodes reported seeing this Node arrive from (NAT), who reported each, and whether it is dialled. */
  reported?: Array<{ endpoint: string; reporters: string[]; accepted: boolean }> | undefined;
}

/** What `status.json` holds. */
export interface StatusSnapshot {
  version: 1;
  node: string;
  pid: number;
  startedAt: number;
  writtenAt: number;
  /** The configured interface name. */
  interface: string;
  /** The wanted interface (undefined until a desired state could be computed). */
  desired: { address: string; listenPort: number; publicKey: string } | undefined;
  /** Why no desired state could be computed yet. */
  waiting: string | undefined;
  peers: SnapshotPeer[];
  routes: Array<{ dst: string; via: string; kind: 'node' | 'peer'; gateway?: string }>;
  /** With location or cross granularity: this node's location, its leader and why. */
  topology?: TopologyState | undefined;
  skipped: SkipReason[];
  warnings: string[];
  lastApply:
    | { ok: boolean; error?: string; configFileError?: string; at: number; durationMs: number; changes: number }
    | undefined;
  lastSuccessAt: number | undefined;
  /** When the reconcile run in progress started (undefined when idle): a long-running one is stuck. */
  busySince?: number | undefined;
  watch: { nodes: WatchStatus; peers: WatchStatus };
  /** The fail-closed rule set this node wants, and what it dropped (absent: no desired state yet). */
  failClosed?: FailClosedStatus | undefined;
}

/** The fail-closed rule set as `status` shows it. */
export interface FailClosedStatus {
  enabled: boolean;
  /** The nftables table (`inet wg_overlay`). */
  table: string;
  iface: string;
  blocked: Array<{ dst: string; reason: string; owner: string; what: string }>;
  hops: string[];
  exempt: Array<{ dst: string; kind: string; what: string }>;
  dropped: DropReport | undefined;
}

/** What a snapshot is built from. */
export interface SnapshotInput {
  node: string;
  iface: string;
  startedAt: number;
  desired: DesiredState | undefined;
  waiting: string | undefined;
  lastReport: ReconcileReport | undefined;
  lastSuccessAt: number | undefined;
  busySince?: number | undefined;
  watch: { nodes: WatchStatus; peers: WatchStatus };
  now: number;
  pid: number;
  /** Endpoint failover of a Node peer, when it has several endpoints. */
  failover?: (name: string) => { candidates: string[]; index: number; why?: string } | undefined;
  /** NAT reports about a Node (the endpoints other Nodes saw it arrive from, by whom). */
  reports?: (name: string) => Array<{ endpoint: string; reporters: string[]; accepted: boolean }>;
  /** What the fail-closed rule set dropped. */
  drops?: () => DropReport;
}

// Snapshot entries by desired peer and route object: a write after one change builds one new entry.
const peerEntries = new WeakMap<DesiredPeer, SnapshotPeer>();
const routeEntries = new WeakMap<DesiredRoute, StatusSnapshot['routes'][number]>();

/** A desired peer as the snapshot shows it (built once per peer object and overlay address). */
function snapshotPeer(p: DesiredPeer, overlayAddress: string | undefined): SnapshotPeer {
  const cached = peerEntries.get(p);
  if (cached && cached.overlayAddress === overlayAddress) return cached;
  const entry: SnapshotPeer = {
    kind: p.kind,
    name: p.name,
    publicKey: p.publicKey,
    endpoint: p.endpoint,
    allowedIPs: [...p.allowedIPs],
    overlayAddress,
    persistentKeepalive: p.persistentKeepalive,
    hasPresharedKey: Boolean(p.presharedKey),
  };
  peerEntries.set(p, entry);
  return entry;
}

/** A desired route as the snapshot shows it (built once per route object). */
function snapshotRoute(r: DesiredRoute): StatusSnapshot['routes'][number] {
  let entry = routeEntries.get(r);
  if (!entry)
    routeEntries.set(
      r,
      (entry = { dst: r.dst, via: r.via, kind: r.kind ?? 'node', ...(r.gateway ? { gateway: r.gateway } : {}) }),
    );
  return entry;
}

/** Builds the snapshot (pure); text that came from outside is escaped here, once. */
export function buildSnapshot(i: SnapshotInput): StatusSnapshot {
  const d = i.desired;
  return {
    version: 1,
    node: i.node,
    pid: i.pid,
    startedAt: i.startedAt,
    writtenAt: i.now,
    interface: i.iface,
    desired: d ? { address: d.iface.address, listenPort: d.iface.listenPort, publicKey: d.iface.publicKey } : undefined,
    waiting: i.waiting === undefined ? undefined : escapeUnsafe(i.waiting),
    peers: (d?.peers ?? []).map((p) => {
      const entry = snapshotPeer(p, p.kind === 'node' ? d?.addresses.get(p.name) : undefined);
      const f = p.kind === 'node' && p.candidates ? i.failover?.(p.name) : undefined;
      const reported = p.kind === 'node' ? i.reports?.(p.name) : undefined;
      return {
        ...entry,
        ...(f ? { failover: { ...f, ...(f.why ? { why: escapeUnsafe(f.why) } : {}) } } : {}),
        ...(reported && reported.length > 0 ? { reported } : {}),
      };
    }),
    routes: (d?.routes ?? []).map(snapshotRoute),
    ...(d?.topology ? { topology: safeTopology(d.topology) } : {}),
    skipped: (d?.skipped ?? []).map((s) => ({ ...s, kind: s.kind ?? 'node', message: escapeUnsafe(s.message) })),
    warnings: (d?.warnings ?? []).map(escapeUnsafe),
    lastApply: i.lastReport
      ? {
          ok: i.lastReport.ok,
          ...(i.lastReport.error ? { error: escapeUnsafe(i.lastReport.error) } : {}),
          ...(i.lastReport.configFileError ? { configFileError: escapeUnsafe(i.lastReport.configFileError) } : {}),
          at: i.lastReport.at,
          durationMs: i.lastReport.durationMs,
          changes: i.lastReport.changes.length,
        }
      : undefined,
    lastSuccessAt: i.lastSuccessAt,
    ...(i.busySince !== undefined ? { busySince: i.busySince } : {}),
    watch: { nodes: safeWatch(i.watch.nodes), peers: safeWatch(i.watch.peers) },
    ...(d?.firewall ? { failClosed: failClosedStatus(d.firewall, i.drops?.()) } : {}),
  };
}

/** The rule set's part of the status, built once per rule set object (an unchanged rule set is the same object). */
const firewallEntries = new WeakMap<DesiredFirewall, Omit<FailClosedStatus, 'dropped'>>();

/** The rule set for the status file (owners are Node and Peer names: validated, escaped all the same). */
function failClosedStatus(fw: DesiredFirewall, dropped: DropReport | undefined): FailClosedStatus {
  let entry = firewallEntries.get(fw);
  if (!entry) firewallEntries.set(fw, (entry = firewallEntry(fw)));
  return {
    ...entry,
    dropped: dropped && {
      ...dropped,
      ...(dropped.latest ? { latest: { ...dropped.latest, ranges: dropped.latest.ranges.map(escapeUnsafe) } } : {}),
    },
  };
}

function firewallEntry(fw: DesiredFirewall): Omit<FailClosedStatus, 'dropped'> {
  return {
    enabled: fw.enabled,
    table: FIREWALL_TABLE,
    iface: fw.iface,
    blocked: fw.blocked.map((b) => ({ ...b, owner: escapeUnsafe(b.owner), what: escapeUnsafe(b.what) })),
    hops: fw.hops,
    exempt: fw.exempt.map((e) => ({ dst: e.dst, kind: e.kind, what: escapeUnsafe(e.what) })),
  };
}

/** Location names come from annotations and labels: made safe to show. */
function safeTopology(t: TopologyState): TopologyState {
  return {
    ...t,
    location: escapeUnsafe(t.location),
    locationId: escapeUnsafe(t.locationId),
    locations: t.locations.map((l) => ({ ...l, id: escapeUnsafe(l.id), name: escapeUnsafe(l.name) })),
  };
}

/** A watch state with its error text (from the API server) made safe to show. */
function safeWatch(w: WatchStatus): WatchStatus {
  return w.error === undefined ? w : { ...w, error: escapeUnsafe(w.error) };
}

/** Writes the snapshot atomically (mode 0644; the directory is created 0755). */
export async function writeStatusFile(runtimeDir: string, snapshot: StatusSnapshot): Promise<void> {
  await mkdir(runtimeDir, { recursive: true, mode: 0o755 });
  // Text from outside (messages, errors) was made safe in buildSnapshot; names, keys and addresses are validated.
  await writeFileAtomic(join(runtimeDir, STATUS_FILE), `${JSON.stringify(snapshot)}\n`, 0o644);
}

/** Reads the snapshot; undefined when there is none; throws when it is unreadable or malformed. */
export async function readStatusFile(runtimeDir: string): Promise<StatusSnapshot | undefined> {
  const path = join(runtimeDir, STATUS_FILE);
  const text = await readText(path, (err) => {
    if (hasErrorCode(err, 'ENOENT')) return undefined;
    throw new Error(`reading ${path}`, { cause: err });
  });
  return text === undefined ? undefined : parseSnapshot(text, path);
}

/** Name of the daemon's status socket inside the runtime directory: it answers with the snapshot from memory. */
export const STATUS_SOCKET = 'status.sock';

/** Parses and checks a snapshot's JSON text (from the socket or the file); `from` names where it came from. */
export function parseSnapshot(text: string, from: string): StatusSnapshot {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new Error(`${from} is not valid JSON`, { cause });
  }
  const s = parsed as Partial<StatusSnapshot> | null;
  if (!s || typeof s !== 'object' || s.version !== 1 || !Array.isArray(s.peers) || !Array.isArray(s.skipped))
    throw new Error(`${from} is not a wg-overlay status file of a known version`);
  return s as StatusSnapshot;
}

/** Asks the running daemon for its snapshot over the status socket; undefined when no daemon answers. */
export async function readLiveSnapshot(runtimeDir: string, timeoutMs = 3_000): Promise<StatusSnapshot | undefined> {
  const socketPath = join(runtimeDir, STATUS_SOCKET);
  const text = await new Promise<string | undefined>((resolve) => {
    const req = get({ socketPath, path: '/', timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(res.statusCode === 200 ? Buffer.concat(chunks).toString('utf8') : undefined));
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
  });
  return text === undefined ? undefined : parseSnapshot(text, socketPath);
}
