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
 */
import { writeFile, rm } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import {
  validatingAdmission,
  VALIDATING_ADMISSION_POLICY_BINDING_RESOURCE,
  VALIDATING_ADMISSION_POLICY_RESOURCE,
  type Operation,
} from './admission.js';
import {
  ADMIN_USER,
  ANONYMOUS_USER,
  EXTRA_CREDENTIAL_ID,
  mintServiceAccountToken,
  TokenTable,
  type MintedToken,
  type TokenBinding,
  type UserInfo,
} from './auth.js';
import { clone, isObject } from './json.js';
import {
  apiGroup,
  apiResourceList,
  LEASE_RESOURCE,
  NODE_RESOURCE,
  resolveResource,
  SERVICE_ACCOUNT_RESOURCE,
  toTable,
  type IncludeObject,
  type KubeObject,
  type Resource,
  type ResourceDefinition,
} from './registry.js';
import { decodeTokenRequest, PROTOBUF_MEDIA_TYPE } from './protobuf.js';
import { ResourceHandle, type ListOptions, type PatchType } from './resource.js';
import { ObjectStore, type StoreEvent } from './store.js';
import { ApiError, badRequest, methodNotAllowed, pathNotFound, reasonForCode } from './status.js';
import { generateTls } from './tls.js';

/** Constructor options of KubeApiServer. */
export interface KubeApiServerOptions {
  /** Require `Authorization: Bearer <token>` on every request but /version and the health checks; this token is a cluster admin. */
  token?: string;
  /** More bearer tokens, each the credential of a user (name, groups, extra); also turns authentication on. */
  users?: Record<string, UserInfo>;
  /** Serve admissionregistration.k8s.io/v1 ValidatingAdmissionPolicies and their bindings, and enforce them on writes (default false). */
  admission?: boolean;
  /** Serve core/v1 ServiceAccounts and their `token` subresource (TokenRequest, e.g. `kubectl create token`) (default false). */
  serviceAccounts?: boolean;
  /** Serve HTTPS with a generated CA (default true). */
  tls?: boolean;
  /** Listen address (default 127.0.0.1); any local address, e.g. a bridge address in a network namespace. */
  host?: string;
  /** Listen port (default 0: ephemeral). */
  port?: number;
  /** How many events the history keeps before older resourceVersions expire (default 10000). */
  historyLimit?: number;
  /** Extra subjectAltNames (IPs or DNS names) for the server certificate. */
  sans?: string[];
  /** Interval of BOOKMARK events on watches that ask for them (default 60000 ms). */
  bookmarkIntervalMs?: number;
  /** Answer `Accept: ...;as=Table` with a server-side Table (default true); false sends plain JSON like an old server. */
  tables?: boolean;
}

/** One request as the server saw it (kept in `requests` for assertions). */
export interface RequestRecord {
  method: string;
  path: string;
  query: string;
  contentType?: string;
  accept?: string;
  userAgent?: string;
  status?: number;
  /** The authenticated user's name. */
  user?: string;
  /** The credential's id (`JTI=…` for service-account tokens), when the user has one. */
  credentialId?: string;
}

/** What a `failNext` filter sees of a request. */
export interface RequestInfo {
  method: string;
  path: string;
  query: URLSearchParams;
  watch: boolean;
}

/** Options of `failNext`. */
export interface FailOptions {
  /** Status message (default: `injected failure (<code>)`). */
  message?: string;
  /** Only requests for which this returns true consume the failure (default: every request). */
  match?: (req: RequestInfo) => boolean;
  /** Send a Retry-After header (client-go then retries 429/5xx by itself). */
  retryAfterSeconds?: number;
}

interface Failure extends FailOptions {
  remaining: number;
  status: number;
}

interface Negotiated {
  table?: { version: string };
  partialMetadata?: { version: string; list: boolean };
}

const PUBLIC_PATHS = new Set(['/version', '/healthz', '/livez', '/readyz']);
const MAX_BODY = 3 * 1024 * 1024;

function parseAccept(accept: string | undefined): Negotiated {
  if (!accept) return {};
  for (const range of accept.split(',')) {
    const [type, ...params] = range.split(';').map((s) => s.trim());
    const p: Record<string, string> = {};
    for (const kv of params) {
      const i = kv.indexOf('=');
      if (i > 0) p[kv.slice(0, i).trim()] = kv.slice(i + 1).trim();
    }
    if (type === 'application/json' || type === 'application/yaml') {
      if (!p.as) return {};
      if (p.as === 'Table' && p.g === 'meta.k8s.io' && (p.v === 'v1' || p.v === 'v1beta1'))
        return { table: { version: p.v } };
      if (
        (p.as === 'PartialObjectMetadata' || p.as === 'PartialObjectMetadataList') &&
        p.g === 'meta.k8s.io' &&
        (p.v === 'v1' || p.v === 'v1beta1')
      ) {
        return { partialMetadata: { version: p.v, list: p.as === 'PartialObjectMetadataList' } };
      }
      continue;
    }
    if (type === '*/*' || type === 'application/*') return {};
  }
  return {};
}

function objectKey(o: KubeObject): string {
  const m = o.metadata ?? {};
  return m.namespace ? `${m.namespace}/${m.name ?? ''}` : (m.name ?? '');
}

function parseRv(s: string): number {
  if (!/^[0-9]+$/.test(s)) throw badRequest(`resourceVersion: Invalid value: "${s}": must be a non-negative integer`);
  return Number(s);
}

function isTrue(v: string | null): boolean {
  return v === 'true' || v === '1';
}

/** A watch stream open on one response. */
class WatchStream {
  private timers: NodeJS.Timeout[] = [];
  private unsubscribe?: () => void;
  private columnsSent = false;
  closed = false;

  constructor(
    readonly res: http.ServerResponse,
    private readonly r: Resource,
    private readonly format: Negotiated,
    private readonly includeObject: IncludeObject,
    private readonly onClose: (w: WatchStream) => void,
  ) {
    res.on('close', () => this.cleanup());
  }

