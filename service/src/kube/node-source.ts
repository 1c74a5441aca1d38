/**
 * Node discovery: the generic sources (`source.ts`) configured for Nodes. Watched, each Node event
 * is reported on its own; listed, every list is reported whole. Nodes are translated at once, so
 * no full `V1Node` is kept and everything leaving this module is a plain MeshNode. Going up and
 * down is logged once per change of state.
 */
import type * as k8s from '@kubernetes/client-node';
import type { Logger } from '../log/logger.js';
import type { MeshNode } from '../mesh/types.js';
import { StateReporter } from '../util/backoff.js';
import { describeApiError } from './api-errors.js';
import { getJson, watchStream } from './api-http.js';
import { toMeshNode, type TranslateOptions } from './node-translate.js';
import { listPages, type ListPage, type ReflectorApi } from './reflector.js';
import { openSource, type Discovery, type Source, type SourceState, type StateLog } from './source.js';

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
class NodeStateLog implements StateLog {
  private readonly reporter = new StateReporter();
  private wasUp = false;

  constructor(
    private readonly log: Logger,
    private readonly what: string,
  ) {}

  record(state: SourceState, error?: unknown): void {
    if (state === 'up') {
      if (this.reporter.changed('state', 'up'))
        this.log.info(`${this.what}: connected to the API server${this.wasUp ? ' again' : ''}`);
      this.wasUp = true;
      return;
    }
    const why = describeApiError(error);
    if (this.reporter.changed('state', 'down'))
      this.log.warning(
        `${this.what}: API server unreachable or failing (${why}); retrying with backoff, the mesh stays as it is`,
      );
    else this.log.debug(`${this.what}: still failing (${why})`);
  }
}

/** Discovers Nodes as `discovery` says ("node watch" or "node list" in the log), keeping the labels `opts` names. */
export function nodeSource(
  api: ReflectorApi,
  log: Logger,
  discovery: Discovery,
  opts: TranslateOptions = {},
): NodeSource {
  const what = `node ${discovery.mode}`;
  const states = new NodeStateLog(log, what);
  return openSource(discovery, { api, log, what, translate: translator(opts), states, changes: 'each' });
}

/** Lists Nodes once (for the operator commands). */
export async function listNodes(kc: k8s.KubeConfig, opts: TranslateOptions = {}): Promise<MeshNode[]> {
  return (await listPages(nodesApi(kc).list, translator(opts), 500)).items;
}
