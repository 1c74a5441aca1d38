/**
 * Leadership as a pure step, table-driven: liveness comes only from writes seen within the
 * configured duration (the Lease's own duration is not an input at all); the one leader rule
 * (first alive in rank order, else the first that did not stop); and when a node writes the
 * Lease: the leader renews and writes itself back over anyone, a better-ranked member takes it at
 * once, and a vacant location is taken in turn, one step apart, counted from when it became vacant.
 */
import assert from 'node:assert/strict';
import {
  chooseLeader,
  isLive,
  leaseTurn,
  livenessOf,
  locationWish,
  newLeaseBook,
  nextLapse,
  recordLease,
  vacancyOrder,
  vacancyStart,
  type LeaderWish,
  type LeaseReading,
} from '../../../../service/src/mesh/observations/leadership.js';

const LOC = 'location:east';
const ORDER = ['a', 'b', 'c'];
const TIMING = { durationMs: 5_000, stepMs: 1_000 };

describe('unit: leadership — liveness from writes', () => {
  it('a write is a new holder or a new renewal stamp; the same reading again is not', () => {
    const book = newLeaseBook();
    assert.equal(recordLease(book, { location: LOC, holder: 'a', renewTime: 't1' }, 1_000), true);
    assert.equal(recordLease(book, { location: LOC, holder: 'a', renewTime: 't1' }, 3_000), false);
    assert.equal(book.writes.get(LOC)!.get('a'), 1_000, 'the first sighting counts, by this node’s clock');
    assert.equal(recordLease(book, { location: LOC, holder: 'a', renewTime: 't2' }, 4_000), true);
    assert.equal(book.writes.get(LOC)!.get('a'), 4_000);
  });

  const rows: Array<[string, Array<[string, number]>, number, string[], string[]]> = [
    ['written just now: alive', [['a', 10_000]], 10_000, ['a'], []],
    ['written 4.9 s ago: alive', [['a', 10_000]], 14_900, ['a'], []],
    ['written 5 s ago: lapsed (the configured duration, whatever the Lease said)', [['a', 10_000]], 15_000, [], ['a']],
    [
      'a junior wrote itself in after the leader: both alive',
      [
        ['a', 10_000],
        ['b', 11_000],
      ],
      12_000,
      ['a', 'b'],
      [],
    ],
    [
      'the leader stopped writing, the junior did not',
      [
        ['a', 10_000],
        ['b', 14_000],
      ],
      16_000,
      ['b'],
      ['a'],
    ],
  ];
  for (const [what, writes, now, alive, lapsed] of rows) {
    it(what, () => {
      const book = newLeaseBook();
      writes.forEach(([holder, at], i) => recordLease(book, { location: LOC, holder, renewTime: `t${i}` }, at));
      const l = livenessOf(book, now, TIMING.durationMs);
      assert.deepEqual([...(l.alive.get(LOC) ?? [])].sort(), alive);
      assert.deepEqual([...(l.lapsed.get(LOC) ?? [])].sort(), lapsed);
    });
  }

  it('the one liveness rule, the next lapse, and when a location became vacant', () => {
    assert.equal(isLive(0, 4_999, 5_000), true);
    assert.equal(isLive(0, 5_000, 5_000), false);
    const book = newLeaseBook();
    assert.equal(vacancyStart(book, LOC, 7_000, 5_000), 7_000, 'never written: now');
    recordLease(book, { location: LOC, holder: 'a', renewTime: 't1' }, 1_000);
    recordLease(book, { location: LOC, holder: 'b', renewTime: 't2' }, 2_000);
    assert.equal(nextLapse(book, 3_000, 5_000), 6_000);
    assert.equal(vacancyStart(book, LOC, 9_000, 5_000), 7_000, 'when the last writer lapsed');
    assert.equal(nextLapse(book, 9_000, 5_000), undefined);
  });
});