  /** Writes one event line. */
  send(type: string, object: unknown): void {
    if (this.closed) return;
    let out = object;
    if (type !== 'ERROR' && type !== 'BOOKMARK' && isObject(object)) {
      if (this.format.table) {
        out = toTable(this.r, [object as KubeObject], {
          tableVersion: this.format.table.version,
          includeObject: this.includeObject,
          resourceVersion: (object as KubeObject).metadata?.resourceVersion ?? '',
          withColumns: !this.columnsSent,
        });
        this.columnsSent = true;
      } else if (this.format.partialMetadata) {
        out = {
          kind: 'PartialObjectMetadata',
          apiVersion: `meta.k8s.io/${this.format.partialMetadata.version}`,
          metadata: (object as KubeObject).metadata ?? {},
        };
      }
    }
    this.res.write(JSON.stringify({ type, object: out }) + '\n');
  }

  /** Attaches the store subscription and timers that keep the stream going. */
  attach(unsubscribe: () => void, timers: NodeJS.Timeout[]): void {
    this.unsubscribe = unsubscribe;
    this.timers = timers;
    if (this.closed) this.cleanup();
  }

  /** Ends the chunked response properly (the client sees a normal end of stream). */
  end(): void {
    if (!this.closed) this.res.end();
    this.cleanup();
  }

  /** Cuts the connection without ending the chunked body (the client sees a broken stream). */
  destroy(): void {
    this.res.socket?.destroy();
    this.res.destroy();
    this.cleanup();
  }

  private cleanup(): void {
    if (this.closed && !this.unsubscribe && this.timers.length === 0) return;
    this.closed = true;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    this.onClose(this);
  }
}

/** A Kubernetes API server for tests, speaking the real wire protocol over HTTP(S). */
export class KubeApiServer {
  /** The object store (resourceVersions, history); exposed for tests that need to look inside. */
  readonly store: ObjectStore;
  /** Every request received, oldest first (the last 2000). */
  readonly requests: RequestRecord[] = [];
  /** PEM of the CA that signed the server certificate (after start, with TLS). */
  caPem?: string;
  /** Path of a file holding `caPem` (after start, with TLS; removed by stop). */
  caFile?: string;
  /** Base URL such as `https://127.0.0.1:34567` (after start). */
  url?: string;

  private readonly opts: Required<
    Pick<KubeApiServerOptions, 'tls' | 'host' | 'port' | 'bookmarkIntervalMs' | 'tables'>
  > &
    KubeApiServerOptions;
  private readonly resources = new Map<string, Resource>();
  private readonly handles = new Map<string, ResourceHandle>();
  private readonly watches = new Set<WatchStream>();
  private readonly tokens = new TokenTable();
  private failures: Failure[] = [];
  private watchEnabled = true;
  private server?: http.Server;
  private tlsDir?: string;

  constructor(opts: KubeApiServerOptions = {}) {
    this.opts = { tls: true, host: '127.0.0.1', port: 0, bookmarkIntervalMs: 60000, tables: true, ...opts };
    this.store = new ObjectStore(opts.historyLimit ?? 10000);
    this.registerResource(NODE_RESOURCE);
    this.registerResource(LEASE_RESOURCE);
    if (opts.token !== undefined) this.tokens.add(opts.token, ADMIN_USER);
    for (const [token, user] of Object.entries(opts.users ?? {})) this.tokens.add(token, user);
    if (opts.admission) {
      this.registerResource(VALIDATING_ADMISSION_POLICY_RESOURCE);
      this.registerResource(VALIDATING_ADMISSION_POLICY_BINDING_RESOURCE);
    }
    if (opts.serviceAccounts) this.registerResource(SERVICE_ACCOUNT_RESOURCE);
  }

  /** Whether requests must carry a known bearer token (the server was made with `token` or `users`). */
  private get authRequired(): boolean {
    return this.opts.token !== undefined || this.opts.users !== undefined;
  }

  /** Accepts `token` as the credential of `user` from now on (until `expiresAt`, ms since the epoch). */
  addToken(token: string, user: UserInfo, opts: { expiresAt?: number } = {}): void {
    this.tokens.add(token, user, opts);
  }

  /** Stops accepting `token` (its requests get 401 from now on); false if it was not accepted. */
  revokeToken(token: string): boolean {
    return this.tokens.revoke(token);
  }

  /**
   * Mints a token of ServiceAccount `namespace/name` the way TokenRequest does and accepts it:
   * bound to a Node (`boundNode`), its user carries `authentication.kubernetes.io/node-name` and
   * `node-uid` and it stops working when that Node is deleted. Unlike the wire API, any lifetime
   * is allowed (tests of expiry). The ServiceAccount object need not exist.
   */
  createServiceAccountToken(opts: {
    namespace: string;
    name: string;
    boundNode?: string;
    expirationSeconds?: number;
    audiences?: string[];
  }): MintedToken {
    let bound: TokenBinding | undefined;
    if (opts.boundNode !== undefined) {
      const node = this.getNode(opts.boundNode);
      if (!node) throw new Error(`cannot bind a token to Node ${opts.boundNode}: no such Node`);
      bound = { kind: 'Node', name: opts.boundNode, uid: node.metadata?.uid ?? '' };
    }
    const sa = this.handles.get(SERVICE_ACCOUNT_RESOURCE_KEY)?.get(opts.name, opts.namespace);
    const spec = {
      namespace: opts.namespace,
      name: opts.name,
      ...(sa?.metadata?.uid ? { serviceAccountUid: sa.metadata.uid } : {}),
    };
    const minted = mintServiceAccountToken({
      ...spec,
      expirationSeconds: opts.expirationSeconds,
      audiences: opts.audiences,
      boundObject: bound,
    });
    this.tokens.add(minted.token, minted.user, { expiresAt: minted.expiresAt, bound });
    return minted;
  }

