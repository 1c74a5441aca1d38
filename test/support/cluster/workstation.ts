/**
 * A host outside a test cluster that joins it with `wg-overlay connect`: its own namespace on an
 * underlay, an admin kubeconfig, its key and settings in its private /etc, and helpers to start the
 * connection, read its Peer, and time how long it takes until a target answers.
 */
import { KILO_PEER_RESOURCE } from '../../kube-api/server.js';
import type { KubeObject } from '../../kube-api/server.js';
import { TestNode } from '../namespaces/netns.js';
import { pingReplies } from '../namespaces/pods.js';
import type { Underlay } from '../namespaces/underlay.js';
import type { TestProcess } from '../process.js';
import { publicKeyFromPrivate } from '../../../service/src/wireguard/keys.js';
import { join } from 'node:path';
import { Cluster, mergeIni, REPO_ROOT, type NodeSpec } from './cluster.js';
import { waitFor } from '../wait.js';

/** Where the workstation keeps what `connect` reads (its /etc is its own). */
export const WS_KUBECONFIG = '/etc/wg-overlay-connect/kubeconfig';
export const WS_CONFIG = '/etc/wg-overlay-connect/wg-overlay.conf';
export const WS_KEY = '/etc/wg-overlay-connect/wgo0.key';
/** The one-file runtime the packages ship (test/setup.sh builds it): what a workstation runs, and starts as fast. */
export const BUNDLE = join(REPO_ROOT, 'build', 'bundle', 'wg-overlay.mjs');

/** A workstation joining a test cluster. */
export class Workstation {
  private constructor(
    readonly host: TestNode,
    readonly cluster: Cluster,
    readonly name: string,
  ) {}

  /**
   * Creates the workstation on `network` (default the cluster's underlay) with the cluster's admin
   * kubeconfig and `config` as its copy of the nodes' settings.
   */
  static async create(cluster: Cluster, o: { name?: string; config?: string; network?: Underlay } = {}) {
    const host = await TestNode.create({ label: o.name ?? 'workstation' });
    await (o.network ?? cluster.underlay).attach(host);
    await host.exec('mkdir', ['-p', '/etc/wg-overlay-connect']);
    await host.writeFile(WS_KUBECONFIG, cluster.kubeconfigText, 0o600);
    await host.writeFile(WS_CONFIG, mergeIni(`[log]\nlevel = info\n${o.config ?? ''}`), 0o644);
    return new Workstation(host, cluster, o.name ?? 'workstation');
  }

  /** Starts `wg-overlay connect` (the packaged runtime) with the workstation's kubeconfig, settings and key (more arguments after). */
  connect(args: readonly string[] = []): TestProcess {
    return this.host.spawn('node', [
      BUNDLE,
      'connect',
      '--kubeconfig',
      WS_KUBECONFIG,
      '--config',
      WS_CONFIG,
      '--private-key',
      WS_KEY,
      '--name',
      this.name,
      ...args,
    ]);
  }

  /** The workstation's public key (once connect created its key). */
  async publicKey(): Promise<string> {
    return publicKeyFromPrivate((await this.host.readFile(WS_KEY)).trim());
  }

  /** Its Peer as the API server has it. */
  peer(): KubeObject | undefined {
    return this.cluster.api.resource('peers', KILO_PEER_RESOURCE.group).get(this.name);
  }

  /** The allowedIPs of its Peer. */
  peerAllowedIPs(): string[] {
    return ((this.peer()?.spec as { allowedIPs?: string[] } | undefined)?.allowedIPs ?? []).slice();
  }

  /**
   * Waits until `target` answers a ping from the workstation, trying every 20 ms with one echo that
   * waits 0.3 s; resolves with when the reply arrived (ms since the epoch, as `ping -D` stamps it).
   */
  async firstReply(target: string, timeoutMs = 30_000): Promise<number> {
    return waitFor(
      `a reply from ${target} to ${this.name}`,
      async () => {
        const r = await this.host.exec('ping', ['-D', '-c', '1', '-W', '0.3', target], { allowFailure: true });
        return r.exitCode === 0 ? (pingReplies(r.stdout)[0]?.at ?? Date.now()) : undefined;
      },
      timeoutMs,
      20,
    );
  }

  async destroy(): Promise<void> {
    await this.host.destroy();
  }
}

/**
 * A meshed cluster with the Peer resource installed, its Nodes added with their specs, and a
 * workstation on its underlay (the set-up of every `connect` test).
 */
export async function meshWithWorkstation(
  options: Parameters<typeof Cluster.create>[0],
  nodes: Record<string, NodeSpec>,
  workstation: Parameters<typeof Workstation.create>[1] = {},
): Promise<{ cluster: Cluster; ws: Workstation }> {
  const cluster = await Cluster.create(options);
  cluster.api.registerResource(KILO_PEER_RESOURCE);
  await Promise.all(Object.entries(nodes).map(([name, spec]) => cluster.addNode(name, spec)));
  await cluster.waitForMesh();
  return { cluster, ws: await Workstation.create(cluster, workstation) };
}

/** Ends a `connect` test: the connect still running is killed, then everything else goes, in order. */
export async function tearDown(
  connect: TestProcess | undefined,
  ...rest: Array<{ destroy(): Promise<unknown> } | undefined>
): Promise<void> {
  await connect?.stop('SIGKILL', 2_000).catch(() => undefined);
  for (const r of rest) await r?.destroy();
}
