/**
 * `wg-overlay showconf peer NAME` and `wg-overlay showconf node NAME`, like Kilo's
 * `kgctl showconf`: the WireGuard configuration an external Peer (or a Node) should have, read
 * from the cluster through the kubeconfig of the config file. The default output is the form
 * `wg setconf` takes (no private key); `--wg-quick` prints a wg-quick file instead, with an
 * [Interface] template (Address, and a placeholder where the private key goes).
 *
 * WireGuard routes each address range to exactly one peer, so the extra ranges of
 * `[peers] allowed_ips_extra` / `--allowed-ips` (e.g. the service CIDR) are given to one node,
 * the oldest by default (`--via NODE` picks another), not repeated on every node.
 */
import { DEFAULT_CONFIG_PATH } from '../config/config.js';
import type { Config } from '../config/config.js';
import { meshSettings, topologySettings } from '../config/mesh-settings.js';
import { EXIT_FAILURE, EXIT_USAGE } from '../exit-status.js';
import { ANNOTATION_PUBLIC_KEY } from '../mesh/annotations.js';
import { NotReadyError } from '../mesh/desired/desired.js';
import { membershipSettings, planNode, type NodePlanInput } from '../mesh/desired/plan.js';
import { ClusterView } from '../mesh/cluster-view.js';
import { planExternalPeer, type ExternalPlanInput } from '../mesh/desired/external.js';
import { isValidKey } from '../mesh/membership/keys.js';
import type { Membership } from '../mesh/membership/membership.js';
import type { DesiredState, MeshSettings } from '../mesh/types.js';
import { formatCidr, hostCidr, parseCidr } from '../net/ip.js';
import { toWgQuickConfig, toWgQuickPeer } from '../wireguard/conf.js';
import { renderWgQuick, stripWgQuick, type WgQuickConfig } from '../wireguard/wgquick.js';
import { CliError, loadCliConfig, readCluster, readLeaderLiveness, operatorCommand } from './cluster.js';

export const SHOWCONF_USAGE = `Usage: wg-overlay showconf peer NAME [--wg-quick] [--allowed-ips CIDR,...] [--via NODE] [--config FILE]
       wg-overlay showconf node NAME [--wg-quick] [--config FILE]

Prints the WireGuard configuration of an external Peer (Kilo's Peer resource) or of a Node,
read from the cluster through the kubeconfig named in the config file.
  peer NAME          one [Peer] per node: its public key, endpoint, overlay address, PodCIDRs
                     and the extra ranges of [peers] allowed_ips_extra; keepalive from the Peer
  node NAME          the node's [Interface] ListenPort and [Peer]s, without its private key
  --wg-quick         print a wg-quick file: [Interface] with Address and a placeholder for the
                     private key (default: the form \`wg setconf IFACE FILE\` takes)
  --allowed-ips L    more CIDRs to route into the cluster (added to allowed_ips_extra)
  --via NODE         the node that gets the extra ranges (default: the oldest node)
  --config FILE      config file (default ${DEFAULT_CONFIG_PATH})
`;

/** The private key placeholder of the wg-quick form (wg-quick rejects it until it is replaced). */
export const PRIVATE_KEY_PLACEHOLDER = 'REPLACE_WITH_THE_PRIVATE_KEY';

/** Options of the peer rendering. */
export interface PeerConfOptions {
  wgQuick: boolean;
  /** Extra CIDRs routed through one node. */
  extraAllowedIPs: readonly string[];
  /** The node that gets the extra CIDRs (default: the oldest). */
  via?: string | undefined;
  /** With `granularity = location` or `cross`: the topology (one [Peer] per location leader with `location`). */
  topology?: ExternalPlanInput['topology'];
}

/** Renders through the same renderer the daemon writes wg0.conf with: the wg-quick or the `wg setconf` form. */
function render(cfg: WgQuickConfig, header: string[], wgQuick: boolean): string {
  return wgQuick
    ? renderWgQuick(cfg, { header, privateKeyPlaceholder: PRIVATE_KEY_PLACEHOLDER })
    : stripWgQuick(cfg, { header });
}

