/**
 * End-to-end locations (issue 12): two locations, each a private network, whose reachable nodes
 * also sit on a shared public network. With `granularity = location` the senior reachable node of
 * each location leads (it holds the location's Lease and the only tunnel), members route through
 * it over the private network, a leader killed hard is replaced within 10 s and does not take the
 * role back when it returns; with `cross` every node tunnels to every node of the other location.
 * Each path is shown with real traffic and link and WireGuard counters, not only with ping, and a
 * member's route through its leader deleted from outside comes back at once.
 */
import assert from 'node:assert/strict';
import { waitFor, type ClusterNode } from '../support/cluster/cluster.js';
import { LocationCluster, TWO_LOCATIONS, type LocationSpec } from '../support/cluster/locations.js';
import type { LinkStats } from '../support/namespaces/netns.js';
import { pingAll, pingReplies, type Shell } from '../support/namespaces/pods.js';
import { metricsUsed, parseExposition, parseSamples, sampleValue } from '../support/monitoring.js';
import { requireTools, sleep } from '../support/process.js';

/** Pings per check, and their size: each one is bigger than anything else that crosses wg0 (handshakes, keepalives). */
const PINGS = 20;
const PING_BYTES = 1000;

/** Sends {@link PINGS} large pings and asserts every one came back. */
const pingMany = (from: Shell, dst: string, what: string): Promise<void> =>
  pingAll(from, dst, { count: PINGS, interval: 0.02, size: PING_BYTES, what });

/** One node's counters: its links, and bytes of each WireGuard peer (by node name). */
interface Counters {
  links: Map<string, LinkStats>;
  peers: Map<string, { rx: number; tx: number }>;
}

/** Counts what crossed each node's links and WireGuard peers while `fn` ran. */
async function traffic(lc: LocationCluster, fn: () => Promise<void>): Promise<Map<string, Counters>> {
  const c = lc.cluster;
  const snapshot = async (): Promise<Map<string, Counters>> => {
    const out = new Map<string, Counters>();
    const nameOf = new Map([...c.nodes.keys()].map((n) => [c.publicKey(n), n]));
    for (const n of c.nodes.values()) {
      const links = new Map<string, LinkStats>();
      for (const ifname of ['eth0', ...(n.externalAddress ? ['eth1'] : []), 'wg0'])
        links.set(ifname, await n.host.linkStats(ifname));
      const dev = await c.device(n.name);
      out.set(n.name, {
        links,
        peers: new Map(
          (dev?.peers ?? []).map((p) => [nameOf.get(p.publicKey) ?? p.publicKey, { rx: p.rxBytes, tx: p.txBytes }]),
        ),
      });
    }
    return out;
  };
  const before = await snapshot();
  await fn();
  const after = await snapshot();
  const delta = new Map<string, Counters>();
  for (const [name, a] of after) {
    const b = before.get(name)!;
    const links = new Map(
      [...a.links].map(([i, s]) => {
        const o = b.links.get(i)!;
        return [
          i,
          {
            rxBytes: s.rxBytes - o.rxBytes,
            rxPackets: s.rxPackets - o.rxPackets,
            txBytes: s.txBytes - o.txBytes,
            txPackets: s.txPackets - o.txPackets,
          },
        ];
      }),
    );
    const peers = new Map(
      [...a.peers].map(([p, s]) => [p, { rx: s.rx - (b.peers.get(p)?.rx ?? 0), tx: s.tx - (b.peers.get(p)?.tx ?? 0) }]),
    );
    delta.set(name, { links, peers });
  }
  return delta;
}

/** Asserts that not one of the pings crossed a node's wg0 (less than one ping's bytes either way). */
function assertNoTunnel(d: Map<string, Counters>, names: readonly string[]): void {
  for (const n of names) {
    const w = d.get(n)!.links.get('wg0')!;
    assert.ok(
      w.rxBytes < PING_BYTES && w.txBytes < PING_BYTES,
      `${n}: wg0 counted rx ${w.rxBytes} / tx ${w.txBytes} bytes`,
    );
  }
}

/** Asserts that at least every ping went out (`tx`) or came in (`rx`) on a node's link. */
function assertLink(d: Map<string, Counters>, name: string, ifname: string, dir: 'rx' | 'tx'): void {
  const s = d.get(name)!.links.get(ifname)!;
  const packets = dir === 'rx' ? s.rxPackets : s.txPackets;
  assert.ok(packets >= PINGS, `${name}: ${ifname} ${dir} ${packets} packets, want >= ${PINGS}`);
}

