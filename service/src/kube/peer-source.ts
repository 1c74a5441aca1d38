/**
 * Discovery of external peers (Kilo's `Peer` custom resources): a list-and-watch loop, a list on
 * an interval, and a one-shot list for the operator commands.
 * External peers are optional: when the CRD is not installed the source reports an empty list,
 * logs that once at warning, and looks again every minute; it is never fatal.
 */
import type * as k8s from '@kubernetes/client-node';
import type { Logger } from '../log/logger.js';
import type { ExternalPeer } from '../mesh/types.js';
import { Poller, StateReporter } from '../util/backoff.js';
import { describeApiError, httpStatus, isNotFound } from './api-errors.js';
import { getJson, watchStream } from './api-http.js';
import { PEER_API_PATH, PEER_GROUP, PEER_VERSION, translateExternalPeers } from './kilo-peer.js';
import { listPages, Reflector, type ListPage, type ReflectorApi } from './reflector.js';
import type { Source, SourceHandler } from './source.js';

/** Discovers external peers. */
export type ExternalPeerSource = Source<ExternalPeer>;

/** The warning for a failing Peer list or watch (a hint for 403, which means missing RBAC rules). */
export function peerFailureMessage(what: string, err: unknown): string {
  const why = describeApiError(err);
  if (httpStatus(err) === 403) {
    return (
      `${what}: listing ${PEER_GROUP} Peers is forbidden (${why}): give wg-overlay's ClusterRole the verbs list and watch on peers.${PEER_GROUP} ` +
      '(see /usr/share/wg-overlay/kubernetes/rbac.yaml); retrying with backoff, the last known Peers stay'
    );
  }
  return `${what}: listing ${PEER_GROUP} Peers failed (${why}); retrying with backoff, the last known Peers stay`;
}

/** The warning for a missing Peer CRD. */
function absentMessage(retryMs: number | undefined): string {
  return (
    `Peer resources (${PEER_GROUP}/${PEER_VERSION}) are not served by the API server: the Peer CRD is not installed, so no external Peers are added; ` +
    `install it with \`kubectl apply -f /usr/share/wg-overlay/kubernetes/crd-peer.yaml\`${retryMs === undefined ? '' : ` (looking again every ${Math.round(retryMs / 1000)} s)`}`
  );
}

/** The Peer collection over plain HTTP(S) with the kubeconfig's credentials. */
export function peersApi(kc: k8s.KubeConfig, timeoutMs = 30_000): ReflectorApi {
  return {
    list: async (query) => (await getJson(kc, PEER_API_PATH, query, timeoutMs)) as ListPage,
    watch: (query, onEvent, onEnd, onOpen) => watchStream(kc, PEER_API_PATH, query, { onEvent, onEnd, onOpen }),
  };
}

const translate = (raw: unknown): ExternalPeer | undefined => translateExternalPeers([raw])[0];

/** Watches Peers (slowly while the CRD is missing); every change reports the whole (short) list. */
export class WatchExternalPeerSource implements ExternalPeerSource {
  private reflector: Reflector<ExternalPeer> | undefined;
  private readonly reporter = new StateReporter();
  private readonly peers = new Map<string, ExternalPeer>();

  /** `absentRetryMs`: how often to look for the CRD again while it is missing. */
  constructor(
    private readonly api: ReflectorApi,
    private readonly log: Logger,
    private readonly absentRetryMs = 60_000,
  ) {}

  start(handler: SourceHandler<ExternalPeer>): void {
    this.reflector = new Reflector<ExternalPeer>({ api: this.api, translate, log: this.log, what: 'peer watch' });
    const all = (): ExternalPeer[] => [...this.peers.values()];
    this.reflector.start({
      onList: (items) => {
        this.peers.clear();
        for (const p of items) this.peers.set(p.name, p);
        handler.onList(all());
      },
      onChange: (name, item) => {
        if (item) this.peers.set(name, item);
        else this.peers.delete(name);
        handler.onList(all());
      },
      onUp: () => {
        if (this.reporter.changed('state', 'up')) this.log.info(`peer watch: watching ${PEER_GROUP} Peers`);
        handler.onState('up');
      },
      onError: (err) => {
        if (isNotFound(err)) {
          if (this.reporter.changed('state', 'absent')) this.log.warning(absentMessage(this.absentRetryMs));
          handler.onState('absent', err);
          this.peers.clear();
          handler.onList([]);
          return this.absentRetryMs;
        }
        if (this.reporter.changed('state', `down:${describeApiError(err)}`))
          this.log.warning(peerFailureMessage('peer watch', err));
        handler.onState('down', err);
        return undefined;
      },
    });
  }

  async stop(): Promise<void> {
    this.reflector?.stop();
  }
}

/** Lists Peers every `intervalMs` (with `discovery = list`, for API endpoints that cannot watch). */
export class ListExternalPeerSource implements ExternalPeerSource {
  private poller: Poller | undefined;
  private readonly reporter = new StateReporter();

  constructor(
    private readonly api: ReflectorApi,
    private readonly log: Logger,
    private readonly intervalMs: number,
  ) {}

  start(handler: SourceHandler<ExternalPeer>): void {
    this.poller = new Poller(this.intervalMs, async () => {
      try {
        const { peers, absent } = await listExternalPeers(this.api);
        if (absent) {
          if (this.reporter.changed('state', 'absent')) this.log.warning(absentMessage(undefined));
          handler.onState('absent');
        } else {
          if (this.reporter.changed('state', 'up'))
            this.log.info(`peer list: listing ${PEER_GROUP} Peers every ${Math.round(this.intervalMs / 1000)} s`);
          handler.onState('up');
        }
        handler.onList(peers);
      } catch (err) {
        const cause = (err as { cause?: unknown }).cause ?? err;
        if (this.reporter.changed('state', `down:${describeApiError(cause)}`))
          this.log.warning(peerFailureMessage('peer list', cause));
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

/** Lists Peers once (for the CLI and the list mode); an empty list with `absent: true` when the CRD is not installed. */
export async function listExternalPeers(api: ReflectorApi): Promise<{ peers: ExternalPeer[]; absent: boolean }> {
  try {
    return { peers: (await listPages(api.list, translate, 500)).items, absent: false };
  } catch (err) {
    if (isNotFound(err)) return { peers: [], absent: true };
    throw new Error(`listing ${PEER_GROUP} Peers: ${describeApiError(err)}`, { cause: err });
  }
}
