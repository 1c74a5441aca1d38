/**
 * Publishing this node's own annotations: a JSON merge patch on its own Node, nothing else; and
 * the merge patch of a Node's metadata the node-policy probe sends too (as a dry run).
 */
import * as k8s from '@kubernetes/client-node';
import { describeApiError } from './api-errors.js';

/** Writes this node's own annotations (and nothing else, on no other Node). */
export interface NodePublisher {
  /** Merge-patches the given annotations (null deletes one) onto Node `name`. */
  patchAnnotations(name: string, annotations: Record<string, string | null>): Promise<void>;
}

/** Merge-patches Nodes' metadata through the API. */
export class NodePatcher {
  private readonly api: k8s.CoreV1Api;

  constructor(kc: k8s.KubeConfig) {
    this.api = kc.makeApiClient(k8s.CoreV1Api);
  }

  /** Sends a JSON merge patch of Node `name`'s metadata (`dryRun`: the API server checks it and changes nothing). */
  protected async patchMetadata(name: string, metadata: object, dryRun = false): Promise<void> {
    await this.api.patchNode(
      { name, body: { metadata }, ...(dryRun ? { dryRun: 'All' } : {}) },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
  }
}

/** Publishes through the API with a JSON merge patch. */
export class ApiNodePublisher extends NodePatcher implements NodePublisher {
  async patchAnnotations(name: string, annotations: Record<string, string | null>): Promise<void> {
    try {
      await this.patchMetadata(name, { annotations });
    } catch (cause) {
      throw new Error(`patching annotations of Node ${name}: ${describeApiError(cause)}`, { cause });
    }
  }
}
