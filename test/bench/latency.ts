/**
 * Benchmark (not a timed test): how long from a change to a Node in the API (a PodCIDR added)
 * until the matching peer AllowedIPs and route are in place on every other node, on a 5-node
 * namespace mesh. Each node runs `ip monitor route`; the time a node's monitor prints the new
 * route is that node's route time; the daemon's "updated peer" log line (written once `wg set`
 * returned) is its peer time; a change counts once both are in place on every other node.
 * Prints p50/p90/p99.
 *
 *   npm run bench [-- CHANGES]        (default 60 changes)
 *   BENCH_CONFIG=$'[wireguard]\nfail_closed = off' npm run bench    (the daemons' config, INI)
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Cluster } from '../support/cluster/cluster.js';
import { requireTools } from '../support/process.js';

const NODES = ['node-a', 'node-b', 'node-c', 'node-d', 'node-e'];

function percentile(sorted: number[], p: number): number {
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)]!;
}

async function main(): Promise<void> {
  const changes = Number(process.argv[2] ?? 60);
  await requireTools(['wg', 'wireguard-go', 'ip', 'nsenter']);
  const cluster = await Cluster.create({ baseConfig: process.env.BENCH_CONFIG ?? '[log]\nlevel = info' });
  const monitors: Array<{ stop(): void }> = [];
  try {
    await Promise.all(NODES.map((n) => cluster.addNode(n, { pod: false })));
    await cluster.waitForMesh(NODES, 30_000);
    // name → (cidr → time seen)
    const seen = new Map<string, Map<string, number>>();
    for (const n of NODES) {
      const m = new Map<string, number>();
      seen.set(n, m);
      // Each node's `ip monitor route`, read line by line as it prints (no polling, so the
      // harness takes as little CPU from the daemons as possible).
      const child = spawn(
        'nsenter',
        ['-t', String(cluster.must(n).host.holderPid), '-n', '--', 'ip', 'monitor', 'route'],
        { stdio: ['ignore', 'pipe', 'ignore'] },
      );
      monitors.push({
        stop: () => {
          child.kill();
        },
      });
      createInterface({ input: child.stdout }).on('line', (line) => {
        const mm = /^(10\.250\.\d+\.0\/24) dev wg0 proto 77/.exec(line);
        if (mm && !m.has(mm[1]!)) m.set(mm[1]!, performance.now());
      });
    }
    await new Promise((r) => setTimeout(r, 500));
    const latencies: number[] = [];
    for (let i = 0; i < changes; i += 1) {
      const target = NODES[i % NODES.length]!;
      const node = cluster.must(target);
      const cidr = `10.250.${i}.0/24`;
      node.podCIDRs = [...node.podCIDRs, cidr];
      const others = NODES.filter((n) => n !== target);
      const marks = new Map(others.map((o) => [o, cluster.must(o).daemon!.output().length]));
      const wall0 = Date.now();
      const t0 = performance.now();
      cluster.api.patchNode(target, { spec: { podCIDRs: node.podCIDRs } });
      const deadline = Date.now() + 10_000;
      while (others.some((o) => !seen.get(o)!.has(cidr)) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 2));
      const times = others.map((o) => seen.get(o)!.get(cidr));
      if (times.some((t) => t === undefined))
        throw new Error(`change ${i}: route ${cidr} did not reach every node within 10 s`);
      // The peer update: the daemon logs "updated peer …" once `wg set` has returned.
      const peerAt = async (o: string): Promise<number> => {
        const re = new RegExp(`^(\\S+) info +updated peer ${target} .*→ .*${cidr.replace(/[./]/g, '\\$&')}`, 'm');
        for (;;) {
          const m = re.exec(cluster.must(o).daemon!.output().slice(marks.get(o)));
          if (m) return Date.parse(m[1]!) - wall0;
          if (Date.now() > deadline) throw new Error(`change ${i}: no peer update for ${cidr} on ${o}`);
          await new Promise((r) => setTimeout(r, 5));
        }
      };
      const peerMs = await Promise.all(others.map(peerAt));
      latencies.push(Math.max(Math.max(...(times as number[])) - t0, ...peerMs));
      await new Promise((r) => setTimeout(r, 50));
    }
    const sorted = [...latencies].sort((a, b) => a - b);
    const fmt = (x: number): string => `${x.toFixed(1)} ms`;
    process.stdout.write(
      `${NODES.length}-node mesh, ${changes} PodCIDR additions, time until the peer update and the route are in place on every other node:\n`,
    );
    process.stdout.write(
      `  p50 ${fmt(percentile(sorted, 50))}  p90 ${fmt(percentile(sorted, 90))}  p99 ${fmt(percentile(sorted, 99))}` +
        `  max ${fmt(sorted[sorted.length - 1]!)}  min ${fmt(sorted[0]!)}\n`,
    );
  } finally {
    for (const m of monitors) m.stop();
    await cluster.destroy();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
