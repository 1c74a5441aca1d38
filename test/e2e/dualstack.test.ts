/**
 * End-to-end IPv6 (issue 13): real daemons on a dual-stack underlay carry pod traffic of both
 * families and answer on both overlay addresses, then fail over to a peer's other address family
 * when its first endpoint goes dark; an IPv6-only cluster (underlay and API server) still runs a
 * dual-stack overlay; and a node behind a NAT router is reached at the endpoint other nodes saw it
 * arrive from.
 */
import assert from 'node:assert/strict';
import { CLI, Cluster, waitFor, type ClusterNode } from '../support/cluster/cluster.js';
import { NatRouter } from '../support/namespaces/nat.js';
import { pingAll, pingReplies } from '../support/namespaces/pods.js';
import { documentedMetrics, parseExposition, sampleValue } from '../support/monitoring.js';
import { requireTools } from '../support/process.js';
import {
  ANNOTATION_DISCOVERED,
  ANNOTATION_OVERLAY_ADDRESS,
  ANNOTATION_OVERLAY_ADDRESS6,
} from '../../service/src/mesh/annotations.js';

const TOOLS = ['wg', 'wireguard-go', 'ip', 'nsenter', 'unshare', 'ping', 'nft'];

/** Text as a literal part of a regular expression. */
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Dual-stack PodCIDRs for the node numbered `i`. */
const podCIDRs = (i: number): string[] => [`10.244.${i}.0/24`, `fd10:244:${i}::/64`];

/** When the first reply of a running `ping -D` arrived after `t0` (ms since the epoch), waiting up to `timeoutMs`. */
function firstReplyAfter(what: string, ping: { output(): string }, t0: number, timeoutMs: number): Promise<number> {
  return waitFor(what, () => pingReplies(ping.output()).find((r) => r.at > t0 + 50)?.at, timeoutMs, 100);
}

/** What node `from` counted in bytes received from and sent to `to` (its metrics), undefined without series. */
async function peerBytes(cluster: Cluster, from: string, to: string): Promise<{ rx: number; tx: number } | undefined> {
  const m = await cluster.metrics(from);
  const labels = { kind: 'node', name: to };
  const rx = sampleValue(m, 'wg_overlay_peer_received_bytes_total', labels);
  const tx = sampleValue(m, 'wg_overlay_peer_sent_bytes_total', labels);
  return rx === undefined || tx === undefined ? undefined : { rx, tx };
}

/** Waits until node `from`'s metrics count at least `bytes` more both ways with `to` than `since`. */
function bytesGrown(
  cluster: Cluster,
  link: { from: string; to: string },
  since: { rx: number; tx: number },
  bytes: number,
): Promise<{ rx: number; tx: number }> {
  // The metrics read the device at most every 5 s: a scrape may show the previous reading.
  return waitFor(
    `${link.from}'s metrics to count ${bytes} more bytes each way with ${link.to}`,
    async () => {
      const now = await peerBytes(cluster, link.from, link.to);
      return now && now.rx - since.rx >= bytes && now.tx - since.tx >= bytes ? now : undefined;
    },
    15_000,
    500,
  );
}

/** After node-a failed over to node-b's IPv6 endpoint: the switch counted by its reason, the endpoint family 6, a peer on a fallback. */
async function assertFailoverCounted(cluster: Cluster, noAnswerBefore: number): Promise<void> {
  const m = await waitFor(
    "node-a's metrics to show node-b reached over IPv6",
    async () => {
      const m = await cluster.metrics('node-a');
      return sampleValue(m, 'wg_overlay_peer_endpoint_family', { name: 'node-b', family: '6' }) === 1 ? m : undefined;
    },
    15_000,
    500,
  );
  assert.equal(sampleValue(m, 'wg_overlay_endpoint_switches_total', { reason: 'no-answer' }), noAnswerBefore + 1);
  assert.equal(sampleValue(m, 'wg_overlay_peer_endpoint_family', { name: 'node-b', family: '4' }), undefined);
  assert.equal(sampleValue(m, 'wg_overlay_failover_peers', { state: 'fallback' }), 1);
}

