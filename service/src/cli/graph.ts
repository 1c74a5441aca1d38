/**
 * `wg-overlay graph`: the mesh as Graphviz DOT, like Kilo's `kgctl graph`. One box per Node
 * (name, PodCIDRs, overlay address, endpoint), one ellipse per external Peer (allowedIPs,
 * endpoint), solid links between nodes and dashed links to Peers. Links of the node the command
 * runs on carry the age of their latest handshake from its `wg show <if> dump`, and stale ones
 * (no handshake, or older than --stale seconds) are drawn red. Nodes and Peers left out of the
 * mesh are drawn grey with the reason. With `[mesh] granularity = location` or `cross`, locations
 * are clusters, leaders are marked, and only the tunnels that exist are drawn (links over a
 * location's private network dotted). Render it with `wg-overlay graph | dot -Tsvg > mesh.svg`.
 */
import { DEFAULT_CONFIG_PATH } from '../config/config.js';
import { ExecaRunner } from '../exec/runner.js';
import { meshSettings } from '../config/mesh-settings.js';
import { EXIT_USAGE } from '../exit-status.js';
import { readDevice } from '../host/device.js';
import { membershipSettings } from '../mesh/desired/plan.js';
import type { Membership } from '../mesh/membership/membership.js';
import type { Topology } from '../mesh/desired/topology.js';
import { escapeUnsafe } from '../mesh/text.js';
import { formatCidr } from '../net/ip.js';
import { CliError, loadCliConfig, readCluster, readTopology, operatorCommand } from './cluster.js';

export const GRAPH_USAGE = `Usage: wg-overlay graph [--stale SECONDS] [--no-handshakes] [--config FILE]

Prints the mesh as Graphviz DOT: nodes, external Peers, and the links between them. Links of
this node are labelled with the age of their latest handshake and drawn red when it is stale.
Render it with: wg-overlay graph | dot -Tsvg > mesh.svg
  --stale SECONDS    a handshake older than this is stale (default 180, WireGuard's key lifetime)
  --no-handshakes    do not read this node's WireGuard device
  --config FILE      config file (default ${DEFAULT_CONFIG_PATH})
`;

/** Default age (s) after which a handshake is stale: WireGuard's REJECT_AFTER_TIME. */
export const DEFAULT_STALE_SECONDS = 180;

/** What the graph knows about this node's links. */
export interface GraphOptions {
  /** The node the command runs on (its links get handshake labels). */
  self: string | undefined;
  /** Public key → unix seconds of the latest handshake (0 = never), from this node's device; undefined when unknown. */
  handshakes: ReadonlyMap<string, number> | undefined;
  /** Now, in unix seconds. */
  now: number;
  staleAfterSeconds: number;
  /** With location or cross granularity: locations are drawn as clusters, leaders marked. */
  topology?: Topology | undefined;
}

/** Quotes a DOT ID / string. */
function q(s: string): string {
  return `"${dotText(s)}"`;
}

