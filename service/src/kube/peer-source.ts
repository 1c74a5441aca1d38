/**
 * Discovery of external peers (Kilo's `Peer` custom resources): an informer restarted with
 * backoff when it stops, a list on an interval, and a one-shot list for the operator commands.
 * External peers are optional: when the CRD is not installed the source reports an empty list,
 * logs that once at warning, and looks again every minute; it is never fatal.
 */
import * as k8s from '@kubernetes/client-node';
import type { Logger } from '../log/logger.js';
import type { ExternalPeer } from '../mesh/types.js';
import { Poller, StateReporter } from '../util/backoff.js';
import { describeApiError, httpStatus, isNotFound } from './api-errors.js';
import { INFORMER_START_TIMEOUT_MS, RestartingInformer } from './informer.js';
import { PEER_API_PATH, PEER_GROUP, PEER_PLURAL, PEER_VERSION, translateExternalPeers } from './kilo-peer.js';
import type { Source, SourceHandler } from './source.js';

/** Discovers external peers. */
export type ExternalPeerSource = Source<ExternalPeer>;

/** The warning for a failing Peer list or watch (a hint for 403, which means missing RBAC rules). */
export function peerFailureMessage(what: string, err: unknown): string {
  const why = describeApiError(err);
  if (httpStatus(err) === 403) {
    return `${what}: listing ${PEER_GROUP} Peers is forbidden (${why}): give wg-overlay's ClusterRole the verbs list and watch on peers.${PEER_GROUP} `
      + '(see /usr/share/wg-overlay/kubernetes/rbac.yaml); retrying with backoff, the last known Peers stay';
  }
  return `${what}: listing ${PEER_GROUP} Peers failed (${why}); retrying with backoff, the last known Peers stay`;
}

/** The warning for a missing Peer CRD. */
function absentMessage(retryMs: number | undefined): string {
  return `Peer resources (${PEER_GROUP}/${PEER_VERSION}) are not served by the API server: the Peer CRD is not installed, so no external Peers are added; `
    + `install it with \`kubectl apply -f /usr/share/wg-overlay/kubernetes/crd-peer.yaml\`${retryMs === undefined ? '' : ` (looking again every ${Math.round(retryMs / 1000)} s)`}`;
}

/** Lists the Peer collection once. */
async function listPeerObjects(kc: k8s.KubeConfig): Promise<k8s.KubernetesListObject<k8s.KubernetesObject>> {
  const api = kc.makeApiClient(k8s.CustomObjectsApi);
  const list = await api.listClusterCustomObject({ group: PEER_GROUP, version: PEER_VERSION, plural: PEER_PLURAL }) as k8s.KubernetesListObject<k8s.KubernetesObject>;
  return { ...list, items: Array.isArray(list?.items) ? list.items : [] };
}

/** Watches Peers with client-node's informer (kept alive by RestartingInformer; slowly while the CRD is missing). */
export class WatchExternalPeerSource implements ExternalPeerSource {
  private informer: RestartingInformer<k8s.KubernetesObject> | undefined;
  private readonly reporter = new StateReporter();

  /**
   * `absentRetryMs`: how often to look for the CRD again while it is missing; `startTimeoutMs`:
   * how long a (re)start may hang before it is given up and a fresh informer is started.
   */
  constructor(private readonly kc: k8s.KubeConfig, private readonly log: Logger, private readonly absentRetryMs = 60_000, private readonly startTimeoutMs = INFORMER_START_TIMEOUT_MS) {}

  start(handler: SourceHandler<ExternalPeer>): void {
    this.informer = new RestartingInformer(this.kc, PEER_API_PATH, () => listPeerObjects(this.kc), this.log, 'peer watch', this.startTimeoutMs);
    this.informer.start({
      onList: (items) => handler.onList(translateExternalPeers(items)),
      onUp: () => {
        if (this.reporter.changed('state', 'up')) this.log.info(`peer watch: watching ${PEER_GROUP} Peers`);
        handler.onState('up');
      },
      onError: (err) => {
        if (isNotFound(err)) {
          if (this.reporter.changed('state', 'absent')) this.log.warning(absentMessage(this.absentRetryMs));
          handler.onState('absent', err);
          handler.onList([]);
          return this.absentRetryMs;
        }
        if (this.reporter.changed('state', `down:${describeApiError(err)}`)) this.log.warning(peerFailureMessage('peer watch', err));
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
export class ListExternalPeerSource implements ExternalPeerSource {
  private poller: Poller | undefined;
  private readonly reporter = new StateReporter();

  constructor(private readonly kc: k8s.KubeConfig, private readonly log: Logger, private readonly intervalMs: number) {}

  start(handler: SourceHandler<ExternalPeer>): void {
    this.poller = new Poller(this.intervalMs, async () => {
      try {
        const { peers, absent } = await listExternalPeers(this.kc);
        if (absent) {
          if (this.reporter.changed('state', 'absent')) this.log.warning(absentMessage(undefined));
          handler.onState('absent');
        } else {
          if (this.reporter.changed('state', 'up')) this.log.info(`peer list: listing ${PEER_GROUP} Peers every ${Math.round(this.intervalMs / 1000)} s`);
          handler.onState('up');
        }
        handler.onList(peers);
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
export async function listExternalPeers(kc: k8s.KubeConfig): Promise<{ peers: ExternalPeer[]; absent: boolean }> {
  try {
    return { peers: translateExternalPeers((await listPeerObjects(kc)).items), absent: false };
  } catch (err) {
    if (isNotFound(err)) return { peers: [], absent: true };
    throw new Error(`listing ${PEER_GROUP} Peers: ${describeApiError(err)}`, { cause: err });
  }
}
