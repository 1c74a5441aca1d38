/**
 * Scale benchmark (not a timed test): one real daemon (wireguard-go, in a network namespace)
 * against the HTTPS API test server holding N synthetic Nodes of realistic size (image lists,
 * conditions, node info, labels; each published as a running daemon would: key, endpoint,
 * overlay address, PodCIDR). For each N it prints: time from start to READY ("mesh applied": every
 * peer and route in place), RSS and peak RSS, and for single PodCIDR changes the latency until
 * the route is in place (p50/max, seen by `ip monitor route`) and the daemon's CPU per change
 * (from /proc, everything the daemon did over the whole sequence divided by the changes, file
 * writes included), twice: isolated changes (each sent once the daemon is idle again, as changes
 * arrive in a real cluster) and a burst (all sent 20 ms apart); the commands and host reads per
 * change (from the daemon's debug log), the API requests and commands at rest (10 s without
 * changes), and the CPU of the periodic resync that re-reads the host once a minute.
 *
 *   npm run bench -- scale [--nodes 1000,5000,15000] [--changes 20]
 *
 * The daemon runs with the Node.js flags of the shipped unit; BENCH_UNIT_FLAGS replaces them
 * (e.g. BENCH_UNIT_FLAGS=" " for none, to see what the JIT would buy) and BENCH_NODE_FLAGS adds
 * to them (e.g. --cpu-prof). BENCH_START_LOG and BENCH_LOG name files for the daemon's log up to
 * READY and of the isolated changes, BENCH_LEVEL its log level at start (info).
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { Cluster, REPO_ROOT } from '../support/cluster/cluster.js';
import { requireTools, type TestProcess } from '../support/process.js';
import { syntheticNode } from './nodes.js';

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

/** A daemon started against N Nodes, with what its start cost. */
interface Run {
  cluster: Cluster;
  daemon: TestProcess;
  holderPid: number;
  readyMs: number;
  /** How long the daemon's list of Nodes took (its log). */
  listMs: number;
  peers: string;
  routes: string;
  afterStart: ReturnType<typeof procStats>;
}

/** What a sequence of PodCIDR changes cost. */
interface ChangeFigures {
  latencies: number[];
  cpuPerChange: number;
  log: string[];
}

/** Starts the daemon as the packages run it (the bundled runtime, the unit's Node.js flags) against N Nodes. */
async function startRun(n: number): Promise<Run> {
  const cluster = await Cluster.create({ baseConfig: `[log]\nlevel = ${process.env.BENCH_LEVEL ?? 'info'}` });
  const t0 = performance.now();
  for (let i = 0; i < n - 1; i += 1) cluster.api.createNode(syntheticNode(i));
  process.stderr.write(`  ${n - 1} synthetic Nodes in the API server (${Math.round(performance.now() - t0)} ms)\n`);
  const start = performance.now();
  const self = await cluster.addNode('bench-self', { pod: false, podCIDRs: ['10.99.1.0/24'], start: false });
  const flags = [...unitNodeFlags(), ...(process.env.BENCH_NODE_FLAGS?.split(' ').filter(Boolean) ?? [])];
  const daemon = self.host.spawn(
    'node',
    [...flags, BUNDLE, 'run', '--config', '/etc/wg-overlay/wg-overlay.conf'],
    process.env.BENCH_NODE_OPTIONS ? { env: { NODE_OPTIONS: process.env.BENCH_NODE_OPTIONS } } : {},
  );
  self.daemon = daemon;
  await daemon.waitForOutput(/mesh applied: \d+ peers/, 600_000);
  const readyMs = performance.now() - start;
  if (process.env.BENCH_START_LOG) writeFileSync(process.env.BENCH_START_LOG, daemon.output());
  const applied = /mesh applied: (\d+) peers, (\d+) routes/.exec(daemon.output());
  const listMs = Number(/node watch: listed \d+ \(\d+ pages\) in (\d+) ms/.exec(daemon.output())?.[1] ?? NaN);
  await sleep(3_000);
  const afterStart = procStats(daemon.pid);
  // Debug logging from here on, to count the commands each change runs.
  const conf = await self.host.readFile('/etc/wg-overlay/wg-overlay.conf');
  await self.host.writeFile('/etc/wg-overlay/wg-overlay.conf', conf.replace(/level = \w+/, 'level = debug'));
  process.kill(daemon.pid, 'SIGHUP');
  await sleep(3_000);
  return {
    cluster,
    daemon,
    holderPid: self.host.holderPid,
    readyMs,
    listMs,
    peers: applied?.[1] ?? '?',
    routes: applied?.[2] ?? '?',
    afterStart,
  };
}

