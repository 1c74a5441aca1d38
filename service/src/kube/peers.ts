/**
 * Discovery of Kilo's `Peer` custom resources (kilo.squat.ai/v1alpha1, cluster-scoped): an
 * informer on /apis/kilo.squat.ai/v1alpha1/peers restarted with backoff when it stops, and a
 * one-shot list for the CLI. Peers are optional: when the CRD is not installed the source reports
 * an empty list, logs that once at warning, and looks again every minute; it is never fatal.
 * Everything leaving this module is a plain MeshPeer.
 */
import * as k8s from '@kubernetes/client-node';
import type { Logger } from '../log/logger.js';
import { PEER_API_PATH, PEER_GROUP, PEER_PLURAL, PEER_VERSION } from '../mesh/peers.js';
import type { MeshPeer } from '../mesh/types.js';
import { Poller, StateReporter } from '../util/backoff.js';
import { describeApiError } from './client.js';
import { INFORMER_START_TIMEOUT_MS, RestartingInformer } from './informer.js';
import { type PeerObject, toMeshPeer } from './translate.js';

/** The state of Peer discovery. */
export type PeerSourceState =
  /** Listed and watching. */
  | 'up'
  /** The Peer CRD is not installed (404): no Peers, looked for again periodically. */
  | 'absent'
  /** The API failed; the last known Peers stay in effect. */
  | 'down';

/** Callbacks a Peer source reports to. */
export interface PeerSourceHandler {
  /** The complete current Peer list (after any change). */
  onPeers(peers: MeshPeer[]): void;
  /** Discovery state changed (with the error when down). */
  onState(state: PeerSourceState, error?: unknown): void;
}

/** Discovers Peers; `start` begins reporting, `stop` ends it. */
export interface PeerSource {
  start(handler: PeerSourceHandler): void;
  stop(): Promise<void>;
}

/** True when an API error means the resource type is not served (CRD missing). */
export function isNotFound(err: unknown): boolean {
  const e = err as { code?: number; statusCode?: number };
  return e?.code === 404 || e?.statusCode === 404;
}

/** The warning for a failing Peer list or watch (a hint for 403, which means missing RBAC rules). */
export function peerFailureMessage(what: string, err: unknown): string {
  const e = err as { code?: number; statusCode?: number };
  const why = describeApiError(err);
  if (e?.code === 403 || e?.statusCode === 403) {
    return `${what}: listing ${PEER_GROUP} Peers is forbidden (${why}): give wg-overlay's ClusterRole the verbs list and watch on peers.${PEER_GROUP} `
      + '(see /usr/share/wg-overlay/kubernetes/rbac.yaml); retrying with backoff, the last known Peers stay';
  }
  return `${what}: listing ${PEER_GROUP} Peers failed (${why}); retrying with backoff, the last known Peers stay`;
}

/** Converts Peer objects into MeshPeers, dropping unnamed ones. */
export function translatePeers(items: readonly unknown[]): MeshPeer[] {
  return items.map((o) => toMeshPeer(o as PeerObject)).filter((p): p is MeshPeer => p !== undefined);
}

/** Watches Peers with client-node's informer (kept alive by RestartingInformer; slowly while the CRD is missing). */
export class WatchPeerSource implements PeerSource {
  private informer: RestartingInformer<k8s.KubernetesObject> | undefined;
  private readonly reporter = new StateReporter();

  /**
   * `absentRetryMs`: how often to look for the CRD again while it is missing; `startTimeoutMs`:
   * how long a (re)start may hang before it is given up and a fresh informer is started.
   */
  constructor(private readonly kc: k8s.KubeConfig, private readonly log: Logger, private readonly absentRetryMs = 60_000, private readonly startTimeoutMs = INFORMER_START_TIMEOUT_MS) {}