  /** Creates objects of any served type (e.g. the documents of a manifest), in order, without admission; returns them as stored. */
  createObjects(objs: KubeObject[]): KubeObject[] {
    return objs.map((o) => {
      const r = [...this.resources.values()].find((x) => x.apiVersion === o.apiVersion && x.kind === o.kind);
      if (!r) throw new Error(`${String(o.apiVersion)} ${String(o.kind)} is not served by this test API server`);
      return (this.handles.get(r.key) as ResourceHandle).create(o);
    });
  }

  /** Listens (generating TLS material first when enabled) and resolves with the base URL. */
  async start(): Promise<{ url: string }> {
    if (this.server) throw new Error('KubeApiServer already started');
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => void this.handle(req, res);
    let server: http.Server;
    if (this.opts.tls) {
      const tls = await generateTls([this.opts.host, ...(this.opts.sans ?? [])]);
      this.tlsDir = tls.dir;
      this.caPem = tls.caPem;
      this.caFile = tls.caFile;
      server = https.createServer({ key: tls.keyPem, cert: tls.certPem }, handler);
      server.on('tlsClientError', () => undefined);
    } else {
      server = http.createServer(handler);
    }
    server.on('clientError', (_err, socket) => socket.destroy());
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.opts.port, this.opts.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      if (this.tlsDir) await rm(this.tlsDir, { recursive: true, force: true });
      this.tlsDir = undefined;
      throw err;
    }
    this.server = server;
    const port = (server.address() as AddressInfo).port;
    let host = this.opts.host;
    if (host === '0.0.0.0') host = '127.0.0.1';
    if (host === '::') host = '::1';
    this.url = `${this.opts.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
    return { url: this.url };
  }

  /** Ends every watch stream, closes every connection and the listener, and removes the TLS files. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const w of [...this.watches]) w.end();
    if (server) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    if (this.tlsDir) await rm(this.tlsDir, { recursive: true, force: true });
    this.tlsDir = undefined;
  }

  /** Serves a new resource type (like creating a CRD) and returns its handle; Nodes are registered already. */
  registerResource(def: ResourceDefinition): ResourceHandle {
    const r = resolveResource(def);
    const handle = new ResourceHandle(r, this.store);
    this.resources.set(r.key, r);
    this.handles.set(r.key, handle);
    return handle;
  }

  /** The handle (create/get/update/patch/delete/list with API semantics) of a registered resource type. */
  resource(plural: string, group = ''): ResourceHandle {
    const h = this.handles.get(`${group}/${plural}`);
    if (!h) throw new Error(`resource ${plural}${group ? '.' + group : ''} is not registered`);
    return h;
  }

  private get nodes(): ResourceHandle {
    return this.resource('nodes');
  }

  /** Creates a Node (status included, as kubelet registers it) and returns it as stored. */
  createNode(obj: KubeObject): KubeObject {
    return this.nodes.create(obj);
  }

  /** The Node named `name`, or undefined. */
  getNode(name: string): KubeObject | undefined {
    return this.nodes.get(name);
  }

  /** Replaces a whole Node including status (409 if metadata.resourceVersion is set and stale). */
  updateNode(obj: KubeObject): KubeObject {
    return this.nodes.update(obj, { scope: 'all' });
  }

  /** Patches a Node, status included (merge patch unless `type` says otherwise), and returns it. */
  patchNode(name: string, patch: unknown, type: PatchType = 'merge'): KubeObject {
    return this.nodes.patch(name, type, patch, { scope: 'all' });
  }

  /** Deletes a Node (only marks it while finalizers remain) and returns its last state, or undefined if there was none. */
  deleteNode(name: string): KubeObject | undefined {
    if (!this.nodes.get(name)) return undefined;
    return this.nodes.delete(name);
  }

  /** All Nodes, sorted by name. */
  listNodes(): KubeObject[] {
    return this.nodes.list();
  }

  /** The current (latest) resourceVersion as a string. */
  get resourceVersion(): string {
    return String(this.store.rv);
  }

  /** Number of watch streams currently open. */
  get watchCount(): number {
    return this.watches.size;
  }

  /** Compacts the history: every resourceVersion handed out so far is now too old (watch → ERROR 410, exact list → 410). */
  expireHistory(): void {
    this.store.expire();
  }

  /** Makes the next `n` requests (that `opts.match` accepts) fail with `status` and a Status body. */
  failNext(n: number, status = 500, opts: FailOptions = {}): void {
    if (n > 0) this.failures.push({ ...opts, remaining: n, status });
  }

  /** Turns watch support on or off; while off, watch requests get 405 MethodNotAllowed. */
  setWatchEnabled(enabled: boolean): void {
    this.watchEnabled = enabled;
  }

  /** Closes every open watch stream: abruptly (connection reset, default) or gracefully (normal end of stream). */
  dropWatches(opts: { graceful?: boolean } = {}): number {
    const ws = [...this.watches];
    for (const w of ws) {
      if (opts.graceful) w.end();
      else w.destroy();
    }
    return ws.length;
  }

  /** A kubeconfig (as an object) pointing at this server with its CA and token. */
  kubeconfig(opts: { user?: string; token?: string; context?: string } = {}): Record<string, unknown> {
    if (!this.url) throw new Error('KubeApiServer not started');
    const user = opts.user ?? 'test-user';
    const context = opts.context ?? 'kube-api-test';
    const cluster: Record<string, unknown> = { server: this.url };
    if (this.caPem) cluster['certificate-authority-data'] = Buffer.from(this.caPem).toString('base64');
    // client-node 1.x refuses http:// servers unless TLS verification is marked as skipped.
    else cluster['insecure-skip-tls-verify'] = true;
    const token = opts.token ?? this.opts.token;
    return {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'kube-api-test', cluster }],
      users: [{ name: user, user: token ? { token } : {} }],
      contexts: [{ name: context, context: { cluster: 'kube-api-test', user } }],
      'current-context': context,
      preferences: {},
    };
  }

  /** Writes `kubeconfig()` as JSON (valid kubeconfig YAML) to `path`, mode 0600, for kubectl and KubeConfig.loadFromFile. */
  async writeKubeconfig(path: string, opts: { user?: string; token?: string; context?: string } = {}): Promise<void> {
    await writeFile(path, JSON.stringify(this.kubeconfig(opts), null, 2) + '\n', { mode: 0o600 });
  }

  // ---- HTTP handling ----

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://kube-api.invalid');
    const record: RequestRecord = { method: req.method ?? 'GET', path: url.pathname, query: url.search };
    if (req.headers['content-type']) record.contentType = req.headers['content-type'];
    if (req.headers.accept) record.accept = req.headers.accept;
    if (req.headers['user-agent']) record.userAgent = req.headers['user-agent'];
    this.requests.push(record);
    if (this.requests.length > 2000) this.requests.splice(0, this.requests.length - 2000);
    res.on('finish', () => (record.status = res.statusCode));
    try {
      const body = await readBody(req);
      this.injectFailure(req, url);
      const user = this.authenticate(req, url.pathname);
      record.user = user.username;
      const credential = user.extra?.[EXTRA_CREDENTIAL_ID]?.[0];
      if (credential) record.credentialId = credential;
      await this.route(req, res, url, body, user);
    } catch (err) {
      this.sendError(res, err);
    }
  }

  private injectFailure(req: http.IncomingMessage, url: URL): void {
    if (this.failures.length === 0) return;
    const info: RequestInfo = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.searchParams,
      watch: isTrue(url.searchParams.get('watch')) || url.pathname.includes('/watch/'),
    };
    const f = this.failures.find((x) => x.remaining > 0 && (!x.match || x.match(info)));
    if (!f) return;
    f.remaining--;
    this.failures = this.failures.filter((x) => x.remaining > 0);
    const d = f.retryAfterSeconds !== undefined ? { retryAfterSeconds: f.retryAfterSeconds } : undefined;
    throw new ApiError(f.status, reasonForCode(f.status), f.message ?? `injected failure (${f.status})`, d);
  }

  /** The user a request authenticates as: its bearer token's; without authentication, everyone is an admin. */
  private authenticate(req: http.IncomingMessage, path: string): UserInfo {
    const h = req.headers.authorization;
    const m = h ? /^Bearer (\S+)$/.exec(h) : null;
    const user = m ? this.tokens.lookup(m[1] as string, (b) => this.boundObjectExists(b)) : undefined;
    if (user) return user;
    if (!this.authRequired) return ADMIN_USER;
    if (!h && PUBLIC_PATHS.has(path)) return ANONYMOUS_USER;
    throw new ApiError(401, 'Unauthorized', 'Unauthorized');
  }

  /** Whether the object a token is bound to still exists with the same uid (only Nodes are served; other kinds count as gone). */
  private boundObjectExists(b: TokenBinding): boolean {
    return b.kind === 'Node' && this.getNode(b.name)?.metadata?.uid === b.uid;
  }

  private sendError(res: http.ServerResponse, err: unknown): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const e =
      err instanceof ApiError
        ? err
        : new ApiError(
            500,
            'InternalError',
            `Internal error occurred: ${err instanceof Error ? err.message : String(err)}`,
          );
    const headers: Record<string, string> = {};
    if (e.details?.retryAfterSeconds !== undefined) headers['Retry-After'] = String(e.details.retryAfterSeconds);
    this.sendJson(res, e.code, e.toStatus(), headers);
  }

  private sendJson(res: http.ServerResponse, code: number, obj: unknown, headers: Record<string, string> = {}): void {
    const body = JSON.stringify(obj);
    res.writeHead(code, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
      'Cache-Control': 'no-cache, private',
      ...headers,
    });
    res.end(body);
  }

  private groups(): Map<string, string[]> {
    const g = new Map<string, string[]>();
    for (const r of this.resources.values()) {
      const vs = g.get(r.group) ?? [];
      if (!vs.includes(r.version)) vs.push(r.version);
      g.set(r.group, vs);
    }
    return g;
  }

  private async route(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    url: URL,
    body: Buffer,
    user: UserInfo,
  ): Promise<void> {
    const method = req.method ?? 'GET';
    let parts: string[];
    try {
      parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    } catch {
      throw pathNotFound();
    }
    const first = parts[0];
    if (parts.length <= 1 && first !== 'api' && first !== 'apis') {
      if (method !== 'GET') throw methodNotAllowed();
      if (first === undefined) {
        const paths = ['/api', '/api/v1', '/apis', '/healthz', '/livez', '/readyz', '/version'];
        for (const [g, vs] of this.groups()) if (g) paths.push(`/apis/${g}`, ...vs.map((v) => `/apis/${g}/${v}`));
        this.sendJson(res, 200, { paths: paths.sort() });
        return;
      }
      if (first === 'version') {
        this.sendJson(res, 200, {
          major: '1',
          minor: '32',
          gitVersion: 'v1.32.0-kube-api-test',
          gitCommit: '0000000000000000000000000000000000000000',
          gitTreeState: 'clean',
          buildDate: '2025-01-01T00:00:00Z',
          goVersion: 'go1.23.4',
          compiler: 'gc',
          platform: 'linux/amd64',
        });
        return;
      }
      if (first === 'healthz' || first === 'livez' || first === 'readyz') {
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end('ok');
        return;
      }
      throw pathNotFound();
    }
    let group: string;
    let version: string;
    let rest: string[];
    if (first === 'api') {
      if (parts.length === 1) {
        if (method !== 'GET') throw methodNotAllowed();
        const addr = this.url ? new URL(this.url).host : '';
        this.sendJson(res, 200, {
          kind: 'APIVersions',
          versions: ['v1'],
          serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: addr }],
        });
        return;
      }
      if (parts[1] !== 'v1') throw pathNotFound();
      group = '';
      version = 'v1';
      rest = parts.slice(2);
    } else if (first === 'apis') {
      const groups = this.groups();
      groups.delete('');
      if (parts.length === 1) {
        if (method !== 'GET') throw methodNotAllowed();
        this.sendJson(res, 200, {
          kind: 'APIGroupList',
          apiVersion: 'v1',
          groups: [...groups].map(([g, vs]) => apiGroup(g, vs)),
        });
        return;
      }
      group = parts[1] as string;
      const versions = groups.get(group);
      if (!versions) throw pathNotFound();
      if (parts.length === 2) {
        if (method !== 'GET') throw methodNotAllowed();
        this.sendJson(res, 200, apiGroup(group, versions));
        return;
      }
      version = parts[2] as string;
      if (!versions.includes(version)) throw pathNotFound();
      rest = parts.slice(3);
    } else {
      throw pathNotFound();
    }
    if (rest.length === 0) {
      if (method !== 'GET') throw methodNotAllowed();
      const rs = [...this.resources.values()].filter((r) => r.group === group && r.version === version);
      this.sendJson(res, 200, apiResourceList(group ? `${group}/${version}` : version, rs));
      return;
    }
    await this.serveResource(req, res, url, group, version, rest, body, user);
  }

  private findResource(group: string, version: string, plural: string | undefined): Resource | undefined {
    const r = this.resources.get(`${group}/${plural ?? ''}`);
    return r && r.version === version ? r : undefined;
  }

  private async serveResource(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    url: URL,
    group: string,
    version: string,
    path: string[],
    body: Buffer,
    user: UserInfo,
  ): Promise<void> {
    const method = req.method ?? 'GET';
    let rest = path;
    let watchPath = false;
    if (rest[0] === 'watch') {
      watchPath = true;
      rest = rest.slice(1);
    }
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3 && this.findResource(group, version, rest[2])?.namespaced) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const [plural, name, sub, ...extra] = rest;
    const r = this.findResource(group, version, plural);
    if (!r || extra.length > 0) throw pathNotFound();
    const handle = this.handles.get(r.key) as ResourceHandle;
    const q = url.searchParams;
    const dryRun = q.getAll('dryRun').includes('All');
    if (r.key === SERVICE_ACCOUNT_RESOURCE_KEY && sub === 'token' && name && !watchPath) {
      if (method !== 'POST') throw methodNotAllowed();
      const protobuf = (req.headers['content-type'] ?? '').split(';')[0]?.trim() === PROTOBUF_MEDIA_TYPE;
      let input: unknown;
      if (protobuf) {
        try {
          input = decodeTokenRequest(body);
        } catch (err) {
          throw badRequest(
            `error decoding request body as protobuf: ${err instanceof Error ? err.message : String(err)}`,
          );
        }
      } else {
        input = parseJson(body);
      }
      this.sendJson(res, 201, this.tokenRequest(handle, name, namespace ?? '', input, dryRun));
      return;
    }
    if (sub !== undefined && (sub !== 'status' || !r.statusSubresource)) throw pathNotFound();
    const admit = (
      operation: Operation,
      object: KubeObject | null,
      oldObject: KubeObject | null,
      objName = name ?? '',
    ) => this.admit(res, { operation, r, sub, name: objName, namespace, object, oldObject, user, dryRun });
    const isWatch = watchPath || isTrue(q.get('watch'));
    const format = parseAccept(req.headers.accept);
    if (!this.opts.tables) delete format.table;
    const includeObject = (q.get('includeObject') ?? 'Metadata') as IncludeObject;
    if (!['None', 'Metadata', 'Object'].includes(includeObject))
      throw badRequest(`includeObject: Unsupported value: "${includeObject}"`);

    switch (method) {
      case 'GET': {
        if (isWatch) {
          if (sub) throw methodNotAllowed();
          this.serveWatch(req, res, r, handle, q, format, includeObject, namespace, name);
          return;
        }
        if (watchPath) throw methodNotAllowed();
        if (name) {
          const obj = handle.mustGet(name, namespace);
          this.sendObject(res, 200, r, obj, format, includeObject);
          return;
        }
        this.serveList(res, r, handle, q, format, includeObject, namespace);
        return;
      }
      case 'POST': {
        if (name || watchPath) throw methodNotAllowed();
        const input = parseJson(body) as KubeObject;
        const nsOpt = namespace ? { namespace } : {};
        if (this.admissionEnabled) {
          const candidate = handle.create(input, { dryRun: true, ...nsOpt });
          admit('CREATE', candidate, null, candidate.metadata?.name ?? '');
        }
        const obj = handle.create(input, { dryRun, ...nsOpt });
        this.sendObject(res, 201, r, obj, format, includeObject);
        return;
      }
      case 'PUT': {
        if (!name || watchPath) throw methodNotAllowed();
        const input = parseJson(body) as KubeObject;
        const opts = { name, scope: sub ? 'status' : 'main', ...(namespace ? { namespace } : {}) } as const;
        if (this.admissionEnabled)
          admit('UPDATE', handle.update(input, { ...opts, dryRun: true }), handle.mustGet(name, namespace));
        const obj = handle.update(input, { ...opts, dryRun });
        this.sendObject(res, 200, r, obj, format, includeObject);
        return;
      }
      case 'PATCH': {
        if (!name || watchPath) throw methodNotAllowed();
        const ct = (req.headers['content-type'] ?? '').split(';')[0]?.trim();
        let type: PatchType;
        if (ct === 'application/json-patch+json') type = 'json';
        else if (ct === 'application/merge-patch+json') type = 'merge';
        else if (ct === 'application/strategic-merge-patch+json') type = 'strategic';
        else if (ct === 'application/apply-patch+yaml' || ct === 'application/apply-patch+cbor') {
          throw new ApiError(
            415,
            'UnsupportedMediaType',
            'server-side apply is not supported by this test API server; use a merge or JSON patch',
          );
        } else {
          throw new ApiError(
            415,
            'UnsupportedMediaType',
            `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json`,
          );
        }
        const patch = parseJson(body);
        const opts = { scope: sub ? 'status' : 'main', ...(namespace ? { namespace } : {}) } as const;
        // At admission a patch is an UPDATE of the patched object.
        if (this.admissionEnabled)
          admit('UPDATE', handle.patch(name, type, patch, { ...opts, dryRun: true }), handle.mustGet(name, namespace));
        const obj = handle.patch(name, type, patch, { ...opts, dryRun });
        this.sendObject(res, 200, r, obj, format, includeObject);
        return;
      }
      case 'DELETE': {
        if (watchPath || sub) throw methodNotAllowed();
        const opts = body.length ? parseJson(body) : {};
        if (!isObject(opts)) throw badRequest('DeleteOptions must be a JSON object');
        const dry = dryRun || (Array.isArray(opts.dryRun) && opts.dryRun.includes('All'));
        const pre = isObject(opts.preconditions) ? opts.preconditions : {};
        const preconditions: { uid?: string; resourceVersion?: string } = {};
        if (typeof pre.uid === 'string') preconditions.uid = pre.uid;
        if (typeof pre.resourceVersion === 'string') preconditions.resourceVersion = pre.resourceVersion;
        if (name) {
          if (this.admissionEnabled) admit('DELETE', null, handle.mustGet(name, namespace));
          const obj = handle.delete(name, { dryRun: dry, preconditions, ...(namespace ? { namespace } : {}) });
          this.sendObject(res, 200, r, obj, format, includeObject);
          return;
        }
        const victims = handle.list(this.listOptions(q, namespace));
        if (this.admissionEnabled) for (const v of victims) admit('DELETE', null, v, v.metadata?.name ?? '');
        const deleted = victims.map((v) =>
          handle.delete(v.metadata?.name as string, {
            dryRun: dry,
            ...(v.metadata?.namespace ? { namespace: v.metadata.namespace } : {}),
          }),
        );
        this.sendJson(res, 200, this.listBody(r, deleted, this.resourceVersion, {}));
        return;
      }
      default:
        throw methodNotAllowed();
    }
  }

  /** Whether ValidatingAdmissionPolicies are served (and so enforced). */
  private get admissionEnabled(): boolean {
    return this.resources.has(VALIDATING_ADMISSION_POLICY_RESOURCE_KEY);
  }

  /** Runs validating admission for a write; throws the denial, adds Warning headers for Warn bindings. */
  private admit(
    res: http.ServerResponse,
    a: {
      operation: Operation;
      r: Resource;
      sub: string | undefined;
      name: string;
      namespace: string | undefined;
      object: KubeObject | null;
      oldObject: KubeObject | null;
      user: UserInfo;
      dryRun: boolean;
    },
  ): void {
    const bindings = this.store.list(VALIDATING_ADMISSION_POLICY_BINDING_RESOURCE_KEY);
    if (bindings.length === 0) return;
    const result = validatingAdmission(this.store.list(VALIDATING_ADMISSION_POLICY_RESOURCE_KEY), bindings, {
      operation: a.operation,
      group: a.r.group,
      version: a.r.version,
      resource: a.r.plural,
      ...(a.sub ? { subResource: a.sub } : {}),
      kind: a.r.kind,
      name: a.name,
      ...(a.namespace ? { namespace: a.namespace } : {}),
      object: a.object,
      oldObject: a.oldObject,
      userInfo: a.user,
      dryRun: a.dryRun,
    });
    if (result.denial) throw result.denial;
    if (result.warnings.length) {
      const prev = res.getHeader('Warning');
      const list = Array.isArray(prev) ? prev : prev !== undefined ? [String(prev)] : [];
      res.setHeader('Warning', [...list, ...result.warnings.map((w) => `299 - ${JSON.stringify(w)}`)]);
    }
  }

  /** POST serviceaccounts/<name>/token: a TokenRequest, answered with a token as kube-apiserver does (Node-bound or unbound). */
  private tokenRequest(
    handle: ResourceHandle,
    name: string,
    namespace: string,
    body: unknown,
    dryRun: boolean,
  ): Record<string, unknown> {
    const sa = handle.mustGet(name, namespace);
    const spec = isObject(body) && isObject(body.spec) ? body.spec : {};
    const seconds =
      spec.expirationSeconds === undefined || spec.expirationSeconds === null ? 3600 : Number(spec.expirationSeconds);
    const invalidRequest = (field: string, detail: string) =>
      new ApiError(422, 'Invalid', `TokenRequest.authentication.k8s.io "${name}" is invalid: ${field}: ${detail}`, {
        name,
        group: 'authentication.k8s.io',
        kind: 'TokenRequest',
        causes: [{ reason: 'FieldValueInvalid', message: detail, field }],
      });
    if (!Number.isInteger(seconds) || seconds < 600)
      throw invalidRequest(
        'spec.expirationSeconds',
        `Invalid value: ${String(spec.expirationSeconds)}: may not specify a duration less than 10 minutes`,
      );
    if (seconds > 2 ** 32)
      throw invalidRequest(
        'spec.expirationSeconds',
        `Invalid value: ${seconds}: may not specify a duration larger than 2^32 seconds`,
      );
    let bound: TokenBinding | undefined;
    const ref = isObject(spec.boundObjectRef) ? spec.boundObjectRef : undefined;
    if (ref) {
      if (ref.kind !== 'Node')
        throw badRequest(`cannot bind token to a ${String(ref.kind)}: this test API server binds tokens to Nodes only`);
      const node = this.nodes.mustGet(String(ref.name ?? ''));
      const uid = node.metadata?.uid ?? '';
      if (ref.uid && ref.uid !== uid) throw conflictUid(String(ref.name), String(ref.uid), uid);
      bound = { kind: 'Node', name: String(ref.name), uid };
    }
    const audiences = Array.isArray(spec.audiences) && spec.audiences.length ? spec.audiences.map(String) : undefined;
    const minted = mintServiceAccountToken({
      namespace,
      name,
      serviceAccountUid: sa.metadata?.uid ?? '',
      expirationSeconds: seconds,
      audiences,
      boundObject: bound,
    });
    if (!dryRun) this.tokens.add(minted.token, minted.user, { expiresAt: minted.expiresAt, bound });
    return {
      kind: 'TokenRequest',
      apiVersion: 'authentication.k8s.io/v1',
      metadata: { name, namespace, creationTimestamp: null },
      spec: {
        audiences: minted.claims.aud,
        expirationSeconds: seconds,
        boundObjectRef: ref ? { kind: 'Node', apiVersion: 'v1', name: bound!.name, uid: bound!.uid } : null,
      },
      status: {
        token: dryRun ? '' : minted.token,
        expirationTimestamp: new Date(minted.expiresAt).toISOString().replace(/\.\d{3}Z$/, 'Z'),
      },
    };
  }

  private listOptions(q: URLSearchParams, namespace: string | undefined, name?: string): ListOptions {
    const fields = [q.get('fieldSelector') ?? '', name ? `metadata.name=${name}` : ''].filter(Boolean).join(',');
    const o: ListOptions = { labelSelector: q.get('labelSelector') ?? '', fieldSelector: fields };
    if (namespace) o.namespace = namespace;
    return o;
  }

  private listBody(
    r: Resource,
    items: KubeObject[],
    rv: string,
    extraMeta: Record<string, unknown>,
  ): Record<string, unknown> {
    const out = items.map((o) => {
      if (!r.builtin) return o;
      const c = { ...o };
      delete c.kind;
      delete c.apiVersion;
      return c;
    });
    return { kind: r.listKind, apiVersion: r.apiVersion, metadata: { resourceVersion: rv, ...extraMeta }, items: out };
  }

  private sendObject(
    res: http.ServerResponse,
    code: number,
    r: Resource,
    obj: KubeObject,
    format: Negotiated,
    includeObject: IncludeObject,
  ): void {
    if (format.table) {
      this.sendJson(
        res,
        code,
        toTable(r, [obj], {
          tableVersion: format.table.version,
          includeObject,
          resourceVersion: obj.metadata?.resourceVersion ?? '',
        }),
      );
    } else if (format.partialMetadata && !format.partialMetadata.list) {
      this.sendJson(res, code, {
        kind: 'PartialObjectMetadata',
        apiVersion: `meta.k8s.io/${format.partialMetadata.version}`,
        metadata: obj.metadata ?? {},
      });
    } else {
      this.sendJson(res, code, obj);
    }
  }

  private serveList(
    res: http.ServerResponse,
    r: Resource,
    handle: ResourceHandle,
    q: URLSearchParams,
    format: Negotiated,
    includeObject: IncludeObject,
    namespace: string | undefined,
  ): void {
    const opts = this.listOptions(q, namespace);
    const matcher = handle.matcher(opts);
    const rvParam = q.get('resourceVersion') ?? '';
    const match = q.get('resourceVersionMatch') ?? '';
    const limitParam = q.get('limit');
    const limit = limitParam ? Number(limitParam) : 0;
    if (!Number.isInteger(limit) || limit < 0) throw badRequest(`limit: Invalid value: "${limitParam ?? ''}"`);
    const cont = q.get('continue') ?? '';
    let listRv: number;
    let objs: readonly KubeObject[];
    let after = '';
    if (cont) {
      let token: { rv?: unknown; start?: unknown };
      try {
        token = JSON.parse(Buffer.from(cont, 'base64url').toString('utf8')) as { rv?: unknown; start?: unknown };
      } catch {
        throw badRequest('continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)');
      }
      if (typeof token.rv !== 'number' || typeof token.start !== 'string')
        throw badRequest('continue key is not valid');
      try {
        objs = this.store.snapshotShared(r.key, token.rv);
      } catch (err) {
        if (err instanceof ApiError && err.code === 410) {
          throw new ApiError(
            410,
            'Expired',
            'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.',
          );
        }
        throw err;
      }
      listRv = token.rv;
      after = token.start;
    } else if (match === 'Exact') {
      if (!rvParam || rvParam === '0')
        throw badRequest(
          'resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
        );
      listRv = parseRv(rvParam);
      objs = this.store.snapshotShared(r.key, listRv);
    } else {
      if (match && match !== 'NotOlderThan') throw badRequest(`resourceVersionMatch: Unsupported value: "${match}"`);
      if (match && !rvParam)
        throw badRequest(
          'resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided',
        );
      if (rvParam && rvParam !== '0') {
        const want = parseRv(rvParam);
        if (want > this.store.rv) this.store.checkRetained(want);
      }
      listRv = this.store.rv;
      objs = this.store.listShared(r.key);
    }
    objs = objs.filter((o) => objectKey(o) > after).filter(matcher);
    const meta: Record<string, unknown> = {};
    if (limit > 0 && objs.length > limit) {
      const remaining = objs.length - limit;
      objs = objs.slice(0, limit);
      meta.continue = Buffer.from(
        JSON.stringify({ rv: listRv, start: objectKey(objs[objs.length - 1] as KubeObject) }),
      ).toString('base64url');
      if (!opts.labelSelector && !opts.fieldSelector) meta.remainingItemCount = remaining;
    }
    const rv = String(listRv);
    // Only the page is copied: the stored objects are never changed in place.
    const page = objs.map((o) => clone(o));
    if (format.table) {
      this.sendJson(
        res,
        200,
        toTable(r, page, { tableVersion: format.table.version, includeObject, resourceVersion: rv, listMeta: meta }),
      );
    } else if (format.partialMetadata) {
      const v = format.partialMetadata.version;
      this.sendJson(res, 200, {
        kind: 'PartialObjectMetadataList',
        apiVersion: `meta.k8s.io/${v}`,
        metadata: { resourceVersion: rv, ...meta },
        items: page.map((o) => ({
          kind: 'PartialObjectMetadata',
          apiVersion: `meta.k8s.io/${v}`,
          metadata: o.metadata ?? {},
        })),
      });
    } else {
      this.sendJson(res, 200, this.listBody(r, page, rv, meta));
    }
  }

  private serveWatch(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    r: Resource,
    handle: ResourceHandle,
    q: URLSearchParams,
    format: Negotiated,
    includeObject: IncludeObject,
    namespace: string | undefined,
    name: string | undefined,
  ): void {
    if (!this.watchEnabled) throw methodNotAllowed('watch is disabled on this server');
    const matcher = handle.matcher(this.listOptions(q, namespace, name));
    const rvParam = q.get('resourceVersion') ?? '';
    const timeoutParam = q.get('timeoutSeconds');
    const timeoutSeconds = timeoutParam ? Number(timeoutParam) : 0;
    if (!Number.isFinite(timeoutSeconds) || timeoutSeconds < 0)
      throw badRequest(`timeoutSeconds: Invalid value: "${timeoutParam ?? ''}"`);
    const bookmarks = isTrue(q.get('allowWatchBookmarks'));
    const sendInitial = q.get('sendInitialEvents') === 'true';
    const from = rvParam === '' || rvParam === '0' ? undefined : parseRv(rvParam);

    // Everything up to the subscription happens synchronously, so no event is lost or doubled.
    const initial: Array<{ type: string; object: unknown }> = [];
    let failure: ApiError | undefined;
    if (from === undefined || sendInitial) {
      for (const o of this.store.list(r.key)) if (matcher(o)) initial.push({ type: 'ADDED', object: o });
    } else {
      try {
        for (const e of this.store.eventsSince(r.key, from)) {
          const ev = convertEvent(e, matcher);
          if (ev) initial.push(ev);
        }
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        failure = err;
      }
    }
    res.writeHead(200, {
      'Content-Type': 'application/json',
      'Cache-Control': 'no-cache, private',
      'Transfer-Encoding': 'chunked',
    });
    res.flushHeaders();
    req.socket.setNoDelay(true);
    req.socket.setTimeout(0);
    const w = new WatchStream(res, r, format, includeObject, (x) => this.watches.delete(x));
    this.watches.add(w);
    const bookmark = (extra: Record<string, string> = {}) =>
      w.send('BOOKMARK', {
        kind: r.kind,
        apiVersion: r.apiVersion,
        metadata: {
          resourceVersion: String(this.store.rv),
          ...(Object.keys(extra).length ? { annotations: extra } : {}),
        },
      });
    for (const ev of initial) w.send(ev.type, ev.object);
    if (failure) {
      w.send('ERROR', failure.toStatus());
      w.end();
      return;
    }
    if (sendInitial && bookmarks) bookmark({ 'k8s.io/initial-events-end': 'true' });
    const unsubscribe = this.store.subscribe((e) => {
      if (e.resource !== r.key) return;
      const ev = convertEvent(e, matcher);
      if (ev) w.send(ev.type, ev.object);
    });
    const timers: NodeJS.Timeout[] = [];
    if (timeoutSeconds > 0) timers.push(setTimeout(() => w.end(), timeoutSeconds * 1000));
    if (bookmarks && !format.table) {
      const t = setInterval(() => bookmark(), this.opts.bookmarkIntervalMs);
      t.unref();
      timers.push(t);
    }
    w.attach(unsubscribe, timers);
  }
}

/** The watch event a stream with this filter sees for a store event (ADDED/DELETED when an object enters or leaves the selection). */
function convertEvent(
  e: StoreEvent,
  matches: (o: KubeObject) => boolean,
): { type: string; object: KubeObject } | undefined {
  if (e.type === 'DELETED') return matches(e.object) ? { type: 'DELETED', object: e.object } : undefined;
  const now = matches(e.object);
  const before = e.prev ? matches(e.prev) : false;
  if (now && !before) return { type: 'ADDED', object: e.object };
  if (now && before) return { type: e.type, object: e.object };
  if (!now && before && e.prev) {
    const gone = clone(e.prev);
    gone.metadata = { ...(gone.metadata ?? {}), resourceVersion: e.object.metadata?.resourceVersion ?? '' };
    return { type: 'DELETED', object: gone };
  }
  return undefined;
}

const SERVICE_ACCOUNT_RESOURCE_KEY = '/serviceaccounts';
const VALIDATING_ADMISSION_POLICY_RESOURCE_KEY = `${VALIDATING_ADMISSION_POLICY_RESOURCE.group}/${VALIDATING_ADMISSION_POLICY_RESOURCE.plural}`;
const VALIDATING_ADMISSION_POLICY_BINDING_RESOURCE_KEY = `${VALIDATING_ADMISSION_POLICY_BINDING_RESOURCE.group}/${VALIDATING_ADMISSION_POLICY_BINDING_RESOURCE.plural}`;

/** 409 for a TokenRequest whose bound object's uid is not the object's. */
function conflictUid(name: string, want: string, have: string): ApiError {
  return new ApiError(
    409,
    'Conflict',
    `Operation cannot be fulfilled on nodes "${name}": the UID in the bound object reference (${want}) does not match the UID in record. The object might have been deleted and then recreated`,
    { name, kind: 'nodes' },
  );
}

function parseJson(body: Buffer): unknown {
  if (body.length === 0) throw badRequest('the request body is empty');
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch (err) {
    throw badRequest(`error decoding request body as JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new ApiError(413, 'RequestEntityTooLarge', 'the request body is too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Re-exported so tests need one import: Status errors, the built-in resource definitions and object types. */
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
