/**
 * The endpoint watch against a simulated device: it reads nothing while every peer has one
 * endpoint; a peer whose endpoint goes silent is moved to its next candidate after the timeout,
 * and the daemon is asked to apply it, with the reason logged; peers that arrive from an endpoint
 * none of their addresses explains are noted for publishing (the NAT rules themselves are tested
 * in test/unit/mesh/observations/nat.test.ts).
 */
import assert from 'node:assert/strict';
import { EndpointWatch } from '../../../service/src/daemon/endpoint-watch.js';
import { CachedRead } from '../../../service/src/util/cached-read.js';
import { memoryLogger } from '../../../service/src/log/logger.js';
import type { InterfaceStatus, PeerStatus } from '../../../service/src/mesh/observations/device.js';
import type { DesiredPeer } from '../../../service/src/mesh/types.js';
import { KEYS } from '../../support/fakes/fixtures.js';

const peer = (name: string, key: string, candidates?: string[]): DesiredPeer => ({
  kind: 'node',
  name,
  publicKey: key,
  endpoint: candidates?.[0] ?? '192.0.2.12:51820',
  ...(candidates ? { candidates } : {}),
  allowedIPs: [],
  persistentKeepalive: 0,
});

function world(peers: DesiredPeer[]) {
  let now = 1_000_000;
  const device: PeerStatus[] = peers.map((p) => ({
    publicKey: p.publicKey,
    hasPresharedKey: false,
    endpoint: p.endpoint,
    allowedIPs: [],
    latestHandshake: 0,
    rxBytes: 0,
    txBytes: 0,
    persistentKeepalive: 0,
  }));
  let reads = 0;
  const calls = { choice: 0, observed: 0, nudged: [] as string[], switches: [] as string[] };
  const log = memoryLogger();
  const watch = new EndpointWatch({
    read: async (): Promise<InterfaceStatus> => {
      reads += 1;
      return { name: 'wg0', publicKey: KEYS[0], listenPort: 51820, fwmark: 0, peers: device.map((d) => ({ ...d })) };
    },
    peers: () => peers,
    discovered: () => [],
    timing: { timeoutMs: 15_000, probeAfterMs: 60_000, maxProbeAfterMs: 600_000 },
    log,
    onChoice: () => {
      calls.choice += 1;
    },
    onObserved: () => {
      calls.observed += 1;
    },
    nudge: (p) => {
      calls.nudged.push(p.name);
    },
    onSwitch: (reason) => {
      calls.switches.push(reason);
    },
    now: () => now,
  });
  return {
    watch,
    device,
    calls,
    log,
    reads: () => reads,
    tick: (ms: number) => {
      now += ms;
    },
    /** A new desired list of peers (as the daemon hands the watch one after a run). */
    setPeers: (next: DesiredPeer[]) => {
      peers = next;
    },
    now: () => now,
  };
}

