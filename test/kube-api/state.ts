/*
 * What one test API server holds and every request handler works on: the object store, the
 * served resource types with their handles, the accepted tokens, the open watch streams, the
 * injected faults, the request log and the options.
 */
import { VALIDATING_ADMISSION_POLICY_BINDING_RESOURCE, VALIDATING_ADMISSION_POLICY_RESOURCE } from './admission.js';
import { ADMIN_USER, TokenTable, type TokenBinding } from './auth.js';
import type { RequestRecord } from './http/context.js';
import type { WatchStream } from './handlers/watch.js';
import { Faults } from './faults.js';
import type { ResolvedOptions } from './options.js';
import {
  LEASE_RESOURCE,
  NODE_RESOURCE,
  resolveResource,
  resourceKey,
  SERVICE_ACCOUNT_RESOURCE,
  type KubeObject,
  type Resource,
  type ResourceDefinition,
} from './registry.js';
import { ResourceHandle } from './resource.js';
import { ObjectStore } from './store.js';

/** How many requests `requests` keeps. */
const REQUEST_LOG_SIZE = 2000;

/** The in-memory state of one server. */
export class ServerState {
  readonly store: ObjectStore;
  /** The bearer tokens the server accepts. */
  readonly tokens = new TokenTable();
  /** The watch streams open now. */
  readonly watches = new Set<WatchStream>();
  readonly faults = new Faults();
  /** The last requests, oldest first. */
  readonly requests: RequestRecord[] = [];
  /** The base URL once listening (discovery names it). */
  url?: string;
  private readonly handles = new Map<string, ResourceHandle>();

  constructor(readonly opts: ResolvedOptions) {
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

  /** Serves a resource type from now on and returns its handle. */
  registerResource(def: ResourceDefinition): ResourceHandle {
    const handle = new ResourceHandle(resolveResource(def), this.store);
    this.handles.set(handle.resource.key, handle);
    return handle;
  }

  /** The handle of a served resource type, or an Error. */
  resource(plural: string, group = ''): ResourceHandle {
    const h = this.handles.get(resourceKey({ group, plural }));
    if (!h) throw new Error(`resource ${plural}${group ? '.' + group : ''} is not registered`);
    return h;
  }

  /** The handle of the type a definition describes, if it is served. */
  served(def: Pick<ResourceDefinition, 'group' | 'plural'>): ResourceHandle | undefined {
    return this.handles.get(resourceKey(def));
  }

  /** The handle of the type served at `/<group>/<version>/<plural>`, if any. */
  find(group: string, version: string, plural: string | undefined): ResourceHandle | undefined {
    const h = this.handles.get(resourceKey({ group, plural: plural ?? '' }));
    return h && h.resource.version === version ? h : undefined;
  }

  /** The handle of the type an object is (its apiVersion and kind), or an Error. */
  handleFor(o: KubeObject): ResourceHandle {
    const h = [...this.handles.values()].find(
      (x) => x.resource.apiVersion === o.apiVersion && x.resource.kind === o.kind,
    );
    if (!h) throw new Error(`${String(o.apiVersion)} ${String(o.kind)} is not served by this test API server`);
    return h;
  }

  /** Every served resource type, in the order they were registered. */
  resources(): Resource[] {
    return [...this.handles.values()].map((h) => h.resource);
  }

  /** The served API groups ('' is the core group) with their versions. */
  groups(): Map<string, string[]> {
    const g = new Map<string, string[]>();
    for (const r of this.resources()) {
      const vs = g.get(r.group) ?? [];
      if (!vs.includes(r.version)) vs.push(r.version);
      g.set(r.group, vs);
    }
    return g;
  }

  get nodes(): ResourceHandle {
    return this.resource('nodes');
  }

  /** Whether requests must carry a known bearer token (the server was made with `token` or `users`). */
  get authRequired(): boolean {
    return this.opts.token !== undefined || this.opts.users !== undefined;
  }

  /** Whether ValidatingAdmissionPolicies are served (and so enforced). */
  get admissionEnabled(): boolean {
    return this.served(VALIDATING_ADMISSION_POLICY_RESOURCE) !== undefined;
  }

  /**
   * Whether the object a token is bound to still exists with the same uid. Only Nodes are served:
   * a Pod binding (made by `createServiceAccountToken` only) cannot be checked and counts as alive;
   * other kinds count as gone.
   */
  boundObjectExists(b: TokenBinding): boolean {
    if (b.kind === 'Pod') return true;
    return b.kind === 'Node' && this.nodes.get(b.name)?.metadata?.uid === b.uid;
  }

  /** Adds a request to the log, dropping the oldest beyond its size. */
  record(r: RequestRecord): void {
    this.requests.push(r);
    if (this.requests.length > REQUEST_LOG_SIZE) this.requests.splice(0, this.requests.length - REQUEST_LOG_SIZE);
  }
}