/** node-n behind NAT, as the metrics show it: node-a and node-b each see one peer so, may dial it there, and node-n knows. */
async function assertNatGauges(cluster: Cluster): Promise<void> {
  for (const o of ['node-a', 'node-b']) {
    const m = await cluster.metrics(o);
    assert.equal(sampleValue(m, 'wg_overlay_nat_observed_peers'), 1, `${o} sees node-n behind NAT`);
    assert.equal(sampleValue(m, 'wg_overlay_nat_discovered_peers'), 1, `${o} may dial node-n where two nodes saw it`);
    assert.equal(sampleValue(m, 'wg_overlay_nat_behind'), 0, `${o} is not behind NAT`);
  }
  assert.equal(
    sampleValue(await cluster.metrics('node-n'), 'wg_overlay_nat_behind'),
    1,
    'node-n knows it is behind NAT',
  );
}

/** The addresses (without prefix length) on a node's wg0. */
async function wg0Addresses(node: ClusterNode): Promise<string[]> {
  const r = await node.host.exec('ip', ['-j', 'addr', 'show', 'dev', 'wg0']);
  return (JSON.parse(r.stdout) as Array<{ addr_info: Array<{ local: string; scope: string }> }>)[0]!.addr_info
    .filter((a) => a.scope === 'global')
    .map((a) => a.local);
}

