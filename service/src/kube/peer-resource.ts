/**
 * Writing one external peer, Kilo's `Peer` resource, for `wg-overlay connect`: find it by name,
 * create it, replace its spec and delete it (only the object this host holds, by uid), with every
 * failure worded for the admin — a 403 names the RBAC verb that is missing and the manifest that
 * grants it, a 404 the Peer CRD that is not installed.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { describeApiError, httpStatus } from './api-errors.js';
import { getJson, sendJson } from './api-http.js';
import { EXTERNAL_PEER_API_PATH, EXTERNAL_PEER_GROUP, EXTERNAL_PEER_VERSION } from './external-peer-translate.js';

/** The label on the Peers `connect` creates. */
export const CONNECT_LABEL = 'app.kubernetes.io/managed-by';
/** Its value. */
export const CONNECT_LABEL_VALUE = 'wg-overlay-connect';
/** Where the manifest granting what `connect` needs is installed. */
export const CONNECT_RBAC = '/usr/share/wg-overlay/kubernetes/connect-rbac.yaml';
/** Where the Peer CRD is installed. */
export const PEER_CRD = '/usr/share/wg-overlay/kubernetes/crd-peer.yaml';

/** A Peer as `connect` reads and writes it. */
export interface PeerObject {
  apiVersion: string;
  kind: 'Peer';
  metadata: {
    name: string;
    uid?: string;
    resourceVersion?: string;
    creationTimestamp?: string;
    labels?: Record<string, string>;
  };
  spec: { allowedIPs?: unknown; publicKey?: unknown; persistentKeepalive?: unknown; [key: string]: unknown };
}

/** What `connect` puts in its Peer's spec. */
export interface PeerSpec {
  allowedIPs: string[];
  publicKey: string;
  persistentKeepalive: number;
}

/** What was asked of the API server, for the messages. */
export type PeerVerb = 'list' | 'create' | 'update' | 'delete';

/** A failed request about a Peer, worded for the admin (missing RBAC verb, missing CRD, the server's reason). */
export class PeerRequestError extends Error {
  constructor(
    readonly verb: PeerVerb,
    readonly status: number | undefined,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PeerRequestError';
  }
}

const RESOURCE = `peers.${EXTERNAL_PEER_GROUP}`;

/** What to do about a 403: the RBAC verb that is missing on a resource, and the manifest that grants it. */
export function forbiddenHint(verb: string, resource: string): string {
  return (
    `the kubeconfig's user lacks the RBAC verb "${verb}" on ${resource}; grant what connect needs with ` +
    `${CONNECT_RBAC}: kubectl apply -f ${CONNECT_RBAC} && kubectl create clusterrolebinding ` +
    'wg-overlay-connect-USER --clusterrole=wg-overlay-connect --user=USER (with granularity = location also: ' +
    'kubectl -n wg-overlay create rolebinding wg-overlay-connect-USER --role=wg-overlay-connect-leases --user=USER)'
  );
}

/** The message of a failed request: what was asked, the server's answer, and what to do about a 403 or 404. */
export function peerRequestMessage(verb: PeerVerb, name: string, err: unknown): string {
  const status = httpStatus(err);
  const what = verb === 'list' ? `listing ${RESOURCE}` : `${verb.replace(/e$/, '')}ing Peer ${name}`;
  const why = describeApiError(err);
  if (status === 403) return `${what}: forbidden (${why}): ${forbiddenHint(verb, RESOURCE)}`;
  if (status === 404 && verb !== 'delete')
    return (
      `${what}: the Peer resource (${EXTERNAL_PEER_GROUP}/${EXTERNAL_PEER_VERSION}) is not served by the API ` +
      `server: the Peer CRD is not installed; install it with kubectl apply -f ${PEER_CRD}`
    );
  return `${what}: ${why}`;
}

/** Runs one request, turning its failure into a PeerRequestError. */
async function request<T>(verb: PeerVerb, name: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new PeerRequestError(verb, httpStatus(err), peerRequestMessage(verb, name, err), { cause: err });
  }
}

/** The object `connect` writes for its Peer (`current`: the one it replaces). */
export function peerObject(name: string, spec: PeerSpec, current?: PeerObject): PeerObject {
  return {
    apiVersion: `${EXTERNAL_PEER_GROUP}/${EXTERNAL_PEER_VERSION}`,
    kind: 'Peer',
    metadata: {
      name,
      labels: { ...(current?.metadata.labels ?? {}), [CONNECT_LABEL]: CONNECT_LABEL_VALUE },
      ...(current?.metadata.resourceVersion ? { resourceVersion: current.metadata.resourceVersion } : {}),
    },
    spec: { ...(current?.spec ?? {}), ...spec },
  };
}

/** The Peers of one cluster, as `connect` reaches them. */
export interface PeerClient {
  /** The Peer of that name, or undefined; throws a PeerRequestError (404: the CRD is not installed). */
  find(name: string): Promise<PeerObject | undefined>;
  create(obj: PeerObject): Promise<PeerObject>;
  /** Replaces a Peer; a 409 means it changed since it was read. */
  replace(obj: PeerObject): Promise<PeerObject>;
  /** Deletes the Peer with this uid (a Peer of the same name made since by someone else stays); gone already is fine. */
  remove(name: string, uid: string | undefined): Promise<void>;
}

/** The Peers over HTTP(S) with the kubeconfig's credentials. */
export function peerClient(kc: KubeConfig, timeoutMs = 10_000): PeerClient {
  const one = (name: string): string => `${EXTERNAL_PEER_API_PATH}/${encodeURIComponent(name)}`;
  return {
    find: (name) =>
      request('list', name, async () => {
        const page = (await getJson(
          kc,
          EXTERNAL_PEER_API_PATH,
          { fieldSelector: `metadata.name=${name}` },
          timeoutMs,
        )) as {
          items?: PeerObject[];
        };
        return (page.items ?? []).find((p) => p?.metadata?.name === name);
      }),
    create: (obj) =>
      request(
        'create',
        obj.metadata.name,
        async () =>
          (await sendJson(kc, EXTERNAL_PEER_API_PATH, { method: 'POST', body: obj }, timeoutMs)) as PeerObject,
      ),
    replace: (obj) =>
      request(
        'update',
        obj.metadata.name,
        async () => (await sendJson(kc, one(obj.metadata.name), { method: 'PUT', body: obj }, timeoutMs)) as PeerObject,
      ),
    remove: (name, uid) =>
      request('delete', name, async () => {
        const body = { apiVersion: 'v1', kind: 'DeleteOptions', ...(uid ? { preconditions: { uid } } : {}) };
        try {
          await sendJson(kc, one(name), { method: 'DELETE', body }, timeoutMs);
        } catch (err) {
          // Gone already, or replaced by someone else's Peer of the same name: nothing of ours is left.
          if (httpStatus(err) !== 404 && httpStatus(err) !== 409) throw err;
        }
      }),
  };
}
