/**
 * What a kubelet's status report costs the mesh (for docs/scale.md): the bytes one daemon's Node
 * watch receives for one Node status update (a heartbeat of its conditions), measured on the
 * HTTPS API test server with realistic Nodes (images, conditions, node info, labels, and the
 * managedFields a real API server keeps), as a full watch (what the daemon runs today) and as a
 * metadata-only watch (PartialObjectMetadata), and what that makes across a cluster.
 *
 *   npm run bench -- watch-bytes [--reports 20]
 */
import { request } from 'node:https';
import { KubeApiServer } from '../kube-api/server.js';
import { syntheticNode } from './nodes.js';

const TOKEN = 'bench-token';

/** managedFields of the size a real API server keeps on a Node (kubelet, controller-manager, kubeadm, wg-overlay). */
function managedFields(t: string): unknown[] {
  const manager = (name: string, operation: string, fields: Record<string, unknown>, subresource?: string) => ({
    manager: name,
    operation,
    apiVersion: 'v1',
    time: t,
    fieldsType: 'FieldsV1',
    fieldsV1: fields,
    ...(subresource ? { subresource } : {}),
  });
  const conditions = Object.fromEntries(
    ['DiskPressure', 'MemoryPressure', 'PIDPressure', 'Ready', 'NetworkUnavailable'].map((c) => [
      `k:{"type":"${c}"}`,
      {
        '.': {},
        'f:lastHeartbeatTime': {},
        'f:lastTransitionTime': {},
        'f:message': {},
        'f:reason': {},
        'f:status': {},
        'f:type': {},
      },
    ]),
  );
  return [
    manager('kubelet', 'Update', {
      'f:metadata': { 'f:annotations': { '.': {}, 'f:node.alpha.kubernetes.io/ttl': {} }, 'f:labels': { '.': {} } },
    }),
    manager('kube-controller-manager', 'Update', {
      'f:spec': { 'f:podCIDR': {}, 'f:podCIDRs': { '.': {}, 'v:"10.0.0.0/24"': {} } },
    }),
    manager(
      'kubelet',
      'Update',
      { 'f:status': { 'f:conditions': conditions, 'f:images': {}, 'f:nodeInfo': {} } },
      'status',
    ),
    manager('wg-overlay', 'Update', {
      'f:metadata': { 'f:annotations': { 'f:wg-overlay.io/public-key': {}, 'f:wg-overlay.io/endpoint': {} } },
    }),
  ];
}

/** A per-node mesh object (one option of docs/scale.md): only what the mesh uses, changed only when that changes. */
const MESH_NODE_RESOURCE = {
  group: 'wg-overlay.io',
  version: 'v1alpha1',
  kind: 'MeshNode',
  plural: 'meshnodes',
  singular: 'meshnode',
  namespaced: false,
} as const;

/** The mesh object of a synthetic Node: key, endpoint, overlay addresses, node addresses, PodCIDRs. */
function meshNodeOf(
  node: { metadata: { name: string; annotations?: Record<string, string> } } & Record<string, unknown>,
) {
  const a = node.metadata.annotations ?? {};
  const spec = node.spec as { podCIDRs: string[] };
  const status = node.status as { addresses: Array<{ type: string; address: string }> };
  return {
    apiVersion: 'wg-overlay.io/v1alpha1',
    kind: 'MeshNode',
    metadata: { name: node.metadata.name },
    spec: {
      publicKey: a['wg-overlay.io/public-key'],
      endpoint: a['wg-overlay.io/endpoint'],
      overlayAddress: a['wg-overlay.io/overlay-address'],
      addresses: status.addresses.filter((x) => x.type !== 'Hostname'),
      podCIDRs: spec.podCIDRs,
    },
  };
}