describe('e2e: dual-stack mesh', function () {
  this.timeout(180_000);
  let cluster: Cluster;
  const names = ['node-a', 'node-b', 'node-c'];

  before(async () => {
    await requireTools(TOOLS);
    cluster = await Cluster.create({ underlay: { ipv6: true } });
    await Promise.all(names.map((n, i) => cluster.addNode(n, { podCIDRs: podCIDRs(i + 1) })));
    await cluster.waitForMesh();
  });

  after(async () => {
    await cluster?.destroy();
  });

  it('pods ping each other over IPv4 and IPv6 through wg0; both overlay addresses are on wg0 and answer', async () => {
    for (const [from, to] of [
      ['node-a', 'node-b'],
      ['node-b', 'node-c'],
      ['node-c', 'node-a'],
    ] as const) {
      const src = cluster.must(from);
      const dst = cluster.must(to);
      for (const target of [dst.podIp, dst.podIp6!]) {
        const route = await src.host.exec('ip', ['route', 'get', target]);
        assert.match(route.stdout, / dev wg0 /, `${from} routes ${target} into the tunnel`);
        const before = (await cluster.peer(from, to))!;
        await pingAll(src.pod!, target);
        const after = (await cluster.peer(from, to))!;
        assert.ok(
          after.txBytes > before.txBytes && after.rxBytes > before.rxBytes,
          `${from} → ${target}: wg0 counters rise (tx ${before.txBytes} → ${after.txBytes}, rx ${before.rxBytes} → ${after.rxBytes})`,
        );
      }
    }
    for (const n of names) {
      const ann = cluster.annotations(n);
      const v4 = ann[ANNOTATION_OVERLAY_ADDRESS]!;
      const v6 = ann[ANNOTATION_OVERLAY_ADDRESS6]!;
      assert.match(v6 ?? '', /^fd[0-9a-f]{2}:/, `${n} publishes a ULA overlay address`);
      assert.deepEqual(
        (await wg0Addresses(cluster.must(n))).sort(),
        [v4, v6].sort(),
        `${n}: wg0 holds both overlay addresses`,
      );
      const other = cluster.must(names[(names.indexOf(n) + 1) % names.length]!);
      await pingAll(other.host, v4, { count: 2 });
      await pingAll(other.host, v6, { count: 2 });
    }
  });

  it('metrics: per-peer bytes follow pod traffic, routes by family, both overlay addresses, endpoint family; all documented', async () => {
    const a = cluster.must('node-a');
    const b = cluster.must('node-b');
    const link = { from: 'node-a', to: 'node-b' };
    const before = await waitFor('per-peer series on node-a', () => peerBytes(cluster, 'node-a', 'node-b'));
    await pingAll(a.pod!, b.podIp, { count: 20, interval: 0.02, size: 1000 });
    await pingAll(a.pod!, b.podIp6!, { count: 20, interval: 0.02, size: 1000 });
    const after = await bytesGrown(cluster, link, before, 40 * 1000);
    const dev = (await cluster.peer('node-a', 'node-b'))!;
    assert.ok(after.rx <= dev.rxBytes && after.tx <= dev.txBytes, 'as the device counts them (no re-add yet)');
    const m = await cluster.metrics('node-a');
    const own = await cluster.ownRoutes('node-a');
    for (const family of ['4', '6']) {
      const want = own.filter((r) => r.dst.includes(':') === (family === '6')).length;
      assert.ok(want >= 2, `node-a has ${want} IPv${family} routes`);
      assert.equal(sampleValue(m, 'wg_overlay_routes', { family }), want, `IPv${family} routes`);
    }
    const ann = cluster.annotations('node-a');
    assert.equal(
      sampleValue(m, 'wg_overlay_info', {
        node: 'node-a',
        address: ann[ANNOTATION_OVERLAY_ADDRESS]!,
        address6: ann[ANNOTATION_OVERLAY_ADDRESS6]!,
      }),
      1,
    );
    assert.equal(sampleValue(m, 'wg_overlay_peer_endpoint_family', { name: 'node-b', family: '4' }), 1);
    assert.ok(sampleValue(m, 'wg_overlay_peer_last_handshake_timestamp_seconds', { name: 'node-b' })! > 1e9);
    assert.equal(sampleValue(m, 'wg_overlay_failover_peers', { state: 'best' }), 2, 'both peers have two endpoints');
    const documented = documentedMetrics();
    const served = parseExposition(await cluster.metricsText('node-a'));
    const undocumented = [...served.keys()].filter((n) => !documented.has(n));
    assert.deepEqual(undocumented, [], 'served, not in docs/metrics.md');
  });

  it("failover: node-a stops hearing node-b's IPv4 address → traffic resumes over IPv6; logged, in status, nothing else touched", async () => {
    const a = cluster.must('node-a');
    const b = cluster.must('node-b');
    const c = cluster.must('node-c');
    const v4 = `${b.address}:51820`;
    const v6 = `[${b.address6!}]:51820`;
    assert.equal((await cluster.peer('node-a', 'node-b'))?.endpoint, v4, "node-a dials node-b's IPv4 address first");
    const ifindex = (await a.host.exec('cat', ['/sys/class/net/wg0/ifindex'])).stdout.trim();
    const peerC = (await cluster.peer('node-a', 'node-c'))!;
    const mark = a.daemon!.output().length;
    const noAnswer = sampleValue(await cluster.metrics('node-a'), 'wg_overlay_endpoint_switches_total', {
      reason: 'no-answer',
    })!;
    // Pings every 0.2 s, each line stamped with the time it arrived (-D).
    const toB = a.pod!.spawn('ping', ['-D', '-i', '0.2', '-W', '1', b.podIp]);
    const toC = a.pod!.spawn('ping', ['-D', '-i', '0.2', '-W', '1', c.podIp]);
    await toB.waitForOutput(/bytes from/, 5_000);
    await toC.waitForOutput(/bytes from/, 5_000);
    // The IPv4 path from node-b goes dark: node-a's packets still leave, nothing comes back.
    // (A blackhole route would not do: wireguard-go sends from a sticky source with the outgoing
    // interface set, and the kernel then takes the destination as on-link, route or not.)
    await a.host.exec('nft', ['-f', '-'], {
      input: `table ip wgo_test {\n chain input {\n  type filter hook input priority filter;\n  ip saddr ${b.address} drop\n }\n}\n`,
    });
    const t0 = Date.now();
    const resumedAt = await firstReplyAfter("a reply through node-b's other endpoint", toB, t0, 45_000);
    const seconds = (resumedAt - t0) / 1000;
    console.log(
      `      (failover: first reply ${seconds.toFixed(1)} s after node-a stopped hearing node-b's IPv4 address; endpoint_failover = 15 s)`,
    );
    assert.ok(seconds < 30, `traffic resumed after ${seconds} s`);
    assert.equal((await cluster.peer('node-a', 'node-b'))?.endpoint, v6);
    const log = a.daemon!.output().slice(mark);
    assert.match(
      log,
      new RegExp(`endpoint of Node node-b: ${esc(v4)} → ${esc(v6)}, candidate 2 of 2 \\(why: [^)]+\\)`),
    );
    const status = (await a.host.exec('node', [CLI, 'status', '--config', '/etc/wg-overlay/wg-overlay.conf'])).stdout;
    assert.match(status, new RegExp(`node-b +node +\\S+ +${esc(v6)} \\(2/2\\)`), status);
    assert.match(
      status,
      new RegExp(`endpoint failover:\\n  node-b: candidate 2 of 2 \\(${esc(v4)}, ${esc(v6)}\\): \\S`),
      status,
    );
    // wg0 was not recreated, and node-c's peer kept its endpoint and session; its pings never stopped.
    assert.equal((await a.host.exec('cat', ['/sys/class/net/wg0/ifindex'])).stdout.trim(), ifindex);
    assert.doesNotMatch(log, /created wg0|recreated|removed peer|added peer node-c/);
    const peerCAfter = (await cluster.peer('node-a', 'node-c'))!;
    assert.equal(peerCAfter.endpoint, peerC.endpoint);
    assert.ok(peerCAfter.latestHandshake >= peerC.latestHandshake);
    await toC.stop('SIGINT', 5_000);
    assert.match(toC.output(), / 0% packet loss/, toC.output().split('\n').slice(-3).join('\n'));
    await toB.stop('SIGINT', 5_000);
    await assertFailoverCounted(cluster, noAnswer);
    await a.host.exec('nft', ['delete', 'table', 'ip', 'wgo_test']);
  });

  it("failover when sends fail outright: node-c drops what it sends to node-a's IPv4 address (on output) → nudged, back over IPv6", async () => {
    const a = cluster.must('node-a');
    const c = cluster.must('node-c');
    const aV4 = `${a.address}:51820`;
    const aV6 = `[${a.address6!}]:51820`;
    const cV4 = `${c.address}:51820`;
    const cV6 = `[${c.address6!}]:51820`;
    assert.equal((await cluster.peer('node-c', 'node-a'))?.endpoint, aV4, "node-c dials node-a's IPv4 address first");
    const toA = c.pod!.spawn('ping', ['-D', '-i', '0.2', '-W', '1', a.podIp]);
    await toA.waitForOutput(/bytes from/, 5_000);
    // Every packet node-c sends to node-a's IPv4 address fails in sendmsg (EPERM): node-c's
    // WireGuard counters stand still and node-a hears nothing, so neither side sees "packets out,
    // nothing back" from the pings. A nudge does it: node-c's, whose datagram cannot leave either
    // (→ node-c moves node-a to IPv6), or node-a's, which goes out and gets no answer (→ node-a
    // moves node-c to IPv6, and node-c's WireGuard follows node-a there as it roams).
    await c.host.exec('nft', ['-f', '-'], {
      input: [
        'table ip wgo_test_out {',
        ' chain output {',
        '  type filter hook output priority filter;',
        `  ip daddr ${a.address} udp dport 51820 drop`,
        ' }',
        '}',
        '',
      ].join('\n'),
    });
    const t0 = Date.now();
    const resumedAt = await firstReplyAfter('a reply through IPv6', toA, t0, 90_000);
    const seconds = (resumedAt - t0) / 1000;
    const byC = /endpoint of Node node-a: [^\n]*/.exec(c.daemon!.output())?.[0];
    const byA = /endpoint of Node node-c: [^\n]*/.exec(a.daemon!.output())?.[0];
    console.log(
      `      (failover, sends failing: first reply ${seconds.toFixed(1)} s after node-c's packets to node-a's IPv4 address ` +
        `began to be dropped on output; switched by ${byC ? 'node-c' : 'node-a'}; endpoint_failover = 15 s)`,
    );
    assert.ok(seconds < 60, `traffic resumed after ${seconds} s`);
    assert.equal((await cluster.peer('node-c', 'node-a'))?.endpoint, aV6, 'node-c now sends to node-a over IPv6');
    if (byC)
      assert.match(
        byC,
        new RegExp(
          `^endpoint of Node node-a: ${esc(aV4)} → ${esc(aV6)}, candidate 2 of 2 ` +
            '\\(why: nothing could be sent to it for \\d+ s \\(no route, or dropped on the way out\\)\\)',
        ),
      );
    else
      assert.match(
        byA ?? '(neither side logged a switch)',
        new RegExp(
          `^endpoint of Node node-c: ${esc(cV4)} → ${esc(cV6)}, candidate 2 of 2 \\(why: no answer for \\d+ s while packets went out\\)`,
        ),
      );
    await toA.stop('SIGINT', 5_000);
    await c.host.exec('nft', ['delete', 'table', 'ip', 'wgo_test_out']);
  });

  it("wg0 deleted under node-a and recreated: WireGuard's counters start again, the metrics' go on", async () => {
    const a = cluster.must('node-a');
    const c = cluster.must('node-c');
    const link = { from: 'node-a', to: 'node-c' };
    const start = (await peerBytes(cluster, 'node-a', 'node-c'))!;
    await pingAll(a.pod!, c.podIp, { count: 40, interval: 0.02, size: 1000 });
    const before = await bytesGrown(cluster, link, start, 40 * 1000);
    await a.host.exec('ip', ['link', 'del', 'wg0']);
    await cluster.waitForMesh(names, 30_000);
    // Fewer bytes than before the deletion: WireGuard's new counters stay below the old ones.
    await pingAll(a.pod!, c.podIp, { count: 10, interval: 0.02, size: 1000 });
    const dev = (await cluster.peer('node-a', 'node-c'))!;
    assert.ok(dev.rxBytes < before.rx, `the device counts from 0 again (rx ${dev.rxBytes}, was ${before.rx})`);
    const after = await bytesGrown(cluster, link, before, 10 * 1000);
    assert.ok(after.rx > dev.rxBytes, `the metric (${after.rx}) kept what was counted before (device ${dev.rxBytes})`);
  });
});

