/**
 * Scale benchmark (not a timed test): one real daemon (wireguard-go, in a network namespace)
 * against the HTTPS API test server holding N synthetic Nodes of realistic size (image lists,
 * conditions, node info, labels; each published as a running daemon would: key, endpoint,
 * overlay address, PodCIDR). For each N it prints: time from start to READY ("mesh applied"),
 * RSS and peak RSS after start and after the changes, for single PodCIDR changes the latency
 * until the route is in place (p50/max, seen by `ip monitor route`) and the daemon's CPU per
 * change (from /proc, including the status and wg0.conf writes that follow), the commands and
 * host reads per change (from the daemon's debug log), and the API requests and commands at steady
 * state (10 s without changes), and the CPU of the periodic resync that re-reads the host once a
 * minute.
 *
 *   npm run bench -- scale [--nodes 1000,5000,10000] [--changes 20]
 *
 * The daemon runs with the Node.js flags of the shipped unit; BENCH_UNIT_FLAGS replaces them
 * (e.g. BENCH_UNIT_FLAGS=" " for none, to see what the JIT would buy) and BENCH_NODE_FLAGS adds
 * to them (e.g. --cpu-prof).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { Cluster, REPO_ROOT } from '../support/cluster/cluster.js';
import { requireTools } from '../support/process.js';

const CLK_TCK = 100;
const BUNDLE = join(REPO_ROOT, 'build', 'bundle', 'wg-overlay.mjs');

/** The Node.js flags of the shipped unit's ExecStart (between the node binary and the runtime). */
function unitNodeFlags(): string[] {
  if (process.env.BENCH_UNIT_FLAGS !== undefined) return process.env.BENCH_UNIT_FLAGS.split(' ').filter(Boolean);
  const exec = /^ExecStart=.*?\bnode((?:\s+--\S+)*)\s+\S+wg-overlay\.mjs/m.exec(
    readFileSync(join(REPO_ROOT, 'systemd', 'wg-overlay.service'), 'utf8'),
  );
  return exec?.[1]?.trim().split(/\s+/).filter(Boolean) ?? [];
}

/** A Node as a real cluster holds it (10-20 KB), published as a running daemon would. */
function syntheticNode(i: number): Record<string, unknown> {
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
          type === 'Ready'
            ? 'kubelet is posting ready status. AppArmor enabled'
            : `kubelet has no ${type.toLowerCase()}`,
      })),
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