  start(handler: PeerSourceHandler): void {
    const api = this.kc.makeApiClient(k8s.CustomObjectsApi);
    const list = async (): Promise<k8s.KubernetesListObject<k8s.KubernetesObject>> =>
      (await api.listClusterCustomObject({ group: PEER_GROUP, version: PEER_VERSION, plural: PEER_PLURAL })) as k8s.KubernetesListObject<k8s.KubernetesObject>;
    this.informer = new RestartingInformer(this.kc, PEER_API_PATH, list, this.log, 'peer watch', this.startTimeoutMs);
    this.informer.start({
      onList: (items) => handler.onPeers(translatePeers(items)),
      onUp: () => {
        if (this.reporter.changed('state', 'up')) this.log.info(`peer watch: watching ${PEER_GROUP} Peers`);
        handler.onState('up');
      },
      onError: (err) => {
        if (isNotFound(err)) {
          if (this.reporter.changed('state', 'absent')) {
            this.log.warning(`Peer resources (${PEER_GROUP}/${PEER_VERSION}) are not served by the API server: the Peer CRD is not installed, so no external Peers are added; `
              + `install it with \`kubectl apply -f /usr/share/wg-overlay/kubernetes/crd-peer.yaml\` (looking again every ${Math.round(this.absentRetryMs / 1000)} s)`);
          }
          handler.onState('absent', err);
          handler.onPeers([]);
          return this.absentRetryMs;
        }
        const why = describeApiError(err);
        if (this.reporter.changed('state', `down:${why}`)) this.log.warning(peerFailureMessage('peer watch', err));
        handler.onState('down', err);
        return undefined;
      },
    });
  }

  async stop(): Promise<void> {
    await this.informer?.stop();
  }
}

/** Lists Peers every `intervalMs` (with `discovery = list`, for API endpoints that cannot watch). */
export class ListPeerSource implements PeerSource {
  private poller: Poller | undefined;
  private readonly reporter = new StateReporter();

  constructor(private readonly kc: k8s.KubeConfig, private readonly log: Logger, private readonly intervalMs: number) {}

  start(handler: PeerSourceHandler): void {
    this.poller = new Poller(this.intervalMs, async () => {
      try {
        const { peers, absent } = await listPeers(this.kc);
        if (absent) {
          if (this.reporter.changed('state', 'absent')) {
            this.log.warning(`Peer resources (${PEER_GROUP}/${PEER_VERSION}) are not served by the API server: the Peer CRD is not installed, so no external Peers are added; `
              + 'install it with `kubectl apply -f /usr/share/wg-overlay/kubernetes/crd-peer.yaml`');
          }
          handler.onState('absent');
        } else {
          if (this.reporter.changed('state', 'up')) this.log.info(`peer list: listing ${PEER_GROUP} Peers every ${Math.round(this.intervalMs / 1000)} s`);
          handler.onState('up');
        }
        handler.onPeers(peers);
      } catch (err) {
        const cause = (err as { cause?: unknown }).cause ?? err;
        if (this.reporter.changed('state', `down:${describeApiError(cause)}`)) this.log.warning(peerFailureMessage('peer list', cause));
        handler.onState('down', err);
        throw err;
      }
    });
    this.poller.start();
  }

  async stop(): Promise<void> {
    this.poller?.stop();
  }
}

/** Lists Peers once (for the CLI); an empty list with `absent: true` when the CRD is not installed. */
export async function listPeers(kc: k8s.KubeConfig): Promise<{ peers: MeshPeer[]; absent: boolean }> {
  const api = kc.makeApiClient(k8s.CustomObjectsApi);
  try {
    const list = await api.listClusterCustomObject({ group: PEER_GROUP, version: PEER_VERSION, plural: PEER_PLURAL }) as { items?: unknown[] };
    return { peers: translatePeers(Array.isArray(list?.items) ? list.items : []), absent: false };
  } catch (err) {
    if (isNotFound(err)) return { peers: [], absent: true };
    throw new Error(`listing ${PEER_GROUP} Peers: ${describeApiError(err)}`, { cause: err });
  }
}
