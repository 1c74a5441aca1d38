/**
 * Builders for test data: MeshNodes and V1Node JSON with sensible defaults and fixed public keys.
 */
import type { KubeObject } from '../../kube-api/registry.js';
import type { MeshNode } from '../../../service/src/mesh/types.js';
import type { MeshSettings } from '../../../service/src/mesh/desired/desired.js';
import {
  ANNOTATION_ENDPOINT,
  ANNOTATION_OVERLAY_ADDRESS,
  ANNOTATION_PUBLIC_KEY,
} from '../../../service/src/mesh/annotations.js';

/** Valid WireGuard public keys (from `wg genkey | wg pubkey`). */
export const KEYS = [
  'lNsiFnfIBBPmFGhdIrAODLyo8TZbQqYiOJV1JTQtLDs=',
  '4ApWoOSh5XVxPsxSkX7AICc8Q0zLAKFVFV+qG1AkAEk=',
  'jQkz36wjl9u0mO6uCoVdnAhr/n+QAnj2mVy2hk4YPm8=',
  'kAXiFEx00DQt+kJJPoGKJ4zffHp84Tu322E2+lZlHmk=',
  '4dEEeZZJkASAxORhdnuu1AtxDp+l0CrYotC0lx7roiE=',
  'MpD0hiWk0ClESd3sDrATlYitJ2M3BpaQdSU8EyHVT0I=',
] as const;

/** Options for `meshNode`. */
export interface NodeOpts {
  created?: number;
  ip?: string | string[];
  external?: string | string[];
  pods?: string[];
  key?: string;
  address?: string;
  endpoint?: string;
  annotations?: Record<string, string>;
}

const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** A MeshNode with the given name; `created` is minutes after a fixed epoch. */
export function meshNode(name: string, o: NodeOpts = {}): MeshNode {
  const annotations: Record<string, string> = { ...(o.annotations ?? {}) };
  if (o.key !== undefined) annotations[ANNOTATION_PUBLIC_KEY] = o.key;
  if (o.address !== undefined) annotations[ANNOTATION_OVERLAY_ADDRESS] = o.address;
  if (o.endpoint !== undefined) annotations[ANNOTATION_ENDPOINT] = o.endpoint;
  return {
    name,
    createdAt: o.created === undefined ? Infinity : Date.UTC(2026, 0, 1) + o.created * 60_000,
    internalIPs: list(o.ip),
    externalIPs: list(o.external),
    podCIDRs: o.pods ?? [],
    annotations,
  };
}

/** The mesh settings most desired-state tests use (wg0, port 51820, MTU 1420, 100.64.0.0/10). */
export const MESH_SETTINGS: MeshSettings = {
  interfaceName: 'wg0',
  listenPort: 51820,
  mtu: 1420,
  persistentKeepalive: 0,
  overlayCidr: '100.64.0.0/10',
  endpoint: { mode: 'internal' },
};

/** What {@link publishedNode} builds a Node from. */
export interface PublishedNodeOpts {
  /** Its InternalIP. */
  ip: string;
  pods: string[];
  /** The public key it published. */
  key: string;
  /** Created this many minutes into 2026 (older Nodes win conflicts). */
  minute: number;
  /** Also publishes `ip:51820` as its endpoint. */
  endpoint?: boolean;
}

/** A Node object as a running daemon publishes it: its key (and endpoint), its InternalIP and PodCIDRs. */
export function publishedNode(name: string, o: PublishedNodeOpts): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      creationTimestamp: new Date(Date.UTC(2026, 0, 1, 0, o.minute)).toISOString(),
      annotations: {
        [ANNOTATION_PUBLIC_KEY]: o.key,
        ...(o.endpoint ? { [ANNOTATION_ENDPOINT]: `${o.ip}:51820` } : {}),
      },
    },
    spec: { podCIDR: o.pods[0], podCIDRs: o.pods },
    status: { addresses: [{ type: 'InternalIP', address: o.ip }] },
  };
}