/** Text inside a DOT string: quotes and backslashes escaped, control and bidi characters written out. */
function dotText(s: string): string {
  return escapeUnsafe(
    s
      .replace(/[\r\n]+/g, ' ')
      .replace(/\\/g, '\\\\')
      .replace(/"/g, '\\"'),
  );
}

/** A multi-line label (lines joined with DOT's centred line break). */
function label(lines: string[]): string {
  return `"${lines.map(dotText).join('\\n')}"`;
}

/** Formats an age in seconds as `45s`, `3m12s`, `2h5m`, `3d4h`. */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ''}`;
  if (s < 86400)
    return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60) ? `${Math.floor((s % 3600) / 60)}m` : ''}`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600) ? `${Math.floor((s % 86400) / 3600)}h` : ''}`;
}

/** Edge attributes for a link of this node with the peer holding `publicKey`. */
function handshakeAttrs(publicKey: string, o: GraphOptions): string[] {
  const hs = o.handshakes?.get(publicKey);
  if (hs === undefined) return ['color=red', 'fontcolor=red', 'label="stale: not on the device"'];
  if (hs === 0) return ['color=red', 'fontcolor=red', 'label="stale: no handshake"'];
  const age = o.now - hs;
  return age > o.staleAfterSeconds
    ? ['color=red', 'fontcolor=red', `label=${q(`stale: ${formatAge(age)} ago`)}`]
    : ['color=darkgreen', 'fontcolor=darkgreen', `label=${q(`${formatAge(age)} ago`)}`];
}

/** The links: tunnels (solid, with handshakes on this node's), the private network inside a location (dotted), external peers (dashed). */
function links(
  view: Membership,
  o: GraphOptions,
  nodeId: (n: string) => string,
  peerId: (n: string) => string,
): string[] {
  const out: string[] = [];
  const nodes = view.members;
  const t = o.topology;
  const loc = (name: string): string | undefined => t?.locationOf.get(name);
  const leaderOf = new Map(t?.locations.map((l) => [l.id, l.leader]) ?? []);
  const tunnels = (a: string, b: string): boolean => {
    if (!t) return true;
    if (loc(a) === loc(b)) return false;
    return t.granularity === 'cross' || (leaderOf.get(loc(a)!) === a && leaderOf.get(loc(b)!) === b);
  };
  const edge = (a: Membership['members'][number], b: Membership['members'][number]): void => {
    if (t && loc(a.name) === loc(b.name)) {
      // Inside a location: the private network, to the leader (location) or between all (cross).
      if (t.granularity === 'cross' || leaderOf.get(loc(a.name)!) === a.name || leaderOf.get(loc(b.name)!) === b.name) {
        out.push(`  ${nodeId(a.name)} -- ${nodeId(b.name)} [style=dotted, color=gray, label="private"];`);
      }
      return;
    }
    if (!tunnels(a.name, b.name)) return;
    const attrs: string[] = [];
    if (o.self === a.name) attrs.push(...handshakeAttrs(b.publicKey, o));
    else if (o.self === b.name) attrs.push(...handshakeAttrs(a.publicKey, o));
    out.push(`  ${nodeId(a.name)} -- ${nodeId(b.name)}${attrs.length ? ` [${attrs.join(', ')}]` : ''};`);
  };
  for (let i = 0; i < nodes.length; i += 1) for (let j = i + 1; j < nodes.length; j += 1) edge(nodes[i]!, nodes[j]!);
  for (const n of nodes) {
    // External peers are peers of every node, or of the leaders only.
    if (t?.granularity === 'location' && leaderOf.get(loc(n.name)!) !== n.name) continue;
    for (const p of view.externalPeers) {
      const attrs = ['style=dashed'];
      if (o.self === n.name) attrs.push(...handshakeAttrs(p.publicKey, o));
      out.push(`  ${nodeId(n.name)} -- ${peerId(p.name)} [${attrs.join(', ')}];`);
    }
  }
  return out;
}

/** Grey boxes for the Nodes and Peers left out of the mesh, each once. */
function skippedBoxes(view: Membership, nodeId: (n: string) => string, peerId: (n: string) => string): string[] {
  const out: string[] = [];
  const inMesh = new Set(view.members.map((n) => n.name));
  const seenSkipped = new Set<string>();
  for (const s of view.skipped) {
    const kind = s.kind ?? 'node';
    if (!s.whole || (kind === 'node' && inMesh.has(s.name)) || seenSkipped.has(`${kind}/${s.name}`)) continue;
    seenSkipped.add(`${kind}/${s.name}`);
    const id = kind === 'node' ? nodeId(s.name) : peerId(s.name);
    const shape = kind === 'node' ? 'box' : 'ellipse';
    out.push(
      `  ${id} [shape=${shape}, style="dashed,rounded", color=gray, fontcolor=gray, ` +
        `label=${label([s.name, `skipped: ${s.message.length > 80 ? `${s.message.slice(0, 77)}...` : s.message}`])}];`,
    );
  }
  return out;
}

/** Renders the mesh as DOT (pure). */
export function renderGraph(view: Membership, o: GraphOptions): string {
  const out: string[] = [
    'graph "wg-overlay" {',
    `  label=${q(`wg-overlay mesh, overlay ${formatCidr(view.overlay)}${o.self ? `, as seen from ${o.self}` : ''}`)};`,
    '  labelloc=t;',
    '  fontname="Helvetica";',
    '  node [shape=box, style=rounded, fontname="Helvetica", fontsize=11];',
    '  edge [fontname="Helvetica", fontsize=9];',
  ];
  const nodeId = (name: string): string => q(`node/${name}`);
  const peerId = (name: string): string => q(`peer/${name}`);
  const leaders = new Set(o.topology?.granularity === 'location' ? o.topology.locations.map((l) => l.leader) : []);
  const box = (n: Membership['members'][number], indent: string): string => {
    const attrs = [
      `label=${label([
        n.name,
        ...(leaders.has(n.name) ? ['(leader)'] : []),
        ...n.podCIDRs,
        n.overlayAddress,
        ...(n.overlayAddress6 ? [n.overlayAddress6] : []),
        n.endpoint,
      ])}`,
    ];
    if (n.name === o.self) attrs.push('penwidth=2');
    if (leaders.has(n.name)) attrs.push('style="rounded,bold"', 'color=blue');
    return `${indent}${nodeId(n.name)} [${attrs.join(', ')}];`;
  };
  if (o.topology) {
    const byName = new Map(view.members.map((n) => [n.name, n]));
    o.topology.locations.forEach((l, i) => {
      out.push(
        `  subgraph "cluster_${i}" {`,
        `    label=${q(l.source === 'node' ? `${l.name} (on its own)` : `location ${l.name}`)};`,
        '    style="rounded,dashed";',
      );
      for (const name of l.members) if (byName.has(name)) out.push(box(byName.get(name)!, '    '));
      out.push('  }');
    });
  } else {
    for (const n of view.members) out.push(box(n, '  '));
  }
  for (const p of view.externalPeers) {
    out.push(
      `  ${peerId(p.name)} [shape=ellipse, style=dashed, label=${label([p.name, ...p.allowedIPs, p.endpoint ?? '(roaming)'])}];`,
    );
  }
  out.push(...skippedBoxes(view, nodeId, peerId));
  out.push(...links(view, o, nodeId, peerId));
  out.push('}');
  return `${out.join('\n')}\n`;
}

/** `wg-overlay graph`: resolves with the exit status. */
export const graphCommand = operatorCommand(
  {
    name: 'graph',
    usage: GRAPH_USAGE,
    options: { stale: { type: 'string' }, 'no-handshakes': { type: 'boolean' } },
    positionals: false,
  } as const,
  async ({ values }, { out, err }) => {
    const stale = values.stale === undefined ? DEFAULT_STALE_SECONDS : Number(values.stale);
    if (!Number.isInteger(stale) || stale < 1)
      throw new CliError(`--stale ${values.stale ?? ''}: expected a number of seconds`, EXIT_USAGE);
    const config = await loadCliConfig(values.config, err);
    const cluster = await readCluster(config);
    const settings = meshSettings(config, undefined, { clusterCa: cluster.clusterCa });
    const view = cluster.view.membership(membershipSettings(settings));
    const topology = await readTopology(config, cluster.view, view);
    const self = config.kubernetes.nodeName;
    let handshakes: Map<string, number> | undefined;
    if (!values['no-handshakes'] && view.members.some((n) => n.name === self)) {
      const dev = await readDevice(new ExecaRunner(), config.wireguard.interface).catch(() => undefined);
      if (dev) handshakes = new Map(dev.peers.map((p) => [p.publicKey, p.latestHandshake]));
      else
        err.write(
          `wg-overlay graph: cannot read ${config.wireguard.interface} on this node (missing, or not root): links are drawn without handshakes\n`,
        );
    }
    out.write(
      renderGraph(view, {
        self: handshakes ? self : undefined,
        handshakes,
        now: Math.floor(Date.now() / 1000),
        staleAfterSeconds: stale,
        topology,
      }),
    );
    return 0;
  },
);
