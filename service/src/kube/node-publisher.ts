/**
 * Publishing this node's own annotations: a JSON merge patch on its own Node, nothing else.
 */
import * as k8s from '@kubernetes/client-node';
import { describeApiError } from './api-errors.js';

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
      await this.api.patchNode(
        { name, body: { metadata: { annotations } } },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
      );
    } catch (cause) {
      throw new Error(`patching annotations of Node ${name}: ${describeApiError(cause)}`, { cause });
    }
  }
}
