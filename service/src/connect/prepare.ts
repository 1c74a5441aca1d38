/**
 * What `wg-overlay connect` settles before it touches this host's network — the cluster's settings,
 * this host's key, the API server's Nodes and Peers, a route to some node, the interface's port
 * and MTU, and its Peer claimed — each failure a message that says what to do, with its exit status.
 */
import { createSocket } from 'node:dgram';
import { access } from 'node:fs/promises';
import type { KubeConfig } from '@kubernetes/client-node';
import { ConfigError, DEFAULT_CONFIG_PATH, defaultConfig, loadConfig, type Config } from '../config/config.js';
import { meshSettings } from '../config/mesh-settings.js';
import { apiServerAddresses } from '../daemon/prepare.js';
import type { CommandRunner, HostRunners } from '../exec/runner.js';
import { EXIT_CONFIG, EXIT_FAILURE } from '../exit-status.js';
import { readDevice } from '../host/device.js';
import type { IpBatch } from '../host/ip-batch.js';
import { autoMtu, onLinkSubnets } from '../host/link.js';
import { httpStatus, describeApiError } from '../kube/api-errors.js';
import { externalPeersApi, listExternalPeers } from '../kube/external-peer-source.js';
import { toExternalPeer } from '../kube/external-peer-translate.js';
import { clusterCa, KubeconfigError, loadKubeconfig } from '../kube/kubeconfig.js';
import { listNodes } from '../kube/node-source.js';
import {
  forbiddenHint,
  peerClient,
  PeerRequestError,
  peerRequestMessage,
  PEER_CRD,
  type PeerClient,
} from '../kube/peer-resource.js';
import { describeError, type Logger } from '../log/logger.js';
import { ClusterView } from '../mesh/cluster-view.js';
import { hostGuard, type GuardRange } from '../mesh/desired/guard.js';
import { membershipSettings } from '../mesh/desired/plan.js';
import type { Member } from '../mesh/membership/membership.js';
import type { DesiredInterface, ExternalPeer, MeshNode, MeshSettings } from '../mesh/types.js';
import { parseHostPort } from '../net/ip.js';
import { loadOrCreateKeyFile } from '../wireguard/keys.js';
import { claimPeer, ConnectError, type Claimed } from './claim.js';
import type { ConnectOptions } from './options.js';

/** What `connect` takes from its host (the real one in session.ts' caller, fakes in tests). */
export interface ConnectEnv extends HostRunners {
  lookupName(name: string): Promise<string[]>;
  /** The long-lived `ip -batch` co-process for routes (undefined: one `ip` per route). */
  ipBatch(log: Logger): IpBatch | undefined;
  /** Watches route deletions and link changes on the interface. */
  monitor(iface: string, log: Logger, onChange: (line: string) => void): { stop(): void };
  /** Sends one datagram to an overlay address through the tunnel (failover's nudge). */
  nudge?(address: string): Promise<void>;
  /** Where SIGINT, SIGTERM and SIGUSR1 come from. */
  signals: NodeJS.EventEmitter;
  /** Where the SIGUSR1 summary goes. */
  out: NodeJS.WritableStream;
}

/** A failure before `connect` ran, with its exit status. */
export class ConnectFailure extends Error {
  constructor(
    message: string,
    readonly code: number = EXIT_FAILURE,
  ) {
    super(message);
    this.name = 'ConnectFailure';
  }
}

/** Everything `connect` settled before it runs. */
export interface PreparedConnect {
  config: Config;
  kc: KubeConfig;
  server: string;
  identity: { name: string; privateKey: string; publicKey: string };
  settings: MeshSettings;
  guard: GuardRange[];
  /** Extra ranges routed into the cluster (`--allowed-ips` and `[peers] allowed_ips_extra`). */
  extra: string[];
  client: PeerClient;
  claimed: Claimed;
  iface: DesiredInterface;
  /** The Nodes and Peers as listed (this host's Peer as claimed): the first apply need not wait for the watches. */
  nodes: MeshNode[];
  peers: ExternalPeer[];
}

