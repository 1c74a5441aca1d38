/**
 * Endpoint failover rules, table-driven over simulated device readings every 5 s: a silent
 * endpoint (packets out, nothing back) is left after the timeout for the next candidate; an idle
 * peer is never judged; from a fallback the best candidate is tried again later and kept if it
 * answers, else the fallback comes back with a longer wait; a peer never flaps between two
 * working endpoints; sends that fail outright are found with a nudge; every switch says why.
 */
import assert from 'node:assert/strict';
import { desiredFor } from '../../../../service/src/mesh/desired/desired.js';
import { MeshEngine } from '../../../../service/src/mesh/membership/engine.js';
import {
  failoverStep,
  initialState,
  type FailoverState,
  type FailoverTiming,
  type PeerReading,
  type SwitchReason,
} from '../../../../service/src/mesh/observations/failover.js';
import { KEYS, MESH_SETTINGS, meshNode } from '../../../support/fakes/fixtures.js';

const T: FailoverTiming = { timeoutMs: 15_000, probeAfterMs: 60_000, maxProbeAfterMs: 480_000 };
const STEP = 5_000;

/** Which endpoints answer: a function of time (ms) → indices that work. */
type Works = (now: number) => ReadonlySet<number>;

/**
 * Simulates a peer with `count` candidates for `ms`: every 5 s the side sends `sendPerStep` bytes
 * (0 = idle); the peer answers when the endpoint in use works. Returns the switches with times.
 */
function simulate(
  count: number,
  works: Works,
  ms: number,
  sendPerStep = 1000,
): { switches: Array<[number, number, string, SwitchReason]>; state: FailoverState } {
  let state = initialState(0, T);
  let rx = 0;
  let tx = 0;
  const switches: Array<[number, number, string, SwitchReason]> = [];
  for (let now = STEP; now <= ms; now += STEP) {
    tx += sendPerStep;
    if (sendPerStep > 0 && works(now).has(state.index)) rx += 148;
    const reading: PeerReading = { latestHandshake: 0, rxBytes: rx, txBytes: tx, endpoint: undefined };
    const step = failoverStep(state, { count, reading, now, timing: T });
    state = step.state;
    if (step.switchTo) switches.push([now, step.switchTo.index, step.switchTo.why, step.switchTo.reason]);
  }
  return { switches, state };
}

const all =
  (...i: number[]): Works =>
  () =>
    new Set(i);

/**
 * Like `simulate`, with handshakes and nudges: `sendable(now)` are the candidates packets can
 * leave for at all (a failed send counts nothing); `traffic(now)` whether the side sends; a
 * nudge asked for goes out in the next step if sendable. Returns the switches and the nudges.
 */
function simulateSends(
  count: number,
  works: Works,
  sendable: Works,
  traffic: (now: number) => boolean,
  ms: number,
): { switches: Array<[number, number, string, SwitchReason]>; nudges: number[]; state: FailoverState } {
  let state = initialState(0, T);
  let rx = 0;
  let tx = 0;
  let handshake = 0;
  let nudge = false;
  const switches: Array<[number, number, string, SwitchReason]> = [];
  const nudges: number[] = [];
  for (let now = STEP; now <= ms; now += STEP) {
    const sending = traffic(now) || nudge;
    if (sending && sendable(now).has(state.index)) {
      tx += traffic(now) ? 1000 : 148;
      if (works(now).has(state.index)) {
        rx += 148;
        handshake = Math.floor(now / 1000);
      }
    }
    const reading = { latestHandshake: handshake, rxBytes: rx, txBytes: tx, endpoint: undefined };
    const step = failoverStep(state, { count, reading, now, timing: T });
    state = step.state;
    nudge = step.nudge === true;
    if (nudge) nudges.push(now);
    if (step.switchTo) switches.push([now, step.switchTo.index, step.switchTo.why, step.switchTo.reason]);
  }
  return { switches, nudges, state };
}