/** Opens a watch of a collection (`path`) from `resourceVersion`; counts the bytes and the events it receives. */
function watchBytes(server: KubeApiServer, o: { accept: string; from: string; path?: string }) {
  const url = new URL(`${server.url!}${o.path ?? '/api/v1/nodes'}?watch=1&resourceVersion=${o.from}`);
  return new Promise<{ bytes: () => number; events: () => number; close(): void }>((resolve, reject) => {
    let bytes = 0;
    let events = 0;
    const req = request(
      url,
      { ca: server.caPem, headers: { authorization: `Bearer ${TOKEN}`, accept: o.accept } },
      (res) => {
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          events += chunk.toString('utf8').split('\n').length - 1;
        });
        resolve({ bytes: () => bytes, events: () => events, close: () => req.destroy() });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** A heartbeat as a kubelet sends it: every condition's lastHeartbeatTime moves on. */
function heartbeat(node: Record<string, unknown>, t: string): Record<string, unknown> {
  const status = node.status as { conditions: Array<Record<string, unknown>> };
  return { status: { conditions: status.conditions.map((c) => ({ ...c, lastHeartbeatTime: t })) } };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The bytes a watch of per-node mesh objects receives for one change of one (a new PodCIDR). */
async function meshObjectBytes(
  server: KubeApiServer,
  nodes: Array<{ metadata: { name: string } } & Record<string, unknown>>,
): Promise<number> {
  const meshNodes = server.registerResource(MESH_NODE_RESOURCE);
  for (const n of nodes) meshNodes.create(meshNodeOf(n));
  const rv = String(Math.max(...meshNodes.list().map((o) => Number(o.metadata?.resourceVersion ?? 0))));
  const path = '/apis/wg-overlay.io/v1alpha1/meshnodes';
  const watch = await watchBytes(server, { accept: 'application/json', from: rv, path });
  await sleep(300);
  const before = watch.bytes();
  for (const n of nodes) {
    const o = meshNodeOf(n);
    const rv = meshNodes.get(o.metadata.name)?.metadata?.resourceVersion;
    meshNodes.update({
      ...o,
      metadata: { ...o.metadata, resourceVersion: rv },
      spec: { ...o.spec, podCIDRs: [...o.spec.podCIDRs, '10.250.0.0/24'] },
    });
  }
  await sleep(1_000);
  watch.close();
  return (watch.bytes() - before) / nodes.length;
}

/** Measures the bytes per status report on both watches and prints them with what they make across a cluster. */
async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const i = args.indexOf('--reports');
  const reports = i >= 0 ? Number(args[i + 1]) : 20;
  const server = new KubeApiServer({ token: TOKEN });
  await server.start();
  try {
    const t0 = '2026-11-01T00:00:00Z';
    const nodes = Array.from({ length: reports }, (_, k) => {
      const n = syntheticNode(k) as { metadata: { name: string } } & Record<string, unknown>;
      return { ...n, metadata: { ...n.metadata, managedFields: managedFields(t0) } };
    });
    for (const n of nodes) server.createNode(n);
    const rv = String(server.listNodes().reduce((m, n) => Math.max(m, Number(n.metadata?.resourceVersion ?? 0)), 0));
    const full = await watchBytes(server, { accept: 'application/json', from: rv });
    const meta = await watchBytes(server, {
      accept: 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1',
      from: rv,
    });
    await sleep(300);
    const before = { full: full.bytes(), meta: meta.bytes() };
    nodes.forEach((n, k) =>
      server.patchNode(n.metadata.name, heartbeat(n, `2026-11-01T00:05:${String(k).padStart(2, '0')}Z`)),
    );
    await sleep(1_000);
    const perFull = (full.bytes() - before.full) / reports;
    const perMeta = (meta.bytes() - before.meta) / reports;
    full.close();
    meta.close();
    const perMesh = await meshObjectBytes(server, nodes);
    const kb = (b: number): string => `${(b / 1024).toFixed(1)} KiB`;
    const rate = (n: number, perEvent: number): string => {
      // Every Node reports every 5 minutes (the kubelet's nodeStatusReportFrequency), and every daemon watches every Node.
      const perDaemon = (n / 300) * perEvent;
      return `${kb(perDaemon)}/s per daemon, ${((perDaemon * n) / 1024 / 1024).toFixed(0)} MiB/s for the cluster`;
    };
    const rows = [1_000, 5_000, 15_000].map(
      (n) => `| ${n.toLocaleString('en-US')} | ${rate(n, perFull)} | ${rate(n, perMeta)} |`,
    );
    process.stdout.write(
      [
        `One status report (a heartbeat of a Node's conditions) reaches a Node watch as ${kb(perFull)} (full objects, what the`,
        `daemon watches today) or ${kb(perMeta)} (PartialObjectMetadata); measured over ${reports} reports on the API test server.`,
        `A per-node mesh object receives nothing for a status report; a change of what the mesh uses reaches its watch as ${kb(perMesh)}.`,
        'Every Node reporting every 5 minutes, every daemon watching every Node:',
        '',
        '| Nodes | full watch | metadata-only watch |',
        '|---|---|---|',
        ...rows,
        '',
      ].join('\n'),
    );
  } finally {
    await server.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