/** The cluster's settings: the file named, else the installed one when there is one, else the defaults. */
async function settingsFile(opts: ConnectOptions, log: Logger): Promise<Config> {
  let file = opts.config;
  if (file === undefined) {
    const installed = await access(DEFAULT_CONFIG_PATH).then(
      () => true,
      () => false,
    );
    if (!installed) return defaultConfig();
    file = DEFAULT_CONFIG_PATH;
  }
  try {
    const { config, warnings } = await loadConfig(file);
    for (const w of warnings) log.warning(w);
    log.info(
      `the cluster's settings from ${file} (granularity ${config.mesh.granularity}, overlay ${config.overlay.cidr})`,
    );
    return config;
  } catch (e) {
    if (e instanceof ConfigError) throw new ConnectFailure(e.problems.join('\n'), EXIT_CONFIG);
    throw e;
  }
}

/** The kubeconfig; a missing or broken one is a failure the admin must fix (status 78). */
async function kubeconfigOf(path: string): Promise<KubeConfig> {
  const present = await access(path).then(
    () => true,
    () => false,
  );
  if (!present)
    throw new ConnectFailure(
      `kubeconfig ${path} does not exist: name one with --kubeconfig FILE (or KUBECONFIG); its user must be allowed ` +
        'what /usr/share/wg-overlay/kubernetes/connect-rbac.yaml grants',
      EXIT_CONFIG,
    );
  try {
    return await loadKubeconfig(path);
  } catch (e) {
    if (e instanceof KubeconfigError) throw new ConnectFailure(e.message, EXIT_CONFIG);
    throw e;
  }
}

/** Lists the Nodes and the Peers; a 403 names the missing verb, a missing Peer CRD says how to install it. */
async function listCluster(kc: KubeConfig, config: Config): Promise<{ nodes: MeshNode[]; peers: ExternalPeer[] }> {
  const server = kc.getCurrentCluster()?.server ?? 'the API server';
  let nodes: MeshNode[];
  try {
    nodes = await listNodes(kc, { labels: [config.mesh.locationLabel] });
  } catch (e) {
    const hint = httpStatus(e) === 403 ? `: ${forbiddenHint('list', 'nodes')}` : '';
    throw new ConnectFailure(`listing Nodes from ${server}: ${describeApiError(e)}${hint}`);
  }
  let listed: { externalPeers: ExternalPeer[]; absent: boolean };
  try {
    listed = await listExternalPeers(externalPeersApi(kc));
  } catch (e) {
    throw new ConnectFailure(peerRequestMessage('list', '', (e as { cause?: unknown }).cause ?? e));
  }
  if (listed.absent)
    throw new ConnectFailure(
      'the Peer resource (kilo.squat.ai/v1alpha1) is not installed in the cluster, so nodes cannot add this host: ' +
        `kubectl apply -f ${PEER_CRD}`,
    );
  return { nodes, peers: listed.externalPeers };
}

/** The addresses the nodes can be dialled at (each Node's endpoint and its other candidates), IPv4 first. */
function endpointAddresses(members: readonly Member[]): string[] {
  const out = new Set<string>();
  for (const m of members)
    for (const ep of [m.endpoint, ...(m.candidates ?? [])]) {
      const host = parseHostPort(ep)?.host;
      if (host) out.add(host);
    }
  return [...out].sort((a, b) => Number(a.includes(':')) - Number(b.includes(':')));
}

/**
 * The first node address this host has a route to, with the source address it would use; a
 * ConnectError naming every address tried when there is none.
 */
export async function routeToNodes(
  runner: CommandRunner,
  members: readonly Member[],
): Promise<{ ip: string; src?: string }> {
  const tried: string[] = [];
  for (const ip of endpointAddresses(members)) {
    const r = await runner.run('ip', ['-j', 'route', 'get', ip], { allowFailure: true });
    if (r.exitCode === 0) {
      const src = (JSON.parse(r.stdout || '[]') as Array<{ prefsrc?: string }>)[0]?.prefsrc;
      return { ip, ...(src ? { src } : {}) };
    }
    tried.push(`${ip} (${r.stderr.trim().replace(/^RTNETLINK answers: /, '') || `exit ${r.exitCode}`})`);
  }
  throw new ConnectError(
    `no route to any node: this host has no route to any of the ${members.length} nodes' endpoints: ` +
      `${tried.slice(0, 8).join(', ')}${tried.length > 8 ? ` and ${tried.length - 8} more` : ''}; connect from a host ` +
      'that reaches the nodes (their InternalIPs, or their ExternalIPs with [wireguard] endpoint = external on the nodes)',
  );
}