/** The wg-quick Address of a Peer: its host routes, else the first address of its first range. */
export function peerAddresses(allowedIPs: readonly string[]): string[] {
  const hosts = allowedIPs.filter((t) => {
    const c = parseCidr(t);
    return c && c.prefix === (c.family === 4 ? 32 : 128);
  });
  if (hosts.length > 0) return hosts;
  const first = parseCidr(allowedIPs[0] ?? '');
  if (!first) return [];
  const isHostNetwork = first.prefix >= (first.family === 4 ? 31 : 127);
  return [hostCidr({ family: first.family, value: first.network + (isHostNetwork ? 0n : 1n) })];
}

/** Normalises a list of CIDRs; throws a CliError naming a bad one. */
export function parseCidrList(texts: readonly string[], what: string): string[] {
  const out: string[] = [];
  for (const t of texts
    .flatMap((x) => x.split(','))
    .map((x) => x.trim())
    .filter(Boolean)) {
    const c = parseCidr(t);
    if (!c || !t.includes('/')) throw new CliError(`${what}: "${t}" is not a CIDR (e.g. 10.96.0.0/12)`, EXIT_USAGE);
    const norm = formatCidr(c);
    if (!out.includes(norm)) out.push(norm);
  }
  return out;
}

/** Renders the configuration of external Peer `name` (pure); throws a CliError when it cannot. */
export function renderPeerConf(membership: Membership, name: string, opts: PeerConfOptions): string {
  const plan = planExternalPeer({
    membership,
    name,
    iface: 'wg0',
    extra: opts.extraAllowedIPs,
    via: opts.via,
    topology: opts.topology,
  });
  if ('problem' in plan) {
    const hint = {
      skipped: `; fix the Peer resource (kubectl edit peer ${name})`,
      missing: ' (kubectl get peers lists them)',
      'no-nodes': ' (is wg-overlay running on the nodes?)',
      'no-such-via': '',
    }[plan.problem];
    throw new CliError(`${plan.message}${hint}`, plan.problem === 'no-such-via' ? EXIT_USAGE : EXIT_FAILURE);
  }
  const { peer } = plan;
  const port = peer.endpoint ? Number(peer.endpoint.slice(peer.endpoint.lastIndexOf(':') + 1)) : undefined;
  const each = plan.locations ? 'one [Peer] per location, through its leader' : 'one [Peer] per node of the cluster';
  const header = [
    `# WireGuard configuration of the external Peer ${name} (public key ${peer.publicKey}),`,
    `# generated by \`wg-overlay showconf peer ${name}${opts.wgQuick ? ' --wg-quick' : ''}\`: ${each}.`,
    opts.wgQuick
      ? `# Put the private key of ${name} in place of the placeholder, then: wg-quick up ./FILE.conf`
      : '# Apply it with: wg setconf IFACE FILE && wg set IFACE private-key KEYFILE (setconf replaces everything, the key too)',
  ];
  const extra = opts.extraAllowedIPs.filter((c) => !peer.allowedIPs.includes(c));
  const peers = plan.peers.map((p) => {
    const loc = plan.locations?.find((l) => l.name === p.location);
    const led = loc ? `, leader of location ${loc.name} (${loc.members.join(', ')})` : '';
    const also = p.name === plan.via && extra.length > 0 ? ` (also routes the extra ranges ${extra.join(', ')})` : '';
    return toWgQuickPeer(p, `Node ${p.name}${led}${also}`);
  });
  const address = opts.wgQuick ? peerAddresses(peer.allowedIPs) : [];
  return render(
    { iface: { address, ...(port !== undefined ? { listenPort: port } : {}), extra: [] }, peers },
    header,
    opts.wgQuick,
  );
}

