/*
 * KubeApiServer: a wire-compatible Kubernetes API server for tests, because no real
 * kube-apiserver can run on the test machines. It speaks real HTTP/1.1 (or HTTPS with a
 * throwaway openssl CA), maps bearer tokens to users (and mints service-account tokens like the
 * TokenRequest API), serves discovery for kubectl, enforces ValidatingAdmissionPolicies with a real
 * CEL evaluator when asked to, and implements
 * list (selectors, pagination, resourceVersion semantics), chunked watch streams (history
 * replay, 410 Expired as an ERROR event, bookmarks, timeoutSeconds), get/create/update/
 * patch/delete with Status errors, the status subresource and server-side Tables, for Nodes
 * and any resource type registered with `registerResource`. Tests drive it directly through
 * helpers (createNode, expireHistory, ...) and break it on purpose (failNext, dropWatches,
 * setWatchEnabled).
 *
 * This class is the facade; the work is done by the modules it delegates to (see README.md).
 */
import { writeFile } from 'node:fs/promises';
import type { MintedToken, UserInfo } from './auth.js';
import type { FailOptions } from './faults.js';
import { closeWatches } from './handlers/watch.js';
import { createServiceAccountToken, type ServiceAccountTokenOptions } from './handlers/token-request.js';
import type { RequestRecord } from './http/context.js';
import { handleRequest } from './http/handler.js';
import { close, listen, type Listener } from './http/listener.js';
import { kubeconfigFor, type KubeconfigOptions } from './kubeconfig.js';
import { resolveOptions, type KubeApiServerOptions } from './options.js';
import type { KubeObject, ResourceDefinition } from './registry.js';
import type { PatchType, ResourceHandle } from './resource.js';
import { ServerState } from './state.js';
import type { ObjectStore } from './store.js';

/** A Kubernetes API server for tests, speaking the real wire protocol over HTTP(S). */
export class KubeApiServer {
  /** The object store (resourceVersions, history); exposed for tests that need to look inside. */
  readonly store: ObjectStore;
  /** Every request received, oldest first (the last 2000). */
  readonly requests: RequestRecord[];
  /** PEM of the CA that signed the server certificate (after start, with TLS). */
  caPem?: string;
  /** Path of a file holding `caPem` (after start, with TLS; removed by stop). */
  caFile?: string;
  /** Base URL such as `https://127.0.0.1:34567` (after start). */
  url?: string;

  private readonly state: ServerState;
  private listener?: Listener;

  constructor(opts: KubeApiServerOptions = {}) {
    this.state = new ServerState(resolveOptions(opts));
    this.store = this.state.store;
    this.requests = this.state.requests;
  }

  /** Accepts `token` as the credential of `user` from now on (until `expiresAt`, ms since the epoch). */
  addToken(token: string, user: UserInfo, opts: { expiresAt?: number } = {}): void {
    this.state.tokens.add(token, user, opts);
  }

  /** Stops accepting `token` (its requests get 401 from now on); false if it was not accepted. */
  revokeToken(token: string): boolean {
    return this.state.tokens.revoke(token);
  }

  /**
   * Mints a token of ServiceAccount `namespace/name` the way TokenRequest does and accepts it:
   * bound to a Node (`boundNode`), its user carries `authentication.kubernetes.io/node-name` and
   * `node-uid` and it stops working when that Node is deleted. Unlike the wire API, any lifetime
   * is allowed (tests of expiry). The ServiceAccount object need not exist.
   */
  createServiceAccountToken(opts: ServiceAccountTokenOptions): MintedToken {
    return createServiceAccountToken(this.state, opts);
  }

  /** Creates objects of any served type (e.g. the documents of a manifest), in order, without admission; returns them as stored. */
  createObjects(objs: KubeObject[]): KubeObject[] {
    return objs.map((o) => this.state.handleFor(o).create(o));
  }

  /** Listens (generating TLS material first when enabled) and resolves with the base URL. */
  async start(): Promise<{ url: string }> {
    if (this.listener) throw new Error('KubeApiServer already started');
    const l = await listen(this.state.opts, (req, res) => void handleRequest(this.state, req, res));
    this.listener = l;
    if (l.tls) {
      this.caPem = l.tls.caPem;
      this.caFile = l.tls.caFile;
    }
    this.url = this.state.url = l.url;
    return { url: l.url };
  }

  /** Ends every watch stream, closes every connection and the listener, and removes the TLS files. */
  async stop(): Promise<void> {
    const l = this.listener;
    this.listener = undefined;
    closeWatches(this.state.watches, true);
    if (l) await close(l);
  }

  /** Serves a new resource type (like creating a CRD) and returns its handle; Nodes are registered already. */
  registerResource(def: ResourceDefinition): ResourceHandle {
    return this.state.registerResource(def);
  }