/** A UDP port nothing listens on now, from the kernel (both families when it can). */
async function freeUdpPort(): Promise<number> {
  for (const type of ['udp6', 'udp4'] as const) {
    try {
      return await new Promise<number>((resolve, reject) => {
        const s = createSocket(type);
        s.once('error', reject);
        s.bind(0, () => {
          const { port } = s.address();
          s.close(() => resolve(port));
        });
      });
    } catch {
      // no IPv6: try IPv4
    }
  }
  throw new Error('no free UDP port for the WireGuard interface');
}

/** The interface's port: the running interface's when it is being resumed, else a free one. */
async function listenPortOf(runner: CommandRunner, iface: string): Promise<number> {
  const dev = await readDevice(runner, iface).catch(() => undefined);
  return dev?.listenPort || freeUdpPort();
}

/** This host's key pair (created at the first start), logged without the private key. */
async function identityOf(opts: ConnectOptions, log: Logger): Promise<PreparedConnect['identity']> {
  try {
    const key = await loadOrCreateKeyFile(opts.privateKey);
    if (key.created)
      log.notice(`created a new WireGuard private key in ${opts.privateKey}; public key ${key.publicKey}`);
    else log.info(`loaded the WireGuard private key ${opts.privateKey}; public key ${key.publicKey}`);
    if (key.fixedMode) log.warning(`${opts.privateKey} was readable by group or others: its mode is now 0600`);
    return { name: opts.name, privateKey: key.privateKey, publicKey: key.publicKey };
  } catch (e) {
    throw new ConnectFailure(describeError(e));
  }
}

/** Settles everything before `connect` touches the network; throws ConnectFailure (or ConnectError) with what to do. */
export async function prepareConnect(opts: ConnectOptions, env: ConnectEnv): Promise<PreparedConnect> {
  const { log } = env;
  const config = await settingsFile(opts, log);
  const kc = await kubeconfigOf(opts.kubeconfig);
  const server = kc.getCurrentCluster()?.server ?? '?';
  const identity = await identityOf(opts, log);
  const { nodes, peers } = await listCluster(kc, config);
  const facts = {
    clusterCa: await clusterCa(kc),
    apiAddresses: await apiServerAddresses(server, env),
    onLink: await onLinkSubnets(env.quietRunner, [opts.iface]).catch(() => [] as string[]),
  };
  const base = meshSettings(config, undefined, facts);
  const members = ClusterView.of(nodes, peers).membership(membershipSettings(base)).members;
  if (members.length === 0)
    throw new ConnectFailure(`no Node of ${server} is in the mesh yet (is wg-overlay running on the nodes?)`);
  const route = await routeToNodes(env.quietRunner, members);
  const mtu =
    config.wireguard.mtu === 'auto'
      ? await autoMtu(env.quietRunner, route.src ? [route.src] : [])
      : config.wireguard.mtu;
  const settings: MeshSettings = { ...base, interfaceName: opts.iface, mtu, persistentKeepalive: opts.keepalive };
  const extra = [...new Set([...config.peers.allowedIpsExtra, ...opts.allowedIPs])];
  const client = peerClient(kc);
  const claimed = await claimPeer({
    client,
    name: opts.name,
    publicKey: identity.publicKey,
    keyFile: opts.privateKey,
    keepalive: opts.keepalive,
    nodes,
    externalPeers: peers,
    settings: membershipSettings(settings),
    addresses: opts.addresses,
    advertise: opts.advertiseRoutes,
    avoid: [...extra, ...facts.onLink],
    log,
  });
  const [v4, v6] = claimed.addresses;
  const iface: DesiredInterface = {
    name: opts.iface,
    address: v4!,
    ...(v6 ? { address6: v6 } : {}),
    listenPort: await listenPortOf(env.quietRunner, opts.iface),
    mtu,
    publicKey: identity.publicKey,
  };
  const mine = toExternalPeer(claimed.object);
  const listed = [...peers.filter((x) => x.name !== opts.name), ...(mine ? [mine] : [])];
  return {
    ...{ config, kc, server, identity, settings, guard: hostGuard(facts), extra, client, claimed, iface },
    ...{ nodes, peers: listed },
  };
}

export { ConnectError, PeerRequestError };