/** Renders the configuration of Node `name` from its desired state (pure), without its private key. */
export function renderNodeConf(desired: DesiredState, name: string, opts: { wgQuick: boolean }): string {
  const header = [
    `# WireGuard configuration of Node ${name} (public key ${desired.iface.publicKey}),`,
    `# generated by \`wg-overlay showconf node ${name}${opts.wgQuick ? ' --wg-quick' : ''}\` (without its private key).`,
  ];
  return render(
    toWgQuickConfig(desired, undefined, (p) => `${p.kind === 'node' ? 'Node' : 'Peer'} ${p.name}`),
    header,
    opts.wgQuick,
  );
}

/** The desired state of Node `name` as seen from the cluster; throws a CliError when there is none. */
export function nodeDesired(
  view: ClusterView,
  settings: MeshSettings,
  name: string,
  topology?: NodePlanInput['topology'],
): DesiredState {
  const node = view.node(name);
  if (!node) throw new CliError(`Node ${name} does not exist (kubectl get nodes lists them)`);
  const key = node.annotations[ANNOTATION_PUBLIC_KEY];
  if (!key || !isValidKey(key))
    throw new CliError(`Node ${name} has not published a valid WireGuard public key (is wg-overlay running on it?)`);
  const self = { name, publicKey: key };
  try {
    return planNode({
      view: ClusterView.of([...view.nodes.values()], view.externalPeers, self),
      self,
      settings,
      topology,
    }).desired;
  } catch (e) {
    if (e instanceof NotReadyError) throw new CliError(e.message);
    throw e;
  }
}

/** `wg-overlay showconf …`: resolves with the exit status. */
export const showconfCommand = operatorCommand(
  {
    name: 'showconf',
    usage: SHOWCONF_USAGE,
    options: {
      'wg-quick': { type: 'boolean' },
      'allowed-ips': { type: 'string', multiple: true },
      via: { type: 'string' },
    },
    positionals: true,
  } as const,
  async ({ values, positionals }, { out, err }) => {
    const [kind, name, ...more] = positionals;
    if ((kind !== 'peer' && kind !== 'node') || !name || more.length > 0)
      throw new CliError(`expected "peer NAME" or "node NAME"\n${SHOWCONF_USAGE}`, EXIT_USAGE);
    if (kind === 'node' && (values['allowed-ips'] || values.via))
      throw new CliError('--allowed-ips and --via apply to showconf peer only', EXIT_USAGE);
    const config = await loadCliConfig(values.config, err);
    const extra = [...config.peers.allowedIpsExtra, ...parseCidrList(values['allowed-ips'] ?? [], '--allowed-ips')];
    const cluster = await readCluster(config);
    const settings = meshSettings(config, undefined, { clusterCa: cluster.clusterCa });
    if (kind === 'peer') {
      if (cluster.peersAbsent)
        throw new CliError(
          'the Peer resource (kilo.squat.ai/v1alpha1) is not installed in the cluster: ' +
            'kubectl apply -f /usr/share/wg-overlay/kubernetes/crd-peer.yaml',
        );
      const membership = cluster.view.membership(membershipSettings(settings));
      const topology = await planTopology(config);
      out.write(
        renderPeerConf(membership, name, {
          wgQuick: values['wg-quick'] ?? false,
          extraAllowedIPs: [...new Set(extra)],
          via: values.via,
          topology: topology && { ...topology, nodes: cluster.view.nodes },
        }),
      );
    } else {
      out.write(
        renderNodeConf(nodeDesired(cluster.view, settings, name, await planTopology(config)), name, {
          wgQuick: values['wg-quick'] ?? false,
        }),
      );
    }
    return 0;
  },
);

/** The topology input of a Node's plan for `showconf node` (undefined for a full mesh). */
async function planTopology(config: Config): Promise<NodePlanInput['topology']> {
  const settings = topologySettings(config);
  return settings.granularity === 'full' ? undefined : { settings, liveness: await readLeaderLiveness(config) };
}
