/**
 * What `wg-overlay connect --status` (and SIGUSR1 to a running connect) shows: the status file the
 * running connect writes under its runtime directory (`/run/wg-overlay-connect/<interface>/`),
 * next to what the interface, its peers and the routing table hold right now, in the layout of
 * `wg-overlay status`.
 */
import { join } from 'node:path';
import type { CommandRunner } from '../exec/runner.js';
import { readDevice } from '../host/device.js';
import { readLink } from '../host/link.js';
import { readRoutes } from '../host/routes.js';
import { buildStatusView, renderStatusText, safeStrings, type StatusView } from '../cli/status.js';
import { pidAlive } from '../util/process.js';
import { describeError } from '../log/logger.js';
import type { RouteStatus } from '../mesh/observations/device.js';
import { readStatusFile, STATUS_FILE, type StatusSnapshot } from '../status/snapshot.js';
import type { ConnectOptions } from './options.js';

/** The view of a connection, from its snapshot (undefined: none found) and the host. */
async function connectView(
  opts: Pick<ConnectOptions, 'name' | 'iface' | 'runtimeDir'>,
  found: { snapshot: StatusSnapshot | undefined; error?: string | undefined; alive: boolean },
  runner: CommandRunner,
): Promise<StatusView> {
  const link = await readLink(runner, opts.iface);
  const device = link.exists ? await readDevice(runner, opts.iface).catch(() => undefined) : undefined;
  const routes = await readRoutes(runner).catch(() => [] as RouteStatus[]);
  return buildStatusView({
    node: found.snapshot?.node ?? opts.name,
    iface: opts.iface,
    link,
    device,
    routes,
    snapshot: found.snapshot,
    snapshotError: found.error,
    statusFile: join(opts.runtimeDir, STATUS_FILE),
    pidAlive: found.alive,
    now: Date.now(),
  });
}

/** The text of a view, with connect's own first words. */
function render(v: StatusView, iface: string): string {
  return renderStatusText(v, Date.now(), {
    title: `wg-overlay connect as Peer ${v.node}`,
    process: 'connect',
    noStatus: `(is \`wg-overlay connect --interface ${iface}\` running?)`,
    noInterface: 'it does not exist on this host (connect is not running, or was stopped)',
  });
}

/** The summary a running connect prints on SIGUSR1. */
export async function connectStatusText(
  opts: Pick<ConnectOptions, 'name' | 'iface' | 'runtimeDir'>,
  snapshot: StatusSnapshot,
  runner: CommandRunner,
): Promise<string> {
  return render(await connectView(opts, { snapshot, alive: true }, runner), opts.iface);
}

/** `wg-overlay connect --status [--json]`: the connection on `opts.iface`; resolves with the exit status (1: not running). */
export async function connectStatus(
  opts: Pick<ConnectOptions, 'name' | 'iface' | 'runtimeDir'>,
  json: boolean,
  o: { runner: CommandRunner; out: NodeJS.WritableStream },
): Promise<number> {
  let snapshot: StatusSnapshot | undefined;
  let error: string | undefined;
  try {
    snapshot = await readStatusFile(opts.runtimeDir);
  } catch (e) {
    error = describeError(e);
  }
  const alive = snapshot !== undefined && pidAlive(snapshot.pid);
  const view = await connectView(opts, { snapshot, error, alive }, o.runner);
  o.out.write(json ? `${JSON.stringify(view, safeStrings, 2)}\n` : render(view, opts.iface));
  return alive && view.interface.exists ? 0 : 1;
}
