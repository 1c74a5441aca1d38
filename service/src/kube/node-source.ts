/**
 * Node discovery: a paged list then a watch with bookmarks that resumes where it stopped (each
 * Node event reported on its own, translated at once so no full `V1Node` is kept), or a paged list
 * on an interval; logging once per change of state. Everything leaving this module is a plain
 * MeshNode.
 */
import type * as k8s from '@kubernetes/client-node';
import type { Logger } from '../log/logger.js';
import type { MeshNode } from '../mesh/types.js';
import { Poller, StateReporter } from '../util/backoff.js';
import { describeApiError } from './api-errors.js';
import { getJson, watchStream } from './api-http.js';
import { toMeshNode, type TranslateOptions } from './node-translate.js';
import { listPages, Reflector, type ListPage, type ReflectorApi } from './reflector.js';
import type { Source, SourceHandler, SourceState } from './source.js';

/** Discovers Nodes. */
export type NodeSource = Source<MeshNode>;

const NODES_PATH = '/api/v1/nodes';
/** The translation of raw Node objects with `opts` (which labels to keep). */
const translator =
  (opts: TranslateOptions) =>
  (raw: unknown): MeshNode | undefined =>
    toMeshNode(raw as k8s.V1Node, opts);

/** The Nodes collection over plain HTTP(S) with the kubeconfig's credentials. */
export function nodesApi(kc: k8s.KubeConfig, timeoutMs = 30_000): ReflectorApi {
  return {
    list: async (query) => (await getJson(kc, NODES_PATH, query, timeoutMs)) as ListPage,
    watch: (query, onEvent, onEnd, onOpen) => watchStream(kc, NODES_PATH, query, { onEvent, onEnd, onOpen }),
  };
}

/** Logs Node discovery going up and down once per change, not once per retry. */
class NodeSourceLog {
  private readonly reporter = new StateReporter();
  private wasUp = false;

  constructor(
    private readonly log: Logger,
    private readonly what: string,
  ) {}

  /** Records a state and passes it on. */
  report(handler: SourceHandler<MeshNode>, state: SourceState, error?: unknown): void {
    if (state === 'up') {
      if (this.reporter.changed('state', 'up'))
        this.log.info(`${this.what}: connected to the API server${this.wasUp ? ' again' : ''}`);
      this.wasUp = true;
    } else {
      const why = describeApiError(error);
      if (this.reporter.changed('state', 'down'))
        this.log.warning(
          `${this.what}: API server unreachable or failing (${why}); retrying with backoff, the mesh stays as it is`,
        );
      else this.log.debug(`${this.what}: still failing (${why})`);
    }
    handler.onState(state, error);
  }
}

/** Watches Nodes, reporting each change on its own. */
export class WatchNodeSource implements NodeSource {
  private reflector: Reflector<MeshNode> | undefined;
  private readonly states: NodeSourceLog;

  constructor(
    private readonly api: ReflectorApi,
    private readonly log: Logger,
    private readonly opts: TranslateOptions = {},
  ) {
    this.states = new NodeSourceLog(log, 'node watch');
  }

  /** API requests made so far (list pages and watches), for the load figures. */
  get requests(): { list: number; watch: number } {
    return { list: this.reflector?.listRequests ?? 0, watch: this.reflector?.watchRequests ?? 0 };
  }

  start(handler: SourceHandler<MeshNode>): void {
    this.reflector = new Reflector<MeshNode>({
      api: this.api,
      translate: translator(this.opts),
      log: this.log,
      what: 'node watch',
    });
    this.reflector.start({
      onList: (items) => handler.onList(items),
      onChange: (name, item) => handler.onChange?.(name, item),
      onUp: () => this.states.report(handler, 'up'),
      onError: (err) => {
        this.states.report(handler, 'down', err);
        return undefined;
      },
    });
  }

  async stop(): Promise<void> {
    this.reflector?.stop();
  }
}

/** Lists Nodes every `intervalMs` (for API endpoints that cannot watch); retries errors with backoff. */
export class ListNodeSource implements NodeSource {
  private poller: Poller | undefined;
  private readonly states: NodeSourceLog;

  constructor(
    private readonly api: ReflectorApi,
    log: Logger,
    private readonly intervalMs: number,
    private readonly opts: TranslateOptions = {},
  ) {
    this.states = new NodeSourceLog(log, 'node list');
  }

  start(handler: SourceHandler<MeshNode>): void {
    this.poller = new Poller(this.intervalMs, async () => {
      try {
        const { items } = await listPages(this.api.list, translator(this.opts), 500);
        this.states.report(handler, 'up');
        handler.onList(items);
      } catch (err) {
        this.states.report(handler, 'down', err);
        throw err;
      }
    });
    this.poller.start();
  }

  async stop(): Promise<void> {
    this.poller?.stop();
  }
}

/** Lists Nodes once (for the operator commands). */
export async function listNodes(kc: k8s.KubeConfig, opts: TranslateOptions = {}): Promise<MeshNode[]> {
  return (await listPages(nodesApi(kc).list, translator(opts), 500)).items;
}
