/**
 * Discovery of external peers (Kilo's `Peer` custom resources): the generic sources (`source.ts`)
 * configured for them, every change reporting the whole (short) list, and a one-shot list for the
 * operator commands. External peers are optional: when the CRD is not installed the source
 * reports an empty list, logs that once at warning, and looks again every minute (watched) or at
 * every list; it is never fatal.
 */
import type * as k8s from '@kubernetes/client-node';
import type { Logger } from '../log/logger.js';
import type { ExternalPeer } from '../mesh/types.js';
import { StateReporter } from '../util/backoff.js';
import { describeApiError, httpStatus, isNotFound } from './api-errors.js';
import { getJson, watchStream } from './api-http.js';
import {
  EXTERNAL_PEER_API_PATH,
  EXTERNAL_PEER_GROUP,
  EXTERNAL_PEER_VERSION,
  toExternalPeer,
  type ExternalPeerObject,
} from './external-peer-translate.js';
import { listPages, type ListPage, type ReflectorApi } from './reflector.js';
import { openSource, type Discovery, type Source, type SourceState, type StateLog } from './source.js';

/** Discovers external peers. */
export type ExternalPeerSource = Source<ExternalPeer>;

/** The warning for a failing list or watch of external peers (a hint for 403, which means missing RBAC rules). */
function failureMessage(what: string, err: unknown): string {
  const why = describeApiError(err);
  if (httpStatus(err) === 403) {
    return (
      `${what}: listing ${EXTERNAL_PEER_GROUP} Peers is forbidden (${why}): ` +
      `give wg-overlay's ClusterRole the verbs list and watch on peers.${EXTERNAL_PEER_GROUP} ` +
      '(see /usr/share/wg-overlay/kubernetes/rbac.yaml); retrying with backoff, the last known Peers stay'
    );
  }
  return `${what}: listing ${EXTERNAL_PEER_GROUP} Peers failed (${why}); retrying with backoff, the last known Peers stay`;
}

/** The warning for a missing external-peer CRD. */
function absentMessage(retryMs: number | undefined): string {
  const again = retryMs === undefined ? '' : ` (looking again every ${Math.round(retryMs / 1000)} s)`;
  return (
    `Peer resources (${EXTERNAL_PEER_GROUP}/${EXTERNAL_PEER_VERSION}) are not served by the API server: ` +
    'the Peer CRD is not installed, so no external Peers are added; ' +
    `install it with \`kubectl apply -f /usr/share/wg-overlay/kubernetes/crd-peer.yaml\`${again}`
  );
}

/** The external-peer collection over plain HTTP(S) with the kubeconfig's credentials. */
export function externalPeersApi(kc: k8s.KubeConfig, timeoutMs = 30_000): ReflectorApi {
  return {
    list: async (query) => (await getJson(kc, EXTERNAL_PEER_API_PATH, query, timeoutMs)) as ListPage,
    watch: (query, onEvent, onEnd, onOpen) =>
      watchStream(kc, EXTERNAL_PEER_API_PATH, query, { onEvent, onEnd, onOpen }),
  };
}

const translate = (raw: unknown): ExternalPeer | undefined => toExternalPeer(raw as ExternalPeerObject);

/** Logs external-peer discovery once per change of state (each distinct failure once). */
class ExternalPeerStateLog implements StateLog {
  private readonly reporter = new StateReporter();

  /** `upWords`: what the source does while up; `absentRetryMs`: named in the absent warning, when set. */
  constructor(
    private readonly log: Logger,
    private readonly what: string,
    private readonly upWords: string,
    private readonly absentRetryMs: number | undefined,
  ) {}

  record(state: SourceState, error?: unknown): void {
    if (!this.reporter.changed('state', state === 'down' ? `down:${describeApiError(error)}` : state)) return;
    if (state === 'up') this.log.info(`${this.what}: ${this.upWords}`);
    else if (state === 'absent') this.log.warning(absentMessage(this.absentRetryMs));
    else this.log.warning(failureMessage(this.what, error));
  }
}

/**
 * Discovers external peers as `discovery` says ("peer watch" or "peer list" in the log);
 * `absentRetryMs`: how often the watch looks for the CRD again while it is missing.
 */
export function externalPeerSource(
  api: ReflectorApi,
  log: Logger,
  discovery: Discovery,
  absentRetryMs = 60_000,
): ExternalPeerSource {
  const what = `peer ${discovery.mode}`;
  const upWords =
    discovery.mode === 'watch'
      ? `watching ${EXTERNAL_PEER_GROUP} Peers`
      : `listing ${EXTERNAL_PEER_GROUP} Peers every ${Math.round(discovery.intervalMs / 1000)} s`;
  const states = new ExternalPeerStateLog(log, what, upWords, discovery.mode === 'watch' ? absentRetryMs : undefined);
  return openSource(discovery, { api, log, what, translate, states, changes: 'list', optional: true, absentRetryMs });
}

/** Lists external peers once (for the CLI); an empty list with `absent: true` when the CRD is not installed. */
export async function listExternalPeers(
  api: ReflectorApi,
): Promise<{ externalPeers: ExternalPeer[]; absent: boolean }> {
  try {
    return { externalPeers: (await listPages(api.list, translate, 500)).items, absent: false };
  } catch (err) {
    if (isNotFound(err)) return { externalPeers: [], absent: true };
    throw new Error(`listing ${EXTERNAL_PEER_GROUP} Peers: ${describeApiError(err)}`, { cause: err });
  }
}
