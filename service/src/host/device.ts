/**
 * The WireGuard device adapter: reads `wg show <if> dump` into an InterfaceStatus and applies
 * peer changes with incremental `wg set` (never `wg syncconf`, which drops packets).
 */
import { type CommandRunner, withSecretFile } from '../exec/runner.js';
import type { PeerChange } from '../mesh/desired/diff.js';
import { canonicalCidrs } from '../mesh/desired/diff.js';
import type { InterfaceStatus, PeerStatus } from '../mesh/observations/device.js';
import { describeError } from '../log/logger.js';

/**
 * The canonical allowed IPs of the last reading, by their text as `wg` printed them: a reading of a
 * device that did not drift canonicalises nothing again (a resync costs what drifted, besides the
 * read itself). Entries the next reading does not meet are dropped.
 */
let canonicalSeen = new Map<string, string[]>();

/** The canonical list of an allowed-ips field of `wg show dump`, reusing the last reading's. */
function allowedIPsOf(text: string, next: Map<string, string[]>): string[] {
  if (text === '(none)') return [];
  const list = canonicalSeen.get(text) ?? next.get(text) ?? canonicalCidrs(text.split(','));
  next.set(text, list);
  return list;
}

/** The eight tab-separated fields of a peer line of `wg show dump`. */
type PeerLine = [string, string, string, string, string, string, string, string];

/** Parses `wg show <if> dump` output (the first line is the interface, the rest are peers). */
export function parseDump(name: string, text: string): InterfaceStatus {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const head = lines[0]?.split('\t');
  // Never quote the output: the first field of the interface line is the private key.
  if (!head || head.length < 4)
    throw new Error(
      `unexpected output of wg show ${name} dump (${lines.length} lines, first line with ${head?.length ?? 0} fields)`,
    );
  const [, publicKey, listenPort, fwmark] = head;
  const seen = new Map<string, string[]>();
  const peers: PeerStatus[] = lines.slice(1).map((line) => {
    const f = line.split('\t');
    if (f.length < 8) throw new Error(`unexpected peer line in wg show ${name} dump (${f.length} fields, expected 8)`);
    const [key, psk, endpoint, allowed, handshake, rx, tx, keepalive] = f as PeerLine;
    return {
      publicKey: key,
      hasPresharedKey: psk !== '(none)',
      endpoint: endpoint === '(none)' ? undefined : endpoint,
      allowedIPs: allowedIPsOf(allowed, seen),
      latestHandshake: Number(handshake) || 0,
      rxBytes: Number(rx) || 0,
      txBytes: Number(tx) || 0,
      persistentKeepalive: keepalive === 'off' ? 0 : Number(keepalive) || 0,
    };
  });
  canonicalSeen = seen;
  return {
    name,
    publicKey: publicKey === '(none)' ? undefined : publicKey,
    listenPort: Number(listenPort) || 0,
    fwmark: fwmark === 'off' ? 0 : Number(fwmark) || 0,
    peers,
  };
}

/** Reads the device; undefined when it does not exist or is not a WireGuard device. */
export async function readDevice(runner: CommandRunner, name: string): Promise<InterfaceStatus | undefined> {
  const res = await runner.run('wg', ['show', name, 'dump'], { allowFailure: true });
  if (res.exitCode !== 0) return undefined;
  return parseDump(name, res.stdout);
}

/** The `wg set` words for one change (without the leading `wg set <if>`). */
export function peerArgs(change: PeerChange): string[] {
  if (change.op === 'remove') return ['peer', change.publicKey, 'remove'];
  const p = change.peer;
  const args = ['peer', p.publicKey];
  if (p.endpoint && (change.op === 'add' || change.setEndpoint)) args.push('endpoint', p.endpoint);
  args.push('persistent-keepalive', p.persistentKeepalive > 0 ? String(p.persistentKeepalive) : 'off');
  args.push('allowed-ips', canonicalCidrs(p.allowedIPs).join(','));
  return args;
}

/** A change `wg set` refused, and why. */
export interface PeerFailure {
  change: PeerChange;
  error: string;
}

/** Applies one change on its own (a preshared key from a private file, never on the command line). */
async function applyOne(runner: CommandRunner, name: string, c: PeerChange): Promise<void> {
  const psk = c.op !== 'remove' ? c.peer.presharedKey : undefined;
  if (psk)
    await withSecretFile(`${psk}\n`, (file) => runner.run('wg', ['set', name, ...peerArgs(c), 'preshared-key', file]));
  else await runner.run('wg', ['set', name, ...peerArgs(c)]);
}

/**
 * Applies peer changes with as few `wg set` calls as possible: one call per {@link WG_SET_BUDGET}
 * of changes without a preshared key, one per change that sets a preshared key. When a batch is
 * refused (`wg` takes a whole command or nothing), each of its changes is applied on its own, so
 * every good one lands; resolves with the ones that failed.
 */
export async function applyPeerChanges(
  runner: CommandRunner,
  name: string,
  changes: readonly PeerChange[],
): Promise<PeerFailure[]> {
  const failures: PeerFailure[] = [];
  const tryOne = async (c: PeerChange): Promise<void> => {
    try {
      await applyOne(runner, name, c);
    } catch (err) {
      failures.push({ change: c, error: describeError(err) });
    }
  };
  const plain = changes.filter((c) => c.op === 'remove' || !c.peer.presharedKey);
  for (const c of changes) if (c.op !== 'remove' && c.peer.presharedKey) await tryOne(c);
  for (const chunk of chunkByBytes(plain, WG_SET_BUDGET)) {
    if (chunk.length === 1) {
      await tryOne(chunk[0]!);
      continue;
    }
    try {
      await runner.run('wg', ['set', name, ...chunk.flatMap(peerArgs)]);
    } catch {
      for (const c of chunk) await tryOne(c);
    }
  }
  return failures;
}

/**
 * The most argument bytes one `wg set` carries. Linux limits a command line to ARG_MAX (2 MiB
 * with the environment) and one argument to 128 KiB: at 10,000 dual-stack peers one command
 * would be over 2 MiB, so changes go out in commands of at most this size.
 */
export const WG_SET_BUDGET = 256 * 1024;

/** Splits changes into runs whose `wg set` arguments stay within `budget` bytes (a change is never split). */
export function chunkByBytes(changes: readonly PeerChange[], budget: number): PeerChange[][] {
  const chunks: PeerChange[][] = [];
  let current: PeerChange[] = [];
  let bytes = 0;
  for (const c of changes) {
    const size = peerArgs(c).reduce((n, a) => n + Buffer.byteLength(a) + 1, 0);
    if (current.length > 0 && bytes + size > budget) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(c);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}