describe('unit: endpoint failover', () => {
  it('a working first candidate is kept for ever', () => {
    assert.deepEqual(simulate(3, all(0, 1, 2), 600_000).switches, []);
  });

  it('a silent first candidate is left after the timeout for the second, which is kept', () => {
    const { switches, state } = simulate(2, all(1), 50_000);
    assert.equal(switches[0]![1], 1);
    assert.ok(switches[0]![0] >= 15_000 && switches[0]![0] <= 25_000, `switched after ${switches[0]![0]} ms`);
    assert.match(switches[0]![2], /no answer for \d+ s while packets went out/);
    assert.equal(state.index, 1);
  });

  it('an idle peer (nothing sent) is never judged, whatever works', () => {
    assert.deepEqual(
      simulate(3, all(), 600_000, 0).switches.filter(([, i]) => i !== 0),
      [],
    );
  });

  it('from a fallback it tries the best again after the wait, and stays when it answers (the first came back)', () => {
    const works: Works = (now) => new Set(now < 150_000 ? [1] : [0, 1]);
    const { switches, state } = simulate(2, works, 400_000);
    assert.deepEqual(
      switches.map(([, i]) => i),
      [1, 0, 1, 0],
      'off 0, a failed try, back, a try that works',
    );
    assert.deepEqual(
      switches.map(([, , , reason]) => reason),
      ['no-answer', 'probe', 'probe-failed', 'probe'],
      'each switch names its reason in one word (what the metrics count by)',
    );
    assert.equal(state.index, 0);
    assert.equal(state.tryingFrom, undefined);
  });

  it('never flaps between two working endpoints: once back on the best, it stays', () => {
    const works: Works = (now) => new Set(now < 30_000 ? [1] : [0, 1]);
    const { switches } = simulate(2, works, 3_600_000);
    assert.deepEqual(
      switches.map(([, i]) => i),
      [1, 0],
    );
  });

  it('tries of a best candidate that stays broken come less and less often (the wait doubles, up to a bound)', () => {
    const { switches } = simulate(2, all(1), 3_600_000);
    const tries = switches.filter(([, i]) => i === 0).map(([t]) => t);
    const gaps = tries.slice(1).map((t, k) => t - tries[k]!);
    assert.ok(gaps.length >= 3);
    for (let k = 1; k < gaps.length; k += 1) assert.ok(gaps[k]! >= gaps[k - 1]!, `gaps grow: ${gaps.join(', ')}`);
    assert.ok(
      gaps.every((g) => g <= T.maxProbeAfterMs + T.timeoutMs + 2 * STEP),
      `bounded: ${gaps.join(', ')}`,
    );
    for (const [, , why] of switches.filter(([, i]) => i === 1).slice(1))
      assert.match(why, /back to the one that worked, next try in \d+ s/);
  });

  it('all candidates silent: it walks through them all in order, each given a full timeout', () => {
    const { switches } = simulate(3, all(), 120_000);
    assert.deepEqual(
      switches.slice(0, 3).map(([, i]) => i),
      [1, 2, 0],
    );
    for (let k = 1; k < 3; k += 1) assert.ok(switches[k]![0] - switches[k - 1]![0] >= T.timeoutMs);
  });

  it('sends that fail outright (a drop on output, no route) are seen through a nudge: the next candidate within two timeouts', () => {
    const cut = 60_000;
    const only0Before = (now: number): ReadonlySet<number> => new Set(now < cut ? [0, 1] : [1]);
    const { switches, nudges, state } = simulateSends(2, only0Before, only0Before, () => true, 200_000);
    const [at, index, why, reason] = switches[0]!;
    assert.equal(index, 1);
    assert.equal(reason, 'send-failed');
    assert.match(why, /nothing could be sent to it for \d+ s \(no route, or dropped on the way out\)/);
    assert.ok(
      at - cut >= 2 * T.timeoutMs && at - cut <= 2 * T.timeoutMs + 3 * STEP,
      `switched ${at - cut} ms after the cut`,
    );
    assert.ok(nudges.length > 0 && nudges.every((n) => n > cut), 'nudged only after the cut');
    // Later tries of the first candidate fail the same way and come back to the second.
    assert.deepEqual(
      switches.slice(1).map(([, i]) => i),
      [0, 1],
      JSON.stringify(switches),
    );
    assert.equal(state.index, 1);
  });

  it('a peer with a live session that goes idle gets one nudge per quiet spell and is never switched', () => {
    const busy = (now: number): boolean => now <= 60_000 || (now > 300_000 && now <= 330_000);
    const { switches, nudges } = simulateSends(2, all(0, 1), all(0, 1), busy, 600_000);
    assert.deepEqual(switches, []);
    assert.equal(nudges.length, 2, `nudges at ${nudges.join(', ')}`);
  });

  it('a peer that never answered (no live session) is not nudged, so a node that is down is not rotated through its endpoints', () => {
    const { switches, nudges } = simulateSends(3, all(), all(0, 1, 2), () => false, 600_000);
    assert.deepEqual(nudges, []);
    assert.deepEqual(switches, []);
  });

  it('one candidate: nothing to switch to', () => {
    assert.deepEqual(simulate(1, all(), 120_000).switches, []);
  });
});

describe('unit: desired state with failover choices', () => {
  it('a chosen endpoint replaces the best one for that peer only, also when derived from the previous state', () => {
    const settings = { ...MESH_SETTINGS, overlayCidr6: undefined };
    const nodes = [
      meshNode('a', { ip: '192.0.2.11', created: 1, key: KEYS[0] }),
      meshNode('b', { ip: ['192.0.2.12', '2001:db8::12'], created: 2, key: KEYS[1] }),
      meshNode('c', { ip: '192.0.2.13', created: 3, key: KEYS[2] }),
    ];
    const self = { name: 'a', publicKey: KEYS[0]! };
    const engine = new MeshEngine(settings, self);
    engine.setNodes(nodes);
    const first = desiredFor({ self, selfNode: nodes[0], membership: engine.result(), settings });
    assert.deepEqual(first.peers.find((p) => p.name === 'b')!.candidates, ['192.0.2.12:51820', '[2001:db8::12]:51820']);
    const choice = { chosen: new Map([['b', '[2001:db8::12]:51820']]), changed: new Set(['b']) };
    const second = desiredFor({
      self,
      selfNode: nodes[0],
      membership: engine.result(),
      settings,
      previous: first,
      choice,
    });
    assert.equal(second.peers.find((p) => p.name === 'b')!.endpoint, '[2001:db8::12]:51820');
    assert.equal(
      second.peers.find((p) => p.name === 'c'),
      first.peers.find((p) => p.name === 'c'),
      'other peers keep their objects',
    );
    assert.deepEqual(
      second.peersDelta?.added.map((p) => p.name),
      ['b'],
      'derived: only b changed',
    );
    const back = desiredFor({
      self,
      selfNode: nodes[0],
      membership: engine.result(),
      settings,
      previous: second,
      choice: { chosen: new Map(), changed: new Set(['b']) },
    });
    assert.equal(back.peers.find((p) => p.name === 'b')!.endpoint, '192.0.2.12:51820');
  });
});
