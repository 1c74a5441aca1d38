/**
 * `wg-overlay connect`: this host (a workstation, a CI runner, another site's gateway) joins the
 * mesh as Kilo's external `Peer` in one command, until SIGINT or SIGTERM, or shows a running
 * connection with `--status`.
 */
import { lookup } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import { ExecaRunner } from '../exec/runner.js';
import { hostRunners } from '../exec/shell-runner.js';
import { EXIT_FAILURE, EXIT_USAGE } from '../exit-status.js';
import { IpBatch } from '../host/ip-batch.js';
import { monitorInterface } from '../host/monitor.js';
import { nudge } from '../host/nudge.js';
import { PeerRequestError } from '../kube/peer-resource.js';
import { createLogger } from '../log/logger.js';
import { ConnectError } from '../connect/claim.js';
import {
  CONNECT_RUNTIME_DIR,
  CONNECT_STATE_DIR,
  connectOptions,
  ConnectUsageError,
  DEFAULT_CONNECT_INTERFACE,
  DEFAULT_CONNECT_KEEPALIVE,
  type ConnectOptions,
} from '../connect/options.js';
import { ConnectFailure, prepareConnect, type ConnectEnv } from '../connect/prepare.js';
import { ConnectSession } from '../connect/session.js';
import { connectStatus } from '../connect/status.js';
import { CliError, runCommand } from './cluster.js';

export const CONNECT_USAGE = `Usage: wg-overlay connect [--kubeconfig FILE] [--name NAME] [--interface NAME] [--address CIDR]
                          [--allowed-ips CIDR,...] [--advertise-routes CIDR,...]
                          [--persistent-keepalive SECONDS] [--private-key FILE] [--keep] [--config FILE]
       wg-overlay connect --status [--json] [--interface NAME]

Joins the mesh from a host that is not a Node (run as root): creates the Kilo Peer NAME with this
host's key and address, brings up a WireGuard interface with a peer per node (per location leader
with granularity = location) and routes to every node's pods and overlay addresses, follows the
cluster live, and on SIGINT or SIGTERM removes the Peer, the interface and its routes.
  --kubeconfig FILE          kubeconfig allowed what connect-rbac.yaml grants (default $KUBECONFIG, ~/.kube/config)
  --name NAME                the Peer's name (default: the host name)
  --interface NAME           the WireGuard interface (default ${DEFAULT_CONNECT_INTERFACE})
  --address CIDR             this host's address, one per family (default: a free one, the same each time)
  --allowed-ips L            more ranges to route into the cluster (e.g. the service CIDR)
  --advertise-routes L       ranges behind this host (a site's LAN) the cluster routes to it
  --persistent-keepalive S   keepalive towards the nodes and from them (default ${DEFAULT_CONNECT_KEEPALIVE}; 0: off)
  --private-key FILE         this host's key, created 0600 if missing (default ${CONNECT_STATE_DIR}/IFACE.key)
  --keep                     on exit, leave the Peer, the interface and its routes in place
  --config FILE              the cluster's settings (default /etc/wg-overlay/wg-overlay.conf if present)
  --status                   show the running connection (${CONNECT_RUNTIME_DIR}/IFACE/status.json and the
                             interface); SIGUSR1 makes a running connect print the same
  --json                     with --status: machine-readable
`;

/** `connect`'s command line: its own options besides `--config` and `--help`. */
const CONNECT_COMMAND = {
  name: 'connect',
  usage: CONNECT_USAGE,
  options: {
    kubeconfig: { type: 'string' },
    name: { type: 'string' },
    interface: { type: 'string' },
    address: { type: 'string', multiple: true },
    'allowed-ips': { type: 'string', multiple: true },
    'advertise-routes': { type: 'string', multiple: true },
    'persistent-keepalive': { type: 'string' },
    'private-key': { type: 'string' },
    keep: { type: 'boolean' },
    status: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  positionals: false,
} as const;

/** CAP_NET_ADMIN's bit in /proc/self/status's CapEff. */
const CAP_NET_ADMIN = 12n;

/** True when this process may change the network (root, or CAP_NET_ADMIN); true when it cannot tell. */
async function mayAdministerNetwork(): Promise<boolean> {
  try {
    const status = await readFile('/proc/self/status', 'utf8');
    const eff = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
    return eff === undefined || ((BigInt(`0x${eff}`) >> CAP_NET_ADMIN) & 1n) === 1n;
  } catch {
    return true;
  }
}

/** The host `connect` runs on. */
function productionEnv(): ConnectEnv {
  const log = createLogger({ level: process.env.WG_OVERLAY_LOG_LEVEL === 'debug' ? 'debug' : 'info' });
  return {
    ...hostRunners(log),
    lookupName: async (name) => (await lookup(name, { all: true, verbatim: false })).map((a) => a.address),
    ipBatch: (l) => new IpBatch(l),
    monitor: monitorInterface,
    nudge,
    signals: process,
    out: process.stdout,
  };
}

/** Connects until a signal (or the Peer is lost); resolves with the exit status. */
export async function runConnect(opts: ConnectOptions, env: ConnectEnv): Promise<number> {
  if (!(await mayAdministerNetwork()))
    throw new CliError(
      "this host's network cannot be changed by this user: run it as root (sudo wg-overlay connect …) or with CAP_NET_ADMIN",
    );
  let session: ConnectSession;
  try {
    session = new ConnectSession(opts, await prepareConnect(opts, env), env);
  } catch (e) {
    if (e instanceof ConnectFailure) throw new CliError(e.message, e.code);
    if (e instanceof ConnectError || e instanceof PeerRequestError) throw new CliError(e.message, EXIT_FAILURE);
    throw e;
  }
  return session.run();
}

/** `wg-overlay connect …`: resolves with the exit status; a connection that was tried ends the process when it ends. */
export async function connectCommand(
  argv: string[],
  out: NodeJS.WritableStream = process.stdout,
  err: NodeJS.WritableStream = process.stderr,
): Promise<number> {
  let tried = false;
  const code = await runCommand(CONNECT_COMMAND, { argv, out, err }, async ({ values }) => {
    let opts: ConnectOptions;
    try {
      opts = connectOptions(values);
    } catch (e) {
      if (e instanceof ConnectUsageError) throw new CliError(`${e.message}\n${CONNECT_USAGE}`, EXIT_USAGE);
      throw e;
    }
    if (values.status) return connectStatus(opts, values.json ?? false, { runner: new ExecaRunner(), out });
    if (values.json) throw new CliError(`--json goes with --status\n${CONNECT_USAGE}`, EXIT_USAGE);
    tried = true;
    return runConnect(opts, productionEnv());
  });
  // Its sockets, watches and co-processes are closed by now, but a straggler must never keep it alive.
  return tried ? process.exit(code) : code;
}
