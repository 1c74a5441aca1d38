/**
 * The Kubernetes adapter: loads the kubeconfig with errors that name the file, discovers Nodes
 * by watching (client-node's informer, restarted with backoff when it stops) or by listing on an
 * interval, and merge-patches this node's own annotations. Everything leaving this module is a
 * plain MeshNode.
 */
import { access, readFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import * as k8s from '@kubernetes/client-node';
import type { Logger } from '../log/logger.js';
import { describeError } from '../log/logger.js';
import type { MeshNode } from '../mesh/types.js';
import { Poller, StateReporter } from '../util/backoff.js';
import { RestartingInformer } from './informer.js';
import { toMeshNode } from './translate.js';

/** A kubeconfig that cannot be used; the message names the file and what is wrong. */
export class KubeconfigError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KubeconfigError';
  }
}

/** Loads and checks a kubeconfig file. */
export async function loadKubeconfig(path: string): Promise<k8s.KubeConfig> {
  try {
    await access(path, constants.R_OK);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    // The cause is not attached: its text ("ENOENT: … access …") only repeats the message.
    throw new KubeconfigError(code === 'ENOENT'
      ? `kubeconfig ${path} does not exist: create it with \`wg-overlay kubeconfig --server URL --ca CA_FILE --token-file TOKEN_FILE\` (see /usr/share/doc/wg-overlay/install.md)`
      : `kubeconfig ${path} is not readable (${code ?? 'error'})`);
  }
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new KubeconfigError(`reading kubeconfig ${path}`, { cause });
  }
  const kc = new k8s.KubeConfig();
  try {
    kc.loadFromString(text);
  } catch (cause) {
    // The YAML parser's message goes on with a source excerpt: its first line says it all, and
    // the cause is not chained so describeError does not repeat it.
    const first = (cause instanceof Error ? cause.message : String(cause)).split('\n')[0];
    throw new KubeconfigError(`kubeconfig ${path} is malformed: ${first}`);
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster || !cluster.server) throw new KubeconfigError(`kubeconfig ${path} has no current cluster with a server URL`);
  if (!kc.getCurrentUser()) throw new KubeconfigError(`kubeconfig ${path} has no user for its current context`);
  // client-node resolves relative certificate paths against the working directory; make them
  // relative to the kubeconfig like kubectl does.
  kc.makePathsAbsolute(path.replace(/\/[^/]*$/, '') || '/');
  return kc;
}

/** Callbacks a Node source reports to. */
export interface NodeSourceHandler {
  /** The complete current Node list (after any change). */
  onNodes(nodes: MeshNode[]): void;
  /** Discovery went up (synced) or down (with the error). */
  onState(up: boolean, error?: unknown): void;
}

/** Discovers Nodes; `start` begins reporting to the handler, `stop` ends it. */
export interface NodeSource {
  start(handler: NodeSourceHandler): void;
  stop(): Promise<void>;
}

/** Why an API call failed, in a form fit for a log line. */
export function describeApiError(err: unknown): string {
  const e = err as { code?: number; body?: unknown; message?: string };
  if (typeof e?.code === 'number' && e.code >= 100) {
    let msg = '';
    try {
      const body = typeof e.body === 'string' ? JSON.parse(e.body) as { message?: string } : e.body as { message?: string };
      msg = body?.message ?? '';
    } catch { /* not JSON */ }
    return `HTTP ${e.code}${msg ? `: ${msg}` : ''}`;
  }
  return describeError(err);
}

/** Converts a list of V1Node into MeshNodes, dropping unnamed ones. */
function translateAll(items: readonly k8s.V1Node[]): MeshNode[] {
  return items.map(toMeshNode).filter((n): n is MeshNode => n !== undefined);
}

/** Watches Nodes with client-node's informer, kept alive by RestartingInformer. */
export class WatchNodeSource implements NodeSource {
  private informer: RestartingInformer<k8s.V1Node> | undefined;

  constructor(private readonly kc: k8s.KubeConfig, private readonly log: Logger) {}

  start(handler: NodeSourceHandler): void {
    const api = this.kc.makeApiClient(k8s.CoreV1Api);
    this.informer = new RestartingInformer<k8s.V1Node>(this.kc, '/api/v1/nodes', () => api.listNode(), this.log, 'node watch');
    this.informer.start({
      onList: (items) => handler.onNodes(translateAll(items)),
      onUp: () => handler.onState(true),
      onError: (err) => { handler.onState(false, err); return undefined; },
    });
  }

  async stop(): Promise<void> {
    await this.informer?.stop();
  }
}

/** Lists Nodes every `intervalMs` (for API endpoints that cannot watch); retries errors with backoff. */
export class ListNodeSource implements NodeSource {
  private poller: Poller | undefined;

  constructor(private readonly kc: k8s.KubeConfig, private readonly intervalMs: number) {}

  start(handler: NodeSourceHandler): void {
    const api = this.kc.makeApiClient(k8s.CoreV1Api);
    this.poller = new Poller(this.intervalMs, async () => {
      try {
        const list = await api.listNode();
        handler.onState(true);
        handler.onNodes(translateAll(list.items));
      } catch (err) {
        handler.onState(false, err);
        throw err;
      }
    });
    this.poller.start();
  }

  async stop(): Promise<void> {
    this.poller?.stop();
  }
}

/** Writes this node's own annotations (and nothing else, on no other Node). */
export interface NodePublisher {
  /** Merge-patches the given annotations (null deletes one) onto Node `name`. */
  patchAnnotations(name: string, annotations: Record<string, string | null>): Promise<void>;
}

/** Publishes through the API with a JSON merge patch. */
export class ApiNodePublisher implements NodePublisher {
  private readonly api: k8s.CoreV1Api;

  constructor(kc: k8s.KubeConfig) {
    this.api = kc.makeApiClient(k8s.CoreV1Api);
  }

  async patchAnnotations(name: string, annotations: Record<string, string | null>): Promise<void> {
    try {
      await this.api.patchNode({ name, body: { metadata: { annotations } } },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    } catch (cause) {
      throw new Error(`patching annotations of Node ${name}: ${describeApiError(cause)}`, { cause });
    }
  }
}

/** Tracks discovery up/down and logs once per change, not once per retry. */
export class DiscoveryState {
  private readonly reporter = new StateReporter();
  private downSince: number | undefined = Date.now();
  private wasUp = false;

  constructor(private readonly log: Logger, private readonly what: string) {}

  /** Records a state report from a NodeSource. */
  report(up: boolean, error?: unknown): void {
    if (up) {
      if (this.reporter.changed('state', 'up')) this.log.info(`${this.what}: connected to the API server${this.wasUp ? ' again' : ''}`);
      this.downSince = undefined;
      this.wasUp = true;
      return;
    }
    const why = describeApiError(error);
    if (this.reporter.changed('state', 'down')) this.log.warning(`${this.what}: API server unreachable or failing (${why}); retrying with backoff, the mesh stays as it is`);
    else this.log.debug(`${this.what}: still failing (${why})`);
    this.downSince ??= Date.now();
  }

  /** Milliseconds discovery has been down, 0 when up. */
  downFor(): number {
    return this.downSince === undefined ? 0 : Date.now() - this.downSince;
  }
}