/** The daemon's CPU time (user + system, ms) and memory (RSS and peak, MB) from /proc. */
function procStats(pid: number): { cpuMs: number; rssMb: number; peakMb: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuMs = ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
  return { cpuMs, rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.max(0, Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One measurement at N Nodes. */
async function measure(n: number, changes: number): Promise<string> {
  const cluster = await Cluster.create({ baseConfig: '[log]\nlevel = info' });
  let monitor: { kill(): void } | undefined;
  try {
    const t0 = performance.now();
    for (let i = 0; i < n - 1; i += 1) cluster.api.createNode(syntheticNode(i));
    process.stderr.write(`  ${n - 1} synthetic Nodes in the API server (${Math.round(performance.now() - t0)} ms)\n`);
    const start = performance.now();
    const self = await cluster.addNode('bench-self', { pod: false, podCIDRs: ['10.99.1.0/24'], start: false });
    // The daemon as the packages run it: the bundled runtime, with the unit's Node.js flags.
    const daemon = self.host.spawn(
      'node',
      [
        ...unitNodeFlags(),
        ...(process.env.BENCH_NODE_FLAGS?.split(' ').filter(Boolean) ?? []),
        BUNDLE,
        'run',
        '--config',
        '/etc/wg-overlay/wg-overlay.conf',
      ],
      process.env.BENCH_NODE_OPTIONS ? { env: { NODE_OPTIONS: process.env.BENCH_NODE_OPTIONS } } : {},
    );
    self.daemon = daemon;
    await daemon.waitForOutput(/mesh applied: \d+ peers/, 600_000);
    const readyMs = performance.now() - start;
    const applied = /mesh applied: (\d+) peers, (\d+) routes/.exec(daemon.output());
    await sleep(3_000); // status.json and wg0.conf are written a moment after
    if (process.env.BENCH_VERBOSE)
      process.stderr.write(
        `${daemon
          .output()
          .split('\n')
          .filter((l) => !/ (Node|Peer) (skipped|partly)/.test(l))
          .slice(0, 80)
          .join('\n')}\n`,
      );
    const afterStart = procStats(daemon.pid);
    if (process.env.BENCH_HEAPSNAP) {
      process.kill(daemon.pid, 'SIGUSR2');
      await sleep(15_000);
    }

    // Debug logging from here on, to count the commands each change runs.
    await self.host.writeFile(
      '/etc/wg-overlay/wg-overlay.conf',
      (await self.host.readFile('/etc/wg-overlay/wg-overlay.conf')).replace(/level = info/, 'level = debug'),
    );
    process.kill(daemon.pid, 'SIGHUP');
    await sleep(3_000);

    const seen = new Map<string, number>();
    const child = spawn('nsenter', ['-t', String(self.host.holderPid), '-n', '--', 'ip', 'monitor', 'route'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    monitor = child;
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^(10\.200\.\d+\.0\/24) dev wg0 proto 77/.exec(line);
      if (m && !seen.has(m[1]!)) seen.set(m[1]!, performance.now());
    });
    await sleep(500);
    const logMark = daemon.output().length;
    const cpu0 = procStats(daemon.pid).cpuMs;
    const latencies: number[] = [];
    for (let k = 0; k < changes; k += 1) {
      const i = Math.floor((k * 7919) % (n - 1));
      const name = `node-${String(i).padStart(5, '0')}`;
      const cidr = `10.200.${k}.0/24`;
      const base = `10.${100 + (i >> 8)}.${i & 255}.0/24`;
      const sent = performance.now();
      cluster.api.patchNode(name, { spec: { podCIDRs: [base, cidr] } });
      while (!seen.has(cidr) && performance.now() - sent < 30_000) await sleep(1);
      if (!seen.has(cidr)) throw new Error(`change ${k}: route ${cidr} did not appear within 30 s`);
      latencies.push(seen.get(cidr)! - sent);
      await sleep(700); // let the delayed status.json and wg0.conf writes happen inside the window
    }
    const cpuPerChange = (procStats(daemon.pid).cpuMs - cpu0) / changes;
    const log = daemon.output().slice(logMark).split('\n');
    const count = (re: RegExp): number => log.filter((l) => re.test(l)).length / changes;
    const reqMark = cluster.api.requests.length;
    const restMark = daemon.output().length;
    await sleep(10_000);
    const steadyRequests = cluster.api.requests.length - reqMark;
    const steadyCommands = daemon
      .output()
      .slice(restMark)
      .split('\n')
      .filter((l) => / exec: /.test(l)).length;
    // The periodic resync (once a minute) re-reads the host: its CPU, measured around the next one.
    const resyncMark = daemon.output().length;
    const cpuBeforeResync = procStats(daemon.pid).cpuMs;
    const resyncBy = performance.now() + 70_000;
    while (!daemon.output().slice(resyncMark).includes('reconcile: periodic resync') && performance.now() < resyncBy)
      await sleep(100);
    await sleep(3_000);
    const resyncCpu = procStats(daemon.pid).cpuMs - cpuBeforeResync;
    const end = procStats(daemon.pid);
    const sorted = [...latencies].sort((a, b) => a - b);
    const f1 = (x: number): string => x.toFixed(1);
    return [
      `| ${n.toLocaleString('en-US')} | ${(readyMs / 1000).toFixed(1)} s (${applied?.[1]} peers, ${applied?.[2]} routes) | ${Math.round(afterStart.rssMb)} MB (${Math.round(end.peakMb)}) |`,
      ` ${f1(percentile(sorted, 50))} / ${f1(sorted[sorted.length - 1]!)} ms | ${f1(cpuPerChange)} ms |`,
      ` ${f1(count(/exec: wg /))} \`wg\`, ${f1(count(/exec: ip (?!-batch)/))} \`ip\`, ${f1(count(/exec: ip -batch:/))} batch lines; ${f1(count(/exec: (wg show|ip -j)/))} host reads |`,
      ` ${steadyRequests} requests, ${steadyCommands} commands in 10 s | ${Math.round(resyncCpu)} ms |`,
    ].join('');
  } finally {
    monitor?.kill();
    await cluster.destroy();
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (name: string, dflt: string): string => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? (args[i + 1] ?? dflt) : dflt;
  };
  const sizes = opt('nodes', '1000,5000,10000').split(',').map(Number);
  const changes = Number(opt('changes', '20'));
  await requireTools(['wg', 'wireguard-go', 'ip', 'nsenter']);
  const rows: string[] = [];
  for (const n of sizes) {
    process.stderr.write(`measuring ${n} nodes...\n`);
    rows.push(await measure(n, changes));
  }
  process.stdout.write(
    [
      `One daemon (wireguard-go) against the API test server holding N realistic Nodes; ${changes} single PodCIDR changes each:`,
      '',
      '| Nodes | start → READY | RSS after start (peak) | route in place p50 / max | daemon CPU per change | commands per change | at rest (API, commands) | periodic resync CPU |',
      '|---|---|---|---|---|---|---|---|',
      ...rows,
      '',
    ].join('\n'),
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
