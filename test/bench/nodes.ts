/**
 * Synthetic Nodes of realistic size for the benchmarks (10-20 KB each: 40 images, conditions,
 * node info, labels), published as a running daemon would (key, endpoint, overlay address, PodCIDR).
 */
import { randomBytes } from 'node:crypto';

/** What a kubelet reports of a node besides its addresses: capacity, allocatable, conditions. */
function kubeletStatus(t: string): Record<string, unknown> {
  return {
    capacity: {
      cpu: '4',
      'ephemeral-storage': '104845292Ki',
      'hugepages-1Gi': '0',
      'hugepages-2Mi': '0',
      memory: '16069828Ki',
      pods: '110',
    },
    allocatable: {
      cpu: '3920m',
      'ephemeral-storage': '95551679124',
      'hugepages-1Gi': '0',
      'hugepages-2Mi': '0',
      memory: '15152324Ki',
      pods: '110',
    },
    conditions: ['MemoryPressure', 'DiskPressure', 'PIDPressure', 'Ready', 'NetworkUnavailable'].map((type) => ({
      type,
      status: type === 'Ready' ? 'True' : 'False',
      lastHeartbeatTime: t,
      lastTransitionTime: t,
      reason: type === 'Ready' ? 'KubeletReady' : `KubeletHasNo${type}`,
      message:
        type === 'Ready' ? 'kubelet is posting ready status. AppArmor enabled' : `kubelet has no ${type.toLowerCase()}`,
    })),
  };
}

/** A Node as a real cluster holds it (10-20 KB), published as a running daemon would. */
export function syntheticNode(i: number): Record<string, unknown> {
  const ip = `198.18.${(i >> 8) & 255}.${i & 255}`;
  const a = Math.floor(i / 250);
  const overlay = `100.${64 + (a >> 8)}.${a & 255}.${(i % 250) + 1}`;
  const pod = `10.${100 + (i >> 8)}.${i & 255}.0/24`;
  const name = `node-${String(i).padStart(5, '0')}`;
  const images = Array.from({ length: 40 }, (_, k) => ({
    names: [
      `registry.example.com/team-${k % 7}/service-${k}@sha256:${randomBytes(32).toString('hex')}`,
      `registry.example.com/team-${k % 7}/service-${k}:v1.${k}.${i % 10}`,
    ],
    sizeBytes: 10_000_000 + k * 1_234_567,
  }));
  const t = '2026-11-01T00:00:00Z';
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      labels: {
        'kubernetes.io/hostname': name,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        'beta.kubernetes.io/os': 'linux',
        'beta.kubernetes.io/arch': 'amd64',
        'node.kubernetes.io/instance-type': 'm5.xlarge',
        'topology.kubernetes.io/region': `region-${i % 3}`,
        'topology.kubernetes.io/zone': `zone-${i % 9}`,
        'node-role.kubernetes.io/worker': '',
      },
      annotations: {
        'node.alpha.kubernetes.io/ttl': '0',
        'volumes.kubernetes.io/controller-managed-attach-detach': 'true',
        'kubeadm.alpha.kubernetes.io/cri-socket': 'unix:///run/containerd/containerd.sock',
        'wg-overlay.io/public-key': randomBytes(32).toString('base64'),
        'wg-overlay.io/overlay-address': overlay,
        'wg-overlay.io/endpoint': `${ip}:51820`,
      },
    },
    spec: { podCIDR: pod, podCIDRs: [pod], providerID: `aws:///zone-${i % 9}/i-${randomBytes(8).toString('hex')}` },
    status: {
      ...kubeletStatus(t),
      addresses: [
        { type: 'InternalIP', address: ip },
        { type: 'Hostname', address: name },
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
      nodeInfo: {
        machineID: randomBytes(16).toString('hex'),
        systemUUID: randomBytes(16).toString('hex'),
        bootID: randomBytes(16).toString('hex'),
        kernelVersion: '6.1.0-27-cloud-amd64',
        osImage: 'Debian GNU/Linux 12 (bookworm)',
        containerRuntimeVersion: 'containerd://1.7.24',
        kubeletVersion: 'v1.31.4',
        kubeProxyVersion: 'v1.31.4',
        operatingSystem: 'linux',
        architecture: 'amd64',
      },
      images,
    },
  };
}
