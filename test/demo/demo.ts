/**
 * The demo (README's first command, `npm run demo`): a local 3-node cluster on this machine —
 * the embedded Kubernetes API test server, three nodes as network namespaces with userspace
 * WireGuard, one real `wg-overlay run` per node — then each node's peers and a pod-to-pod ping
 * through the tunnel. Everything is removed on exit or Ctrl-C.
 */
import { Cluster } from '../support/cluster/cluster.js';
import { requireTools } from '../support/process.js';

const NODES = ['node-a', 'node-b', 'node-c'];

function say(text: string): void {
  process.stdout.write(`\n\x1b[1m== ${text}\x1b[0m\n`);
}

async function main(): Promise<number> {
  await requireTools(['wg', 'wg-quick', 'wireguard-go', 'ip', 'nsenter', 'unshare', 'ping']);
  let cluster: Cluster | undefined;
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> => {
    cleaning ??= (async () => {
      say('cleaning up: stopping daemons, removing namespaces and the API server');
      await cluster?.destroy();
    })();
    return cleaning;
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      void cleanup().then(() => process.exit(130));
    });
  }
  try {
    say('starting the Kubernetes API test server (HTTPS, bearer token) on a test underlay');
    cluster = await Cluster.create();
    process.stdout.write(`API server: ${cluster.api.url}\n`);
    say(`starting ${NODES.length} nodes (network namespaces) with a pod each and one wg-overlay daemon each`);
    await Promise.all(NODES.map((n) => cluster!.addNode(n)));
    const t0 = Date.now();
    await cluster.waitForMesh();
    process.stdout.write(`full mesh in ${Date.now() - t0} ms after the daemons started\n`);

    for (const n of NODES) {
      const node = cluster.must(n);
      say(
        `${n}: InternalIP ${node.address}, overlay ${cluster.overlayAddress(n)}, PodCIDR ${node.podCIDRs.join(', ')}`,
      );
      const wg = await node.host.exec('wg', ['show', 'wg0']);
      process.stdout.write(wg.stdout);
      const routes = await node.host.exec('ip', ['route', 'show', 'proto', '77']);
      process.stdout.write(`routes owned by wg-overlay (proto 77):\n${routes.stdout}`);
    }

    const a = cluster.must('node-a');
    const c = cluster.must('node-c');
    say(`ping from the pod on node-a (${a.podIp}) to the pod on node-c (${c.podIp}) through the tunnel`);
    const ping = await a.pod!.exec('ping', ['-c', '4', '-i', '0.3', c.podIp], { allowFailure: true });
    process.stdout.write(ping.stdout);
    const dev = await cluster.device('node-a');
    const peer = dev?.peers.find((p) => p.publicKey === cluster!.publicKey('node-c'));
    process.stdout.write(
      `wg0 on node-a → node-c: sent ${peer?.txBytes ?? 0} bytes, received ${peer?.rxBytes ?? 0} bytes\n`,
    );
    say("what node-a's daemon logged (journald-style, one line per change)");
    process.stdout.write(
      a
        .daemon!.output()
        .split('\n')
        .filter((l) => !/ debug /.test(l))
        .join('\n'),
    );

    if (process.stdin.isTTY) {
      say(
        'the demo cluster keeps running: try `ip netns` and `nsenter -t <pid> -m -n wg show`; press Enter or Ctrl-C to stop',
      );
      await new Promise<void>((resolve) => {
        process.stdin.once('data', () => resolve());
      });
      process.stdin.pause();
    }
    return ping.exitCode === 0 ? 0 : 1;
  } finally {
    await cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`demo failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