describe('e2e: IPv6-only mesh', function () {
  this.timeout(120_000);
  let cluster: Cluster;
  const names = ['node-a', 'node-b'];

  before(async () => {
    await requireTools(TOOLS);
    cluster = await Cluster.create({ underlay: { ipv4: false, ipv6: true } });
    await Promise.all(names.map((n, i) => cluster.addNode(n, { podCIDRs: podCIDRs(i + 1) })));
    await cluster.waitForMesh();
  });

  after(async () => {
    await cluster?.destroy();
  });

  it('nodes with only IPv6 InternalIPs and an API server on IPv6 mesh at [v6]:port; pods ping over both families in the tunnel', async () => {
    assert.match(
      cluster.api.url ?? '',
      /^https:\/\/\[2001:db8:[0-9a-f:]+\]:\d+$/,
      'the API server listens on the IPv6 underlay',
    );
    for (const n of names) {
      const node = cluster.must(n);
      assert.equal(
        (await node.host.exec('ip', ['-4', 'addr', 'show', 'dev', 'eth0'])).stdout.trim(),
        '',
        `${n} has no IPv4 underlay address`,
      );
      assert.match(node.address, /^2001:db8:/);
      assert.equal(cluster.annotations(n)['wg-overlay.io/endpoint'], `[${node.address}]:51820`);
      const other = names.find((o) => o !== n)!;
      assert.equal((await cluster.peer(n, other))?.endpoint, `[${cluster.must(other).address}]:51820`);
    }
    const a = cluster.must('node-a');
    const b = cluster.must('node-b');
    for (const target of [b.podIp6!, b.podIp]) {
      const before = (await cluster.peer('node-a', 'node-b'))!;
      await pingAll(a.pod!, target);
      const after = (await cluster.peer('node-a', 'node-b'))!;
      assert.ok(after.txBytes > before.txBytes && after.rxBytes > before.rxBytes, `${target} went through wg0`);
    }
    await pingAll(b.host, cluster.annotations('node-a')[ANNOTATION_OVERLAY_ADDRESS6]!, { count: 2 });
    await pingAll(b.host, cluster.annotations('node-a')[ANNOTATION_OVERLAY_ADDRESS]!, { count: 2 });
  });
});

