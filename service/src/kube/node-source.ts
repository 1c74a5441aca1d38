/**
 * Node discovery: watching (client-node's informer, restarted with backoff when it stops) or
 * listing on an interval, logging once per change of state. Everything leaving this module is a
 * plain MeshNode.
 */
import * as k8s from '@kubernetes/client-node';
import type { Logger } from '../log/logger.js';
import type { MeshNode } from '../mesh/types.js';
import { Poller, StateReporter } from '../util/backoff.js';
import { describeApiError } from './api-errors.js';
import { RestartingInformer } from './informer.js';
import { toMeshNode } from './node-translate.js';
import type { Source, SourceHandler, SourceState } from './source.js';

/** Discovers Nodes. */
export type NodeSource = Source<MeshNode>;

/** Converts a list of V1Node into MeshNodes, dropping unnamed ones. */
function translateAll(items: readonly k8s.V1Node[]): MeshNode[] {
  return items.map(toMeshNode).filter((n): n is MeshNode => n !== undefined);
}

/** Logs Node discovery going up and down once per change, not once per retry. */
class NodeSourceLog {
  private readonly reporter = new StateReporter();
  private wasUp = false;

  constructor(private readonly log: Logger, private readonly what: string) {}

  /** Records a state and passes it on. */
  report(handler: SourceHandler<MeshNode>, state: SourceState, error?: unknown): void {
    if (state === 'up') {
      if (this.reporter.changed('state', 'up')) this.log.info(`${this.what}: connected to the API server${this.wasUp ? ' again' : ''}`);
      this.wasUp = true;
    } else {
      const why = describeApiError(error);
      if (this.reporter.changed('state', 'down')) this.log.warning(`${this.what}: API server unreachable or failing (${why}); retrying with backoff, the mesh stays as it is`);
      else this.log.debug(`${this.what}: still failing (${why})`);
    }
    handler.onState(state, error);
  }
}

/** Watches Nodes with client-node's informer, kept alive by RestartingInformer. */
export class WatchNodeSource implements NodeSource {
  private informer: RestartingInformer<k8s.V1Node> | undefined;
  private readonly states: NodeSourceLog;

  constructor(private readonly kc: k8s.KubeConfig, private readonly log: Logger) {
    this.states = new NodeSourceLog(log, 'node watch');
  }

  start(handler: SourceHandler<MeshNode>): void {
    const api = this.kc.makeApiClient(k8s.CoreV1Api);
    this.informer = new RestartingInformer<k8s.V1Node>(this.kc, '/api/v1/nodes', () => api.listNode(), this.log, 'node watch');
    this.informer.start({
      onList: (items) => handler.onList(translateAll(items)),
      onUp: () => this.states.report(handler, 'up'),
      onError: (err) => { this.states.report(handler, 'down', err); return undefined; },
    });
  }

  async stop(): Promise<void> {
    await this.informer?.stop();
  }
}

/** Lists Nodes every `intervalMs` (for API endpoints that cannot watch); retries errors with backoff. */
export class ListNodeSource implements NodeSource {
  private poller: Poller | undefined;
  private readonly states: NodeSourceLog;

  constructor(private readonly kc: k8s.KubeConfig, log: Logger, private readonly intervalMs: number) {
    this.states = new NodeSourceLog(log, 'node list');
  }

  start(handler: SourceHandler<MeshNode>): void {
    const api = this.kc.makeApiClient(k8s.CoreV1Api);
    this.poller = new Poller(this.intervalMs, async () => {
      try {
        const list = await api.listNode();
        this.states.report(handler, 'up');
        handler.onList(translateAll(list.items));
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
export async function listNodes(kc: k8s.KubeConfig): Promise<MeshNode[]> {
  return translateAll((await kc.makeApiClient(k8s.CoreV1Api).listNode()).items);
}