describe('unit: leadership — the leader rule', () => {
  const rows: Array<[string, string[], string[], string]> = [
    ['nobody known: the first by rank', [], [], 'a'],
    ['the first alive', ['a'], [], 'a'],
    ['a junior alive beside the senior: the senior', ['b', 'a'], [], 'a'],
    ['only a junior alive: it leads while the senior has not written', ['b'], [], 'b'],
    ['the leader lapsed: the next that did not stop', [], ['a'], 'b'],
    ['everyone lapsed: the first', [], ['a', 'b', 'c'], 'a'],
  ];
  for (const [what, alive, lapsed, leader] of rows) {
    it(what, () => assert.equal(chooseLeader(ORDER, new Set(alive), new Set(lapsed)), leader));
  }

  it('the vacancy order puts the lapsed last, and the wish says whether anyone is alive', () => {
    assert.deepEqual(vacancyOrder({ order: ORDER, lapsed: new Set(['a']) }), ['b', 'c', 'a']);
    const wish = locationWish(LOC, ORDER, { alive: new Map([[LOC, new Set(['b'])]]), lapsed: new Map() });
    assert.deepEqual(wish, { location: LOC, leader: 'b', order: ORDER, lapsed: new Set(), someoneAlive: true });
  });
});

describe('unit: leadership — when this node writes the Lease', () => {
  const wish = (leader: string, o: Partial<LeaderWish> = {}): LeaderWish => ({
    location: LOC,
    leader,
    order: ORDER,
    lapsed: new Set(),
    someoneAlive: true,
    ...o,
  });
  const lease = (holder: string): LeaseReading => ({ location: LOC, holder, renewTime: 't' });
  const rows: Array<{
    what: string;
    self: string;
    wish: LeaderWish;
    lease?: LeaseReading;
    lastWriteAt?: number;
    vacantSince?: number;
    take?: boolean;
    renew?: boolean;
  }> = [
    {
      what: 'the leader, holding it, renewed just now: nothing',
      self: 'a',
      wish: wish('a'),
      lease: lease('a'),
      lastWriteAt: 9_000,
    },
    {
      what: 'the leader, holding it, a third of the duration later: renews',
      self: 'a',
      wish: wish('a'),
      lease: lease('a'),
      lastWriteAt: 8_000,
      renew: true,
    },
    {
      what: 'the leader, a junior wrote itself in: writes itself back at once',
      self: 'a',
      wish: wish('a'),
      lease: lease('b'),
      take: true,
    },
    { what: 'the leader, no Lease yet: takes it', self: 'a', wish: wish('a', { someoneAlive: false }), take: true },
    { what: 'a junior of the leader: never writes while it is alive', self: 'b', wish: wish('a'), lease: lease('a') },
    {
      what: 'a junior holding it, outranked by the leader alive: stops',
      self: 'b',
      wish: wish('a'),
      lease: lease('b'),
    },
    {
      what: 'a better-ranked member back while a junior leads: takes it at once',
      self: 'a',
      wish: wish('b'),
      lease: lease('b'),
      take: true,
    },
    {
      what: 'vacant: the second in turn waits a step from the vacancy',
      self: 'b',
      wish: wish('a', { someoneAlive: false }),
      vacantSince: 9_500,
    },
    {
      what: 'vacant: the second in turn, a step after the vacancy, takes it',
      self: 'b',
      wish: wish('a', { someoneAlive: false }),
      vacantSince: 9_000,
      take: true,
    },
    {
      what: 'vacant, the first lapsed but running again: it ranks above the verdict, takes it',
      self: 'a',
      wish: wish('b', { someoneAlive: false, lapsed: new Set(['a']) }),
      take: true,
    },
    {
      what: 'vacant, a lapsed member ranked below the leader comes last in turn',
      self: 'b',
      wish: wish('a', { someoneAlive: false, lapsed: new Set(['b']) }),
      vacantSince: 8_500,
    },
  ];
  for (const row of rows) {
    it(row.what, () => {
      const turn = leaseTurn({
        wish: row.wish,
        self: row.self,
        lease: row.lease,
        now: 10_000,
        timing: TIMING,
        lastWriteAt: row.lastWriteAt ?? 0,
        vacantSince: row.vacantSince,
      });
      assert.equal(turn.write?.take === true, row.take === true, JSON.stringify(turn));
      assert.equal(turn.write?.take === false, row.renew === true, JSON.stringify(turn));
    });
  }
});