  /** The handle (create/get/update/patch/delete/list with API semantics) of a registered resource type. */
  resource(plural: string, group = ''): ResourceHandle {
    return this.state.resource(plural, group);
  }

  /** Creates a Node (status included, as kubelet registers it) and returns it as stored. */
  createNode(obj: KubeObject): KubeObject {
    return this.state.nodes.create(obj);
  }

  /** The Node named `name`, or undefined. */
  getNode(name: string): KubeObject | undefined {
    return this.state.nodes.get(name);
  }

  /** Replaces a whole Node including status (409 if metadata.resourceVersion is set and stale). */
  updateNode(obj: KubeObject): KubeObject {
    return this.state.nodes.update(obj, { scope: 'all' });
  }

  /** Patches a Node, status included (merge patch unless `type` says otherwise), and returns it. */
  patchNode(name: string, patch: unknown, type: PatchType = 'merge'): KubeObject {
    return this.state.nodes.patch(name, type, patch, { scope: 'all' });
  }

  /** Deletes a Node (only marks it while finalizers remain) and returns its last state, or undefined if there was none. */
  deleteNode(name: string): KubeObject | undefined {
    if (!this.state.nodes.get(name)) return undefined;
    return this.state.nodes.delete(name);
  }

  /** All Nodes, sorted by name. */
  listNodes(): KubeObject[] {
    return this.state.nodes.list();
  }

  /** The current (latest) resourceVersion as a string. */
  get resourceVersion(): string {
    return String(this.store.rv);
  }

  /** Number of watch streams currently open. */
  get watchCount(): number {
    return this.state.watches.size;
  }

  /** Compacts the history: every resourceVersion handed out so far is now too old (watch → ERROR 410, exact list → 410). */
  expireHistory(): void {
    this.store.expire();
  }

  /** Makes the next `n` requests (that `opts.match` accepts) fail with `status` and a Status body. */
  failNext(n: number, status = 500, opts: FailOptions = {}): void {
    this.state.faults.failNext(n, status, opts);
  }

  /** Turns watch support on or off; while off, watch requests get 405 MethodNotAllowed. */
  setWatchEnabled(enabled: boolean): void {
    this.state.faults.watchEnabled = enabled;
  }

  /** Closes every open watch stream: abruptly (connection reset, default) or gracefully (normal end of stream); returns how many. */
  dropWatches(opts: { graceful?: boolean } = {}): number {
    return closeWatches(this.state.watches, opts.graceful ?? false);
  }

  /** A kubeconfig (as an object) pointing at this server with its CA and token. */
  kubeconfig(opts: KubeconfigOptions = {}): Record<string, unknown> {
    if (!this.url) throw new Error('KubeApiServer not started');
    return kubeconfigFor({ url: this.url, caPem: this.caPem, defaultToken: this.state.opts.token }, opts);
  }

  /** Writes `kubeconfig()` as JSON (valid kubeconfig YAML) to `path`, mode 0600, for kubectl and KubeConfig.loadFromFile. */
  async writeKubeconfig(path: string, opts: KubeconfigOptions = {}): Promise<void> {
    await writeFile(path, JSON.stringify(this.kubeconfig(opts), null, 2) + '\n', { mode: 0o600 });
  }
}

/** Re-exported so tests need one import: options, request records and fault injection (see options.ts, faults.ts). */
export type { KubeApiServerOptions } from './options.js';
export type { RequestRecord } from './http/context.js';
export type { FailOptions, RequestInfo } from './faults.js';
export type { KubeconfigOptions } from './kubeconfig.js';
export type { ServiceAccountTokenOptions } from './handlers/token-request.js';
/** Re-exported Status errors (see status.ts). */
export { ApiError, statusBody } from './status.js';
/** Re-exported resource definitions and types (see registry.ts). */
export {
  KILO_PEER_RESOURCE,
  LEASE_RESOURCE,
  NODE_RESOURCE,
  SERVICE_ACCOUNT_RESOURCE,
  type KubeObject,
  type ResourceDefinition,
} from './registry.js';
/** Re-exported users and token helpers (see auth.ts). */
export {
  ADMIN_USER,
  EXTRA_CREDENTIAL_ID,
  EXTRA_NODE_NAME,
  EXTRA_NODE_UID,
  type MintedToken,
  type UserInfo,
} from './auth.js';
/** Re-exported admission evaluation (see admission.ts). */
export { validatingAdmission, type AdmissionRequest, type AdmissionResult, type PolicyDecision } from './admission.js';
/** Re-exported handle type returned by `registerResource` and `resource` (see resource.ts). */
export type { ResourceHandle, PatchType } from './resource.js';