/** Asserts that every ping went into (`tx`) and came back out of (`rx`) a node's WireGuard peer. */
function assertPeer(d: Map<string, Counters>, name: string, peer: string): void {
  const p = d.get(name)!.peers.get(peer);
  assert.ok(p, `${name} has no peer ${peer}: ${[...d.get(name)!.peers.keys()].join(', ')}`);
  assert.ok(
    p.tx >= PINGS * PING_BYTES && p.rx >= PINGS * PING_BYTES,
    `${name} → ${peer}: tx ${p.tx} / rx ${p.rx} bytes, want >= ${PINGS * PING_BYTES} each`,
  );
}

describe('e2e: locations — granularity = location', function () {
  this.timeout(60_000);
  // east: east-1 and east-2 reachable (on the public network), east-3 only on east's private one.
  // west, named by Kilo's annotation: west-1 reachable, west-2 private only.
  let lc: LocationCluster;
  const node = (name: string): ClusterNode => lc.cluster.must(name);

  before(async () => {
    await requireTools(['wg', 'wireguard-go', 'ip', 'nsenter', 'unshare', 'ping', 'nc']);
    lc = await LocationCluster.create(TWO_LOCATIONS, { granularity: 'location', start: false });
    // The layout: a private-only node reaches the API server (through the root namespace) but no
    // other location, and a reachable node reaches the other location only on the public network.
    const api = lc.cluster.underlay.hostAddress!;
    await node('east-3').host.exec('nc', ['-z', '-w', '2', api, new URL(lc.cluster.api.url!).port]);
    for (const [from, to] of [
      ['east-3', 'west-2'],
      ['east-1', 'west-2'],
      ['west-2', 'east-1'],
    ] as const) {
      const r = await node(from).host.exec('ping', ['-c', '1', '-W', '1', node(to).address], { allowFailure: true });
      assert.notEqual(r.exitCode, 0, `${from} reaches ${to}'s private address ${node(to).address} without the overlay`);
    }
    await lc.start();
  });

  after(async () => {
    await lc?.destroy();
  });

  it('each location is led by its senior reachable node, which holds the Lease; only leaders have peers, one per other location', async () => {
    await lc.waitForTopology('location', { east: 'east-1', west: 'west-1' });
    // Leaders lead by rank at once; they take their Lease at their next tick (within a second).
    await waitFor(
      'east-1 and west-1 to hold their Leases',
      () => lc.lease('east')?.holder === 'east-1' && lc.lease('west')?.holder === 'west-1',
      3_000,
    );
    for (const member of ['east-2', 'east-3', 'west-2'])
      assert.deepEqual((await lc.cluster.device(member))?.peers, [], `${member} has WireGuard peers`);
    const east1 = (await lc.cluster.device('east-1'))!.peers;
    assert.deepEqual(
      east1.map((p) => p.endpoint),
      [lc.endpointOf('west-1')],
      'east-1 dials west-1 on its public address',
    );
  });

  it('inside a location pod traffic goes over the private network and never into wg0', async () => {
    const d = await traffic(lc, async () => {
      await pingMany(node('east-3').pod!, node('east-2').podIp, 'east-3 → east-2');
      await pingMany(node('east-3').pod!, node('east-1').podIp, 'east-3 → east-1 (the leader)');
      await pingMany(node('west-2').pod!, node('west-1').podIp, 'west-2 → west-1 (the leader)');
    });
    assertNoTunnel(d, ['east-1', 'east-2', 'east-3', 'west-1', 'west-2']);
    assertLink(d, 'east-3', 'eth0', 'tx');
    assertLink(d, 'east-2', 'eth0', 'rx');
    assertLink(d, 'east-1', 'eth0', 'rx');
    assertLink(d, 'west-1', 'eth0', 'rx');
  });

  it("across locations a member's pod traffic goes to its leader over the private network and through the leader's wg0", async () => {
    const d = await traffic(lc, async () => {
      await pingMany(node('east-3').pod!, node('west-2').podIp, 'east-3 → west-2');
    });
    // east-3 → east-1 (private) → wg0 → west-1 (public) → west-2 (private), and back.
    assertLink(d, 'east-3', 'eth0', 'tx');
    assertLink(d, 'east-1', 'eth0', 'rx');
    assertPeer(d, 'east-1', 'west-1');
    assertPeer(d, 'west-1', 'east-1');
    assertLink(d, 'east-1', 'eth1', 'tx');
    assertLink(d, 'west-1', 'eth1', 'rx');
    assertLink(d, 'west-2', 'eth0', 'rx');
    assertNoTunnel(d, ['east-2', 'east-3', 'west-2']);
    // overlay addresses of members are reached the same way, and a member reaches the other leader's pods
    await pingMany(node('east-3').host, lc.cluster.overlayAddress('west-2')!, "east-3 → west-2's overlay address");
    await pingMany(node('west-2').pod!, node('east-2').podIp, 'west-2 → east-2');
  });

  it('metrics: each node names its location and leader; a leader serves every metric the shipped dashboard and alerts use', async () => {
    const c = lc.cluster;
    for (const [n, location, leader] of [
      ['east-1', 'east', 'east-1'],
      ['east-3', 'east', 'east-1'],
      ['west-2', 'west', 'west-1'],
    ] as const) {
      const m = await c.metrics(n);
      assert.equal(sampleValue(m, 'wg_overlay_location_info', { location, leader }), 1, n);
      assert.equal(sampleValue(m, 'wg_overlay_location_leader'), n === leader ? 1 : 0, n);
    }
    // Traffic across the locations goes through east-1's peer west-1 (the scrape's reading may be up to 5 s old).
    await pingMany(node('east-3').pod!, node('west-2').podIp, 'east-3 → west-2');
    const text = await waitFor(
      "east-1's metrics to count bytes from west-1",
      async () => {
        const t = await c.metricsText('east-1');
        return sampleValue(parseSamples(t), 'wg_overlay_peer_received_bytes_total', { name: 'west-1' })! > 0 && t;
      },
      10_000,
      500,
    );
    const served = parseExposition(text);
    const missing = [...metricsUsed()]
      .filter(([name]) => !served.has(name))
      .map(([name, where]) => `${name} (${where.join('; ')})`);
    assert.deepEqual(missing, [], 'used by packaging/monitoring, not served');
  });

  it('a leader killed hard (SIGKILL, wg0 deleted): member-to-member traffic across locations resumes within 10 s', async () => {
    const east3 = node('east-3');
    const west2 = node('west-2');
    const transitions = lc.lease('east')!.transitions;
    const marks = new Map(['east-2', 'east-3'].map((n) => [n, node(n).daemon!.output().length]));
    const ping = east3.pod!.spawn('ping', ['-D', '-i', '0.1', '-W', '1', west2.podIp]);
    try {
      await waitFor('3 replies before the stop', () => pingReplies(ping.output()).length >= 3, 5_000);
      const stoppedAt = Date.now();
      await lc.cluster.stopDaemon('east-1', 'SIGKILL');
      await node('east-1').host.exec('ip', ['link', 'del', 'wg0']);
      // The first reply after the outage (a gap of over a second after the stop).
      const resumed = await waitFor(
        'traffic to resume',
        () => {
          const got = pingReplies(ping.output());
          const i = got.findIndex(
            (r, k) => r.at > stoppedAt && k > 0 && r.at - Math.max(got[k - 1]!.at, stoppedAt) > 1_000,
          );
          return i >= 0 && got[i]!.at;
        },
        20_000,
        100,
      );
      const took = resumed - stoppedAt;
      console.log(
        `      failover: east-3 → west-2 answered again ${Math.round(took)} ms after east-1 was killed ([mesh] leader_lease = 5 s)`,
      );
      assert.ok(took < 10_000, `traffic resumed only after ${Math.round(took)} ms`);
    } finally {
      await ping.stop('SIGINT');
    }
    await lc.waitForTopology('location', { east: 'east-2', west: 'west-1' }, { timeoutMs: 5_000, skip: ['east-1'] });
    await waitFor("east-2 to hold east's Lease", () => lc.lease('east')?.holder === 'east-2', 3_000);
    assert.equal(lc.lease('east')?.transitions, transitions + 1);
    // The new leader and the member switched their routes in place (no clash, no moment without a route).
    for (const [n, mark] of marks) {
      const since = node(n).daemon!.output().slice(mark);
      assert.match(since, /route 10\.244\.\d+\.0\/24 (dev wg0|via \S+) proto 77 \(why: .*, in place of /, n);
      assert.doesNotMatch(since, /a route already existed/, n);
    }
  });

  it('the old leader back (restarted, wg0 recreated) ranks first: it takes the lead back once, traffic flows, no flapping', async () => {
    const before = lc.lease('east')!;
    const ping = node('east-3').pod!.spawn('ping', ['-D', '-i', '0.1', '-W', '1', node('west-2').podIp]);
    try {
      await waitFor('replies before the return', () => pingReplies(ping.output()).length >= 3, 5_000);
      const daemon = await lc.cluster.startDaemon('east-1');
      await daemon.waitForOutput(/mesh applied/, 15_000);
      await lc.waitForTopology('location', { east: 'east-1', west: 'west-1' }, { timeoutMs: 10_000 });
      await waitFor("east-1 to hold east's Lease", () => lc.lease('east')?.holder === 'east-1', 5_000);
      const taken = lc.lease('east')!;
      assert.equal(taken.transitions, before.transitions + 1, 'one transition');
      // Watch for longer than a Lease: the holder and its transition count stay put.
      const until = Date.now() + 6_000;
      while (Date.now() < until) {
        assert.equal(lc.lease('east')?.holder, 'east-1', "east's Lease changed hands again");
        assert.equal(lc.lease('east')?.transitions, taken.transitions, 'leadership flapped');
        assert.equal(lc.lease('west')?.holder, 'west-1');
        await sleep(200);
      }
      assert.deepEqual(await lc.differences('location', { east: 'east-1', west: 'west-1' }), []);
    } finally {
      await ping.stop('SIGINT');
    }
    const summary = /(\d+) packets transmitted, (\d+) received/.exec(ping.output());
    assert.ok(summary, ping.output().slice(-300));
    const lost = Number(summary[1]) - Number(summary[2]);
    console.log(
      `      leader back: east-3 → west-2 lost ${lost} of ${summary[1]} pings (10/s) while east-1 took the lead back`,
    );
    assert.ok(lost <= 20, `member traffic lost ${lost} packets while east-1 returned: ${summary[0]}`);
    const log = node('east-1').daemon!.output();
    assert.match(log, /took the leader Lease of location east/);
    await pingMany(node('east-1').pod!, node('west-2').podIp, 'east-1 (leader again) → west-2');
  });

  it("a member's route through its leader, deleted from outside, is re-added at once", async () => {
    const dst = node('west-2').podCIDRs[0]!;
    await node('east-3').host.exec('ip', ['route', 'del', dst, 'proto', '77']);
    await waitFor(
      'the route to come back',
      async () =>
        (await lc.cluster.ownRoutes('east-3')).some((r) => r.dst === dst && r.gateway === node('east-1').address),
      5_000,
    );
  });

  it('local_routes = false: inside a location only overlay addresses are routed, the pods are left to the cluster network', async () => {
    for (const n of lc.cluster.nodes.keys()) await lc.cluster.writeConfig(n, '[mesh]\nlocal_routes = false');
    await lc.waitForTopology('location', { east: 'east-1', west: 'west-1' }, { localRoutes: false });
    const d = await traffic(lc, async () => {
      await pingMany(node('east-3').host, lc.cluster.overlayAddress('east-2')!, "east-3 → east-2's overlay address");
    });
    assertNoTunnel(d, ['east-2', 'east-3']);
    assertLink(d, 'east-3', 'eth0', 'tx');
    // Overlay addresses are still reached across locations (pods of a member are the cluster network's job now, also on its leader).
    await pingMany(node('east-3').host, lc.cluster.overlayAddress('west-2')!, "east-3 → west-2's overlay address");
  });
});

describe('e2e: locations — granularity = cross', function () {
  this.timeout(60_000);
  const LAYOUT: LocationSpec[] = [
    {
      name: 'east',
      by: 'label',
      nodes: [
        { name: 'east-1', reachable: true },
        { name: 'east-2', reachable: true },
      ],
    },
    {
      name: 'west',
      by: 'label',
      nodes: [
        { name: 'west-1', reachable: true },
        { name: 'west-2', reachable: true },
      ],
    },
  ];
  let lc: LocationCluster;
  const node = (name: string): ClusterNode => lc.cluster.must(name);

  before(async () => {
    await requireTools(['wg', 'wireguard-go', 'ip', 'nsenter', 'unshare', 'ping']);
    lc = await LocationCluster.create(LAYOUT, { granularity: 'cross' });
  });

  after(async () => {
    await lc?.destroy();
  });

  it('every node has tunnels to every node of the other location and to none of its own; no Leases', async () => {
    await lc.waitForTopology('cross', {});
    assert.equal(lc.lease('east'), undefined);
    assert.equal(lc.lease('west'), undefined);
  });

  it("inside a location traffic stays on the private network; across locations it goes through the sender's own wg0", async () => {
    const inside = await traffic(lc, async () => {
      await pingMany(node('east-1').pod!, node('east-2').podIp, 'east-1 → east-2');
      await pingMany(node('west-2').pod!, node('west-1').podIp, 'west-2 → west-1');
    });
    assertNoTunnel(inside, ['east-1', 'east-2', 'west-1', 'west-2']);
    assertLink(inside, 'east-1', 'eth0', 'tx');
    assertLink(inside, 'east-2', 'eth0', 'rx');
    const across = await traffic(lc, async () => {
      await pingMany(node('east-2').pod!, node('west-2').podIp, 'east-2 → west-2');
    });
    assertPeer(across, 'east-2', 'west-2');
    assertPeer(across, 'west-2', 'east-2');
    assertLink(across, 'east-2', 'eth1', 'tx');
    assertNoTunnel(across, ['east-1', 'west-1']);
  });
});
