/**
 * The Kubernetes boundary: V1Node JSON → MeshNode, including podCIDR fallback, only our own
 * annotations, and hostile shapes.
 */
import assert from 'node:assert/strict';
import type { V1Node } from '@kubernetes/client-node';
import { toMeshNode } from '../../../service/src/kube/node-translate.js';

describe('unit: V1Node → MeshNode', () => {
  it('keeps name, age, addresses, PodCIDRs and the annotations the mesh reads only (no unknown wg-overlay.io/ key)', () => {
    const n = toMeshNode({
      metadata: {
        name: 'n1',
        creationTimestamp: new Date('2026-01-01T00:00:00Z'),
        annotations: { 'wg-overlay.io/public-key': ' k ', 'other.io/x': 'y', 'wg-overlay.io/unknown': 'z' },
      },
      spec: { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24', 'fd00::/64'] },
      status: {
        addresses: [
          { type: 'InternalIP', address: '192.0.2.5' },
          { type: 'ExternalIP', address: '203.0.113.5' },
          { type: 'Hostname', address: 'n1' },
        ],
      },
    } as V1Node);
    assert.deepEqual(n, {
      name: 'n1',
      createdAt: Date.parse('2026-01-01T00:00:00Z'),
      internalIPs: ['192.0.2.5'],
      externalIPs: ['203.0.113.5'],
      podCIDRs: ['10.244.1.0/24', 'fd00::/64'],
      annotations: { 'wg-overlay.io/public-key': 'k' },
    });
  });

  it('falls back to spec.podCIDR when spec.podCIDRs is absent', () => {
    const n = toMeshNode({ metadata: { name: 'n' }, spec: { podCIDR: '10.244.9.0/24' } } as V1Node);
    assert.deepEqual(n?.podCIDRs, ['10.244.9.0/24']);
    assert.equal(n?.createdAt, Infinity);
  });

  it('survives missing or odd fields and drops oversized annotations', () => {
    assert.equal(toMeshNode({} as V1Node), undefined);
    const n = toMeshNode({
      metadata: { name: 'x', annotations: { 'wg-overlay.io/endpoint': 'a'.repeat(5000) } },
      spec: { podCIDRs: [7 as unknown as string, 'ok'] },
      status: { addresses: 'nope' as unknown as [] },
    } as V1Node);
    assert.deepEqual(n, {
      name: 'x',
      createdAt: Infinity,
      internalIPs: [],
      externalIPs: [],
      podCIDRs: ['ok'],
      annotations: {},
    });
  });
});