describe('e2e: a node behind NAT', function () {
  this.timeout(180_000);
  let cluster: Cluster;
  let nat: NatRouter;

  before(async () => {
    await requireTools(TOOLS);
    cluster = await Cluster.create();
    // A home router on the underlay: what node-n sends out leaves masqueraded as the router's own
    // address; from outside, only replies to what node-n sent come in.
    nat = await NatRouter.create(cluster.underlay);
    await Promise.all(['node-a', 'node-b'].map((n) => cluster.addNode(n)));
    await cluster.waitForMesh();
  });

  after(async () => {
    await cluster?.destroy();
    await nat?.destroy().catch(() => undefined);
  });

  let n: Awaited<ReturnType<Cluster['addNode']>>;
  let own: string;
  let started: number;
  const seenAt: Record<string, string> = {};

  it('node-n behind a masquerading router: node-a and node-b hear it through the router once its pod speaks', async () => {
    n = await cluster.addNode('node-n', { network: nat.inside, gateways: [nat.insideAddress] });
    assert.match(n.address, /^203\.0\.113\./);
    own = `${n.address}:51820`;
    await cluster.waitForMesh();
    // Nobody outside can dial node-n's own address, and WireGuard sends nothing until there is
    // something to send: node-n's pod speaks first (as pods do, e.g. to the cluster's DNS), and
    // node-a and node-b see node-n arrive from the router.
    started = Date.now();
    for (const o of ['node-a', 'node-b']) await pingAll(n.pod!, cluster.must(o).podIp);
    for (const o of ['node-a', 'node-b']) {
      seenAt[o] = await waitFor(
        `${o} hears node-n through the router`,
        async () => {
          const p = await cluster.peer(o, 'node-n');
          return p && p.latestHandshake > 0 && p.endpoint?.startsWith(`${nat.outsideAddress}:`)
            ? p.endpoint
            : undefined;
        },
        10_000,
        100,
      );
    }
    const handshake = (Date.now() - started) / 1000;
    console.log(
      `      (NAT: node-a and node-b handshook with node-n through the router ${handshake.toFixed(1)} s after its first ping)`,
    );
    assert.equal(seenAt['node-a'], seenAt['node-b'], 'the router maps node-n to one outside endpoint');
  });

  it('both publish where node-n arrives from (two reporters agree); node-n keeps keepalive 25; status shows it', async () => {
    // Observed from a reading of the device: the endpoint watch's own rounds only read it while
    // some peer has several candidates (none does yet), so here at the periodic resync (60 s).
    const discovered = await waitFor(
      "node-a and node-b publishing node-n's discovered endpoint",
      () => {
        const all = ['node-a', 'node-b'].map(
          (o) => JSON.parse(cluster.annotations(o)[ANNOTATION_DISCOVERED] ?? '{}') as Record<string, string>,
        );
        return all.every((d, i) => d['node-n'] === seenAt[['node-a', 'node-b'][i]!]) ? all : undefined;
      },
      80_000,
      100,
    );
    const published = (Date.now() - started) / 1000;
    assert.deepEqual(
      discovered.map((d) => Object.keys(d)),
      [['node-n'], ['node-n']],
      'only node-n is behind NAT',
    );
    // node-n's own config has no keepalive: it learns from the others that it is behind NAT.
    assert.doesNotMatch(n.configText, /persistent_keepalive/);
    await waitFor(
      'node-n keeping a 25 s keepalive towards every peer',
      async () => {
        const dev = await cluster.device('node-n');
        return dev && dev.peers.length === 2 && dev.peers.every((p) => p.persistentKeepalive === 25);
      },
      20_000,
      100,
    );
    const keepalive = (Date.now() - started) / 1000;
    assert.match(n.daemon!.output(), /behind NAT\): keepalive 25 s towards every peer/);
    for (const o of ['node-a', 'node-b']) {
      assert.equal((await cluster.peer(o, 'node-n'))?.persistentKeepalive, 0, `${o} needs no keepalive of its own`);
      assert.equal(
        (await cluster.peer('node-n', o))?.endpoint,
        `${cluster.must(o).address}:51820`,
        `node-n dials ${o} directly`,
      );
      const status = (
        await cluster.must(o).host.exec('node', [CLI, 'status', '--config', '/etc/wg-overlay/wg-overlay.conf'])
      ).stdout;
      assert.match(
        status,
        new RegExp(`node-n +node +\\S+ +${esc(seenAt[o]!)} `),
        `${o} shows node-n at its discovered endpoint:\n${status}`,
      );
    }
    await assertNatGauges(cluster);
    console.log(
      `      (NAT: published its discovered endpoint ${published.toFixed(1)} s after node-n's first ping, ` +
        `node-n applied keepalive 25 at ${keepalive.toFixed(1)} s)`,
    );
  });

  it("the others' pods reach node-n at its discovered endpoint, through the router", async () => {
    // The others reach node-n at its discovered endpoint, their pods first: pings that node-a's and
    // node-b's pods start go in through the router as replies of node-n's own traffic.
    for (const o of ['node-a', 'node-b']) {
      const before = await nat.forwarded();
      await pingAll(cluster.must(o).pod!, n.podIp);
      await pingAll(n.pod!, cluster.must(o).podIp);
      const after = await nat.forwarded();
      assert.ok(
        after.in - before.in >= 6 && after.out - before.out >= 6,
        `${o} ↔ node-n went through the router (in ${before.in} → ${after.in}, out ${before.out} → ${after.out})`,
      );
      assert.equal((await cluster.peer(o, 'node-n'))?.endpoint, seenAt[o]);
    }
  });

  it("node-b dialling node-n's own address: traffic resumes at the discovered endpoint", async () => {
    // node-b forgets where node-n came from (as after its device was recreated): it dials node-n's
    // own address, which ends at the router. Traffic resumes at the discovered endpoint.
    const b = cluster.must('node-b');
    await b.host.exec('ip', ['route', 'add', '203.0.113.0/24', 'via', nat.outsideAddress]);
    const mark = b.daemon!.output().length;
    await b.host.exec('wg', ['set', 'wg0', 'peer', cluster.publicKey('node-n')!, 'endpoint', own]);
    const toN = b.pod!.spawn('ping', ['-D', '-i', '0.2', '-W', '1', n.podIp]);
    const t0 = Date.now();
    const resumedAt = await firstReplyAfter('a reply from node-n again', toN, t0, 45_000);
    await toN.stop('SIGINT', 5_000);
    const seconds = (resumedAt - t0) / 1000;
    assert.equal((await cluster.peer('node-b', 'node-n'))?.endpoint, seenAt['node-b']);
    const log = b.daemon!.output().slice(mark);
    const how = log.includes(`endpoint of Node node-n: ${own} → ${seenAt['node-b']!}`)
      ? "node-b's failover to the discovered candidate"
      : "node-n's keepalive (WireGuard roaming)";
    console.log(
      `      (NAT: node-b dialling node-n's own address, traffic resumed at the discovered endpoint after ` +
        `${seconds.toFixed(1)} s, by ${how})`,
    );
    assert.ok(seconds < 30, `resumed after ${seconds} s`);
    await b.host.exec('ip', ['route', 'del', '203.0.113.0/24', 'via', nat.outsideAddress]);
  });
});