/** Resolves once the daemon has used no CPU for a second (at most `maxMs`). */
async function idle(pid: number, maxMs = 20_000): Promise<void> {
  const until = performance.now() + maxMs;
  let last = procStats(pid).cpuMs;
  let quietSince = performance.now();
  while (performance.now() < until && performance.now() - quietSince < 1_000) {
    await sleep(100);
    const now = procStats(pid).cpuMs;
    if (now !== last) quietSince = performance.now();
    last = now;
  }
}

/** Watches the daemon's routing table for the routes the changes add (first sighting of each). */
function watchRoutes(holderPid: number): { seen: Map<string, number>; stop(): void } {
  const seen = new Map<string, number>();
  const child = spawn('nsenter', ['-t', String(holderPid), '-n', '--', 'ip', 'monitor', 'route'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  createInterface({ input: child.stdout }).on('line', (line) => {
    const m = /^(10\.(?:200|201)\.\d+\.0\/24) dev wg0 proto 77/.exec(line);
    if (m && !seen.has(m[1]!)) seen.set(m[1]!, performance.now());
  });
  return { seen, stop: () => child.kill() };
}

/**
 * `changes` single PodCIDR changes (a second PodCIDR for a Node): `isolated` sends each once the
 * daemon is idle again, `burst` sends all 20 ms apart. The CPU is the daemon's over the whole
 * sequence until it is idle again, divided by the changes.
 */
async function changeRoutes(
  run: Run,
  n: number,
  o: { changes: number; mode: 'isolated' | 'burst' },
): Promise<ChangeFigures> {
  const watch = watchRoutes(run.holderPid);
  await sleep(500);
  await idle(run.daemon.pid);
  const logMark = run.daemon.output().length;
  const cpu0 = procStats(run.daemon.pid).cpuMs;
  const second = o.mode === 'isolated' ? 200 : 201;
  const sent = new Map<string, number>();
  for (let k = 0; k < o.changes; k += 1) {
    const i = Math.floor((k * 7919 + (o.mode === 'burst' ? 3 : 0)) % (n - 1));
    const cidr = `10.${second}.${k}.0/24`;
    sent.set(cidr, performance.now());
    const base = `10.${100 + (i >> 8)}.${i & 255}.0/24`;
    run.cluster.api.patchNode(`node-${String(i).padStart(5, '0')}`, { spec: { podCIDRs: [base, cidr] } });
    if (o.mode === 'isolated') {
      while (!watch.seen.has(cidr) && performance.now() - sent.get(cidr)! < 30_000) await sleep(1);
      await idle(run.daemon.pid);
    } else await sleep(20);
  }
  const by = performance.now() + 60_000;
  while ([...sent.keys()].some((c) => !watch.seen.has(c)) && performance.now() < by) await sleep(5);
  await idle(run.daemon.pid);
  watch.stop();
  const missing = [...sent.keys()].filter((c) => !watch.seen.has(c));
  if (missing.length > 0) throw new Error(`routes ${missing.join(', ')} did not appear within the time allowed`);
  return {
    latencies: [...sent].map(([c, t]) => watch.seen.get(c)! - t),
    cpuPerChange: (procStats(run.daemon.pid).cpuMs - cpu0) / o.changes,
    log: run.daemon.output().slice(logMark).split('\n'),
  };
}

/**
 * The CPU of the next periodic resync (it re-reads the host once a minute), then API requests and
 * commands in the 10 s after it: at rest, with no resync due. Watch renewals (the server ends each
 * watch after 4–6 minutes and the daemon resumes it) are counted apart from other requests.
 */
async function atRest(run: Run): Promise<{ requests: number; renewals: number; commands: number; resyncCpu: number }> {
  const resyncMark = run.daemon.output().length;
  await idle(run.daemon.pid);
  const cpuBefore = procStats(run.daemon.pid).cpuMs;
  const by = performance.now() + 70_000;
  while (!run.daemon.output().slice(resyncMark).includes('reconcile: periodic resync') && performance.now() < by)
    await sleep(100);
  await idle(run.daemon.pid);
  const resyncCpu = procStats(run.daemon.pid).cpuMs - cpuBefore;
  const reqMark = run.cluster.api.requests.length;
  const restMark = run.daemon.output().length;
  await sleep(10_000);
  const requests = run.cluster.api.requests.slice(reqMark);
  const renewals = requests.filter((r) => /[?&]watch=(true|1)/.test(r.query)).length;
  const commands = run.daemon
    .output()
    .slice(restMark)
    .split('\n')
    .filter((l) => / exec: /.test(l)).length;
  return { requests: requests.length - renewals, renewals, commands, resyncCpu };
}

/** One table row at N Nodes. */
async function measure(n: number, changes: number): Promise<string> {
  const run = await startRun(n);
  try {
    const isolated = await changeRoutes(run, n, { changes, mode: 'isolated' });
    if (process.env.BENCH_LOG) writeFileSync(process.env.BENCH_LOG, isolated.log.join('\n'));
    const burst = await changeRoutes(run, n, { changes, mode: 'burst' });
    const rest = await atRest(run);
    const end = procStats(run.daemon.pid);
    const f1 = (x: number): string => x.toFixed(1);
    const lat = (c: ChangeFigures): string => {
      const sorted = [...c.latencies].sort((a, b) => a - b);
      return `${f1(percentile(sorted, 50))} / ${f1(sorted[sorted.length - 1]!)} ms, ${f1(c.cpuPerChange)} ms`;
    };
    const count = (re: RegExp): string => f1(isolated.log.filter((l) => re.test(l)).length / changes);
    return [
      `| ${n.toLocaleString('en-US')} | ${(run.readyMs / 1000).toFixed(1)} s (${run.peers} peers, ${run.routes} routes;`,
      ` of it the list of Nodes ${(run.listMs / 1000).toFixed(1)} s) |`,
      ` ${Math.round(run.afterStart.rssMb)} MB (${Math.round(end.peakMb)}) | ${lat(isolated)} | ${lat(burst)} |`,
      ` ${count(/exec: wg /)} \`wg\`, ${count(/exec: ip (?!-batch)/)} \`ip\`, ${count(/exec: ip -batch:/)} batch lines,`,
      ` ${count(/exec: nft /)} \`nft\`;`,
      ` ${count(/exec: (wg show|ip -j)/)} host reads; ${count(/wrote \S+wg0\.conf/)} wg0.conf writes |`,
      ` ${rest.requests} requests${rest.renewals ? ` (and ${rest.renewals} watch renewed)` : ''}, ${rest.commands} commands in 10 s |`,
      ` ${Math.round(rest.resyncCpu)} ms |`,
    ].join('');
  } finally {
    // Time to stop on its own (with --cpu-prof in BENCH_NODE_FLAGS, to write its profile).
    await run.daemon.stop('SIGTERM', 30_000).catch(() => undefined);
    await run.cluster.destroy();
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (name: string, dflt: string): string => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? (args[i + 1] ?? dflt) : dflt;
  };
  const sizes = opt('nodes', '1000,5000,15000').split(',').map(Number);
  const changes = Number(opt('changes', '20'));
  await requireTools(['wg', 'wireguard-go', 'ip', 'nsenter']);
  const rows: string[] = [];
  for (const n of sizes) {
    process.stderr.write(`measuring ${n} nodes...\n`);
    rows.push(await measure(n, changes));
  }
  process.stdout.write(
    [
      `One daemon (wireguard-go) against the API test server holding N realistic Nodes; ${changes} single PodCIDR changes`,
      'each, isolated (each sent once the daemon is idle) and in a burst (20 ms apart):',
      '',
      '| Nodes | start → every peer and route in place | RSS after start (peak) | isolated: route in place p50 / max, CPU per change |' +
        ' burst: route in place p50 / max, CPU per change | per isolated change | at rest (API, commands) | periodic resync CPU |',
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