describe('unit: endpoint watch', () => {
  it('reads nothing while no peer has more than one endpoint', async () => {
    const w = world([peer('b', KEYS[1])]);
    for (let i = 0; i < 10; i += 1) {
      await w.watch.check();
      w.tick(5_000);
    }
    assert.equal(w.reads(), 0);
  });

  it('moves a silent peer to its next endpoint after the timeout, logs why, and asks for it to be applied', async () => {
    const w = world([peer('b', KEYS[1], ['192.0.2.12:51820', '[2001:db8::12]:51820'])]);
    for (let i = 0; i < 6; i += 1) {
      w.device[0]!.txBytes += 148; // handshake initiations go out, nothing comes back
      await w.watch.check();
      w.tick(5_000);
    }
    assert.ok(w.calls.choice >= 1);
    const { chosen, changed } = w.watch.take();
    assert.deepEqual([...chosen], [['b', '[2001:db8::12]:51820']]);
    assert.deepEqual([...changed], ['b']);
    assert.match(
      w.log.lines.join('\n'),
      /endpoint of Node b: 192\.0\.2\.12:51820 → \[2001:db8::12\]:51820, candidate 2 of 2 \(why: no answer for \d+ s while packets went out\)/,
    );
    assert.deepEqual(w.watch.describe('b'), {
      candidates: ['192.0.2.12:51820', '[2001:db8::12]:51820'],
      index: 1,
      why: w.watch.describe('b')!.why,
    });
    assert.equal(w.watch.take().changed.size, 0, 'a change is handed out once');
    assert.deepEqual(w.calls.switches, ['no-answer'], 'counted once, by reason');
    assert.deepEqual(w.watch.counts(), { tracked: 1, fallback: 1 });
  });

  it('a peer on a fallback whose endpoints change goes back to its best one: counted as a reset', async () => {
    const w = world([peer('b', KEYS[1], ['192.0.2.12:51820', '[2001:db8::12]:51820'])]);
    for (let i = 0; i < 6 && w.watch.counts().fallback === 0; i += 1) {
      w.device[0]!.txBytes += 148;
      await w.watch.check();
      w.tick(5_000);
    }
    assert.deepEqual(w.calls.switches, ['no-answer']);
    w.setPeers([peer('b', KEYS[1], ['192.0.2.12:51820', '[2001:db8::99]:51820'])]);
    await w.watch.check();
    assert.deepEqual(w.calls.switches, ['no-answer', 'reset']);
    assert.deepEqual(w.watch.counts(), { tracked: 1, fallback: 0 });
    w.setPeers([peer('b', KEYS[1])]);
    await w.watch.check();
    assert.deepEqual(w.watch.counts(), { tracked: 0, fallback: 0 }, 'one endpoint left: not followed');
    assert.deepEqual(w.calls.switches, ['no-answer', 'reset'], 'already on its best: no switch');
  });

  it('a live peer that goes quiet is nudged; when even the nudge cannot be sent (dropped on output), it moves on', async () => {
    const w = world([peer('b', KEYS[1], ['192.0.2.12:51820', '[2001:db8::12]:51820'])]);
    for (let i = 0; i < 3; i += 1) {
      w.device[0]!.txBytes += 1000;
      w.device[0]!.rxBytes += 900;
      w.device[0]!.latestHandshake = Math.floor(w.now() / 1000);
      await w.watch.check();
      w.tick(5_000);
    }
    assert.deepEqual(w.calls.nudged, []);
    // From here every send fails: the counters stand still.
    for (let i = 0; i < 10 && w.watch.take().chosen.size === 0; i += 1) {
      await w.watch.check();
      w.tick(5_000);
    }
    assert.ok(
      w.calls.nudged.length >= 1 && w.calls.nudged.every((n) => n === 'b'),
      `nudged: ${w.calls.nudged.join(', ')}`,
    );
    assert.deepEqual(w.watch.describe('b')?.index, 1);
    assert.match(
      w.log.lines.join('\n'),
      /endpoint of Node b: 192\.0\.2\.12:51820 → \[2001:db8::12\]:51820, candidate 2 of 2 \(why: nothing could be sent to it for \d+ s/,
    );
    assert.deepEqual(w.calls.switches, ['send-failed']);
  });

  it('a peer that answers stays where it is', async () => {
    const w = world([peer('b', KEYS[1], ['192.0.2.12:51820', '198.51.100.12:51820'])]);
    for (let i = 0; i < 20; i += 1) {
      w.device[0]!.txBytes += 1000;
      w.device[0]!.rxBytes += 900;
      await w.watch.check();
      w.tick(5_000);
    }
    assert.equal(w.calls.choice, 0);
    assert.equal(w.watch.take().chosen.size, 0);
  });

  it("through the daemon's shared device read (cached 5 s, reads of 30 ms), every round reads afresh: failover takes 15-20 s", async () => {
    let now = 1_000_000;
    const device: PeerStatus = {
      publicKey: KEYS[1],
      hasPresharedKey: false,
      endpoint: '192.0.2.12:51820',
      allowedIPs: [],
      latestHandshake: 0,
      rxBytes: 0,
      txBytes: 0,
      persistentKeepalive: 0,
    };
    let reads = 0;
    // What the daemon shares between the metrics and the watch; a read takes 30 ms.
    const shared = new CachedRead(
      async (): Promise<InterfaceStatus> => {
        reads += 1;
        now += 30;
        return { name: 'wg0', publicKey: KEYS[0], listenPort: 51820, fwmark: 0, peers: [{ ...device }] };
      },
      5_000,
      () => now,
    );
    const log = memoryLogger();
    let switchedAt: number | undefined;
    const watch = new EndpointWatch({
      read: (maxAgeMs) => shared.get(maxAgeMs),
      peers: () => [peer('b', KEYS[1], ['192.0.2.12:51820', '[2001:db8::12]:51820'])],
      discovered: () => [],
      timing: { timeoutMs: 15_000, probeAfterMs: 60_000, maxProbeAfterMs: 600_000 },
      log,
      onChoice: () => {
        switchedAt ??= now;
      },
      onObserved: () => undefined,
      now: () => now,
    });
    assert.equal(watch.intervalMs, 5_000);
    // The peer answers, then goes dark just after a round: packets go out, nothing comes back.
    device.txBytes = 100;
    device.rxBytes = 100;
    await watch.check();
    const dark = now;
    let checks = 1;
    while (switchedAt === undefined && checks < 10) {
      now += watch.intervalMs - 30;
      device.txBytes += 96;
      await watch.check();
      checks += 1;
    }
    assert.equal(reads, checks, 'one read per round');
    assert.ok(switchedAt !== undefined, 'switched');
    const took = switchedAt - dark;
    assert.ok(took >= 15_000 && took <= 20_000 + 200, `switched ${took} ms after the peer went dark`);
    assert.match(log.lines.join('\n'), /endpoint of Node b: 192\.0\.2\.12:51820 → \[2001:db8::12\]:51820/);
  });

  it('notes a peer arriving from an endpoint none of its addresses explains (NAT), once', async () => {
    const w = world([peer('b', KEYS[1], ['192.0.2.12:51820', '198.51.100.12:51820'])]);
    w.device[0]!.endpoint = '203.0.113.7:40123';
    w.device[0]!.latestHandshake = Math.floor(w.now() / 1000) - 5;
    await w.watch.check();
    await w.watch.check();
    assert.deepEqual(w.watch.observed, { b: '203.0.113.7:40123' });
    assert.equal(w.calls.observed, 1);
  });
});
