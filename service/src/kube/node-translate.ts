/**
 * The Node boundary: turns client-node's `V1Node` into the core's plain `MeshNode`, keeping only
 * what the mesh needs (and only wg-overlay's own annotations, bounded in length).
 */
import type { V1Node } from '@kubernetes/client-node';
import { KILO_ANNOTATIONS, MAX_ANNOTATION_LENGTH, OWN_ANNOTATIONS } from '../mesh/annotations.js';
import type { MeshNode } from '../mesh/types.js';

/** The annotations the mesh reads: wg-overlay's own and Kilo's known ones; any other key (an unknown `wg-overlay.io/` one too) is dropped, so it cannot wake every node. */
const READ_KEYS: ReadonlySet<string> = new Set([...OWN_ANNOTATIONS, ...KILO_ANNOTATIONS]);

/** Options of the translation. */
export interface TranslateOptions {
  /** Label keys to keep (the location label); others are dropped. */
  labels?: readonly string[];
}

/**
 * Translates a `V1Node` (or the same JSON shape) into a MeshNode; undefined without a name. Keeps
 * wg-overlay's and Kilo's known annotations and the `labels` asked for, each bounded in length.
 */
export function toMeshNode(node: V1Node, opts: TranslateOptions = {}): MeshNode | undefined {
  const name = node.metadata?.name;
  // The API server only accepts DNS-subdomain names; anything else is not a real Node.
  if (typeof name !== 'string' || name.length > 253 || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name)) return undefined;
  const created = node.metadata?.creationTimestamp;
  const createdMs = created === undefined ? NaN : new Date(created as unknown as string).getTime();
  const addresses = Array.isArray(node.status?.addresses) ? node.status!.addresses : [];
  const pick = (type: string): string[] =>
    addresses.filter((a) => a?.type === type && typeof a.address === 'string').map((a) => a.address.trim());
  const specList = node.spec?.podCIDRs;
  const podCIDRs =
    Array.isArray(specList) && specList.length > 0
      ? specList.filter((c): c is string => typeof c === 'string')
      : typeof node.spec?.podCIDR === 'string' && node.spec.podCIDR !== ''
        ? [node.spec.podCIDR]
        : [];
  const annotations: Record<string, string> = {};
  for (const [k, v] of Object.entries(node.metadata?.annotations ?? {})) {
    if (READ_KEYS.has(k) && typeof v === 'string' && v.length <= MAX_ANNOTATION_LENGTH) annotations[k] = v.trim();
  }
  const labels: Record<string, string> = {};
  for (const key of opts.labels ?? []) {
    const v = node.metadata?.labels?.[key];
    if (typeof v === 'string' && v.length <= 63) labels[key] = v;
  }
  return {
    name,
    createdAt: Number.isFinite(createdMs) ? createdMs : Infinity,
    internalIPs: pick('InternalIP'),
    externalIPs: pick('ExternalIP'),
    podCIDRs,
    annotations,
    ...(Object.keys(labels).length > 0 ? { labels } : {}),
  };
}
