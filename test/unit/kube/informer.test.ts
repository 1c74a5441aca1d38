/**
 * RestartingInformer's restart logic against a fake client-node informer: restarts after errors
 * with backoff (or the owner's delay), a start that hangs is abandoned for a fresh informer,
 * up and list reports after a successful start, and nothing runs on after stop(). Real timers,
 * kept to milliseconds by a millisecond backoff and start timeout.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import * as k8s from '@kubernetes/client-node';
import { RestartingInformer, type InformerHooks } from '../../../service/src/kube/informer.js';
import { memoryLogger } from '../../../service/src/log/logger.js';
import { Backoff } from '../../../service/src/util/backoff.js';

/** What one start() of the fake does. */
type StartStep =
  | 'ok' // lists and watches
  | 'error' // reports an error and returns, like client-node when the list fails
  | 'reject' // throws, like client-node when the watch cannot even be set up
  | 'hang'; // never answers until release() (a connection that never completes)

/**
 * A client-node informer as RestartingInformer uses it (on/off/start/stop/list), modelled on
 * client-node 1.4's ListWatch: errors go to the 'error' handlers, and a start that completes
 * opens its watch even when stop() was called while it was pending.
 */
class FakeInformer {
  readonly handlers = new Map<string, Array<(arg?: unknown) => void>>();
  starts = 0;
  /** Starts that have come to an end (any outcome). */
  finished = 0;
  stops = 0;
  /** True while a watch is open: set when a start completes, cleared by stop() and by a watch error. */
  watching = false;
  readonly createdAt = performance.now();
  private readonly hung: Array<() => void> = [];

  constructor(private readonly steps: StartStep[], private readonly objects: () => k8s.KubernetesObject[]) {}

  on(verb: string, cb: (arg?: unknown) => void): void {
    this.handlers.set(verb, [...(this.handlers.get(verb) ?? []), cb]);
  }

  off(verb: string, cb: (arg?: unknown) => void): void {
    this.handlers.set(verb, (this.handlers.get(verb) ?? []).filter((h) => h !== cb));
  }

  /** Calls the handlers of `verb`, as client-node does for add/update/delete/error. */
  fire(verb: string, arg?: unknown): void {
    if (verb === 'error') this.watching = false;
    for (const h of [...(this.handlers.get(verb) ?? [])]) h(arg);
  }

  list(): k8s.KubernetesObject[] {
    return this.objects();
  }

  async start(): Promise<void> {
    this.starts += 1;
    const step = this.steps.shift() ?? 'ok';
    try {
      await Promise.resolve();
      if (step === 'error') { this.fire('error', new Error('list failed')); return; }
      if (step === 'reject') throw new Error('no currently active cluster');
      if (step === 'hang') await new Promise<void>((resolve) => this.hung.push(resolve));
      this.watching = true;
    } finally {
      this.finished += 1;
    }
  }

  /** Lets the oldest hung start complete (late). */
  release(): void {
    this.hung.shift()?.();
  }

  async stop(): Promise<void> {
    this.stops += 1;
    this.watching = false;
  }
}

const obj = (name: string): k8s.KubernetesObject => ({ metadata: { name } });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until `cond` holds (polling every millisecond), failing after `ms`. */
async function until(cond: () => boolean, what: string, ms = 500): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) assert.fail(`timed out waiting for: ${what}`);
    await sleep(1);
  }
}

interface Harness {
  informer: RestartingInformer<k8s.KubernetesObject>;
  /** Every fake the factory made, oldest first. */
  made: FakeInformer[];
  /** What the factory was called with. */
  calls: Array<{ kc: k8s.KubeConfig; path: string; list: unknown }>;
  /** The hook calls in order: 'up', 'list a,b', 'error <message>'. */
  events: string[];
  /** The backoff delays offered to onError. */
  offered: number[];
  /** The objects the API holds (what list() shows). */
  objects: k8s.KubernetesObject[];
  log: ReturnType<typeof memoryLogger>;
  kc: k8s.KubeConfig;
  list: () => Promise<k8s.KubernetesListObject<k8s.KubernetesObject>>;
  start(): void;
}

const harnesses: Harness[] = [];

/** A RestartingInformer on a fake factory; `steps[i]` scripts the starts of the i-th informer made. */
function harness(o: { steps?: StartStep[][]; backoff?: Backoff; startTimeoutMs?: number; onError?: (err: unknown, ms: number) => number | undefined } = {}): Harness {
  const kc = new k8s.KubeConfig();
  const list = async (): Promise<k8s.KubernetesListObject<k8s.KubernetesObject>> => ({ items: [] });
  const h: Harness = {
    made: [],
    calls: [],
    events: [],
    offered: [],
    objects: [obj('a'), obj('b')],
    log: memoryLogger(),
    kc,
    list,
    informer: undefined as unknown as RestartingInformer<k8s.KubernetesObject>,
    start: () => h.informer.start(hooks),
  };
  const hooks: InformerHooks<k8s.KubernetesObject> = {
    onList: (items) => { h.events.push(`list ${items.map((i) => i.metadata?.name).join(',')}`); },
    onUp: () => { h.events.push('up'); },
    onError: (err, ms) => {
      h.events.push(`error ${(err as Error).message}`);
      h.offered.push(ms);
      return o.onError?.(err, ms);
    },
  };
  h.informer = new RestartingInformer<k8s.KubernetesObject>(kc, '/api/v1/nodes', list, h.log, 'node watch', o.startTimeoutMs ?? 5_000, {
    makeInformer: (kcArg, path, listArg) => {
      h.calls.push({ kc: kcArg, path, list: listArg });
      const fake = new FakeInformer([...(o.steps?.[h.made.length] ?? [])], () => [...h.objects]);
      h.made.push(fake);
      return fake as unknown as k8s.Informer<k8s.KubernetesObject> & k8s.ObjectCache<k8s.KubernetesObject>;
    },
    backoff: o.backoff ?? new Backoff(1, 8),
  });
  harnesses.push(h);
  return h;
}

describe('unit: RestartingInformer', () => {
  afterEach(async () => {
    // No timers or hung starts left behind for the next test.
    for (const h of harnesses.splice(0)) {
      await h.informer.stop();
      for (const f of h.made) for (let i = 0; i < 5; i += 1) f.release();
    }
  });

  it('makes one informer for its path and list function, starts it, then reports up and the full list', async () => {
    const h = harness();
    h.start();
    await until(() => h.events.length >= 2, 'up and list');
    assert.deepEqual(h.events, ['up', 'list a,b']);
    assert.equal(h.made.length, 1);
    assert.equal(h.calls[0]!.kc, h.kc);
    assert.equal(h.calls[0]!.path, '/api/v1/nodes');
    assert.equal(h.calls[0]!.list, h.list);
    assert.equal(h.made[0]!.starts, 1);
    assert.equal(h.made[0]!.stops, 0);
  });

  it('every add, update and delete reports the complete current list', async () => {
    const h = harness();
    h.start();
    await until(() => h.events.includes('up'), 'up');
    const f = h.made[0]!;
    h.objects.push(obj('c'));
    f.fire('add', obj('c'));
    h.objects[0] = { metadata: { name: 'a', resourceVersion: '2' } };
    f.fire('update', h.objects[0]);
    h.objects.splice(1, 1);
    f.fire('delete', obj('b'));
    assert.deepEqual(h.events, ['up', 'list a,b', 'list a,b,c', 'list a,b,c', 'list a,c']);
  });

  it('an error while watching: onError is offered the backoff, and the same informer restarts after it', async () => {
    const h = harness();
    h.start();
    await until(() => h.events.includes('up'), 'up');
    h.made[0]!.fire('error', new Error('watch ended'));
    assert.deepEqual(h.events, ['up', 'list a,b', 'error watch ended']);
    assert.deepEqual(h.offered, [1]);
    await until(() => h.events.length === 5, 'up again');
    assert.deepEqual(h.events.slice(3), ['up', 'list a,b']);
    assert.equal(h.made.length, 1, 'restarted, not replaced');
    assert.equal(h.made[0]!.starts, 2);
    assert.ok(h.log.lines.some((l) => l.includes('node watch stopped; restarting in 1 ms')), h.log.lines.join('\n'));
  });

  it('the backoff grows while restarts fail, no up is reported for a failed start, and a successful start resets it', async () => {
    const h = harness({ steps: [['ok', 'error', 'error', 'error', 'ok']], backoff: new Backoff(1, 4) });
    h.start();
    await until(() => h.events.includes('up'), 'up');
    h.made[0]!.fire('error', new Error('watch ended'));
    await until(() => h.events.filter((e) => e === 'up').length === 2, 'up after the failed restarts');
    h.made[0]!.fire('error', new Error('watch ended again'));
    await until(() => h.events.filter((e) => e === 'up').length === 3, 'up once more');
    assert.deepEqual(h.offered, [1, 2, 4, 4, 1]);
    assert.deepEqual(h.events, [
      'up', 'list a,b',
      'error watch ended', 'error list failed', 'error list failed', 'error list failed',
      'up', 'list a,b',
      'error watch ended again',
      'up', 'list a,b',
    ]);
    assert.equal(h.made.length, 1);
    assert.equal(h.made[0]!.starts, 6);
  });

  it('a start() that throws is handled like an error: onError, restart, no up for it', async () => {
    const h = harness({ steps: [['reject', 'ok']] });
    h.start();
    await until(() => h.events.includes('up'), 'up');
    assert.deepEqual(h.events, ['error no currently active cluster', 'up', 'list a,b']);
    assert.deepEqual(h.offered, [1]);
    assert.equal(h.made[0]!.starts, 2);
  });

  it('the delay onError returns overrides the backoff', async () => {
    const h = harness({ backoff: new Backoff(60_000, 60_000), onError: () => 2 });
    h.start();
    await until(() => h.events.includes('up'), 'up');
    h.made[0]!.fire('error', new Error('not found'));
    await until(() => h.made[0]!.starts === 2, 'a restart after 2 ms, not 60 s');
    assert.deepEqual(h.offered, [60_000]);
    assert.ok(h.log.lines.some((l) => l.includes('restarting in 2 ms')), h.log.lines.join('\n'));
  });

  it('without an override the restart waits for the backoff delay', async () => {
    const h = harness({ backoff: new Backoff(40, 40) });
    h.start();
    await until(() => h.events.includes('up'), 'up');
    const t0 = performance.now();
    h.made[0]!.fire('error', new Error('watch ended'));
    await sleep(15);
    assert.equal(h.made[0]!.starts, 1, 'not restarted before the backoff delay');
    await until(() => h.made[0]!.starts === 2, 'restart after the backoff delay');
    assert.ok(performance.now() - t0 >= 35, `restarted after ${performance.now() - t0} ms`);
  });

  it('a start() that hangs past the start timeout is abandoned for a fresh informer; the stale one is stopped when its start completes late', async () => {
    const h = harness({ steps: [['hang'], ['ok']], startTimeoutMs: 20 });
    const t0 = performance.now();
    h.start();
    await until(() => h.events.includes('up'), 'up from a fresh informer');
    const [stale, fresh] = h.made;
    assert.equal(h.made.length, 2);
    assert.ok(fresh!.createdAt - t0 >= 19, `replaced after ${fresh!.createdAt - t0} ms, before the start timeout`);
    assert.equal(stale!.starts, 1);
    assert.equal(fresh!.starts, 1);
    assert.deepEqual(h.events, ['up', 'list a,b']);
    assert.deepEqual(h.offered, [], 'a hung start is not reported as an error');
    assert.ok(h.log.lines.some((l) => /node watch: no answer from the API server within .*; starting over in 1 ms/.test(l)), h.log.lines.join('\n'));
    assert.equal(stale!.stops, 0, 'a start that still hangs cannot be stopped (client-node would open the watch anyway)');

    stale!.release();
    await until(() => stale!.finished === 1, 'the stale start completing');
    await sleep(2);
    assert.equal(stale!.stops, 1, 'the stale informer stopped once its start came through');
    assert.equal(stale!.watching, false);
    assert.equal(fresh!.stops, 0);
    assert.deepEqual(h.events, ['up', 'list a,b'], 'no up or list from the stale informer');
  });

  it('events and errors from a replaced informer are ignored', async () => {
    const h = harness({ steps: [['hang'], ['ok']], startTimeoutMs: 10 });
    h.start();
    await until(() => h.events.includes('up'), 'up from a fresh informer');
    const [stale, fresh] = h.made;
    h.objects.push(obj('c'));
    stale!.fire('add', obj('c'));
    stale!.fire('error', new Error('stale watch ended'));
    await sleep(20);
    assert.deepEqual(h.events, ['up', 'list a,b']);
    assert.deepEqual(h.offered, []);
    assert.equal(fresh!.starts, 1, 'no restart for a stale error');
    assert.equal(h.made.length, 2);
    fresh!.fire('add', obj('c'));
    assert.deepEqual(h.events, ['up', 'list a,b', 'list a,b,c']);
  });

  it('the start timeout doubles with each start abandoned in a row', async () => {
    const h = harness({ steps: [['hang'], ['hang'], ['ok']], startTimeoutMs: 15 });
    h.start();
    await until(() => h.events.includes('up'), 'up from the third informer');
    assert.equal(h.made.length, 3);
    const second = h.made[2]!.createdAt - h.made[1]!.createdAt;
    assert.ok(second >= 29, `the second start was given up after ${second} ms, not twice the timeout`);
  });

  it('stop() stops the informer; no restart happens after it, and errors after it are ignored', async () => {
    const h = harness({ onError: () => 5 });
    h.start();
    await until(() => h.events.includes('up'), 'up');
    const f = h.made[0]!;
    f.fire('error', new Error('watch ended'));
    await h.informer.stop();
    assert.equal(f.stops, 1);
    f.fire('error', new Error('aborted')); // client-node reports the abort of its watch as an error
    await sleep(25);
    assert.equal(f.starts, 1, 'the pending restart was cancelled');
    assert.equal(h.made.length, 1);
    assert.deepEqual(h.events, ['up', 'list a,b', 'error watch ended']);
  });

  it('stop() while a start is pending: when that start completes, its watch is stopped and no up is reported', async () => {
    const h = harness({ steps: [['hang']], startTimeoutMs: 5_000 });
    h.start();
    await until(() => h.made[0]?.starts === 1, 'the start');
    const f = h.made[0]!;
    await h.informer.stop();
    assert.equal(f.stops, 1);
    f.release(); // client-node opens the watch even so
    await until(() => f.finished === 1, 'the start completing');
    await sleep(2);
    assert.equal(f.watching, false, 'the watch opened after stop() is closed again');
    assert.equal(f.stops, 2);
    assert.deepEqual(h.events, []);
    assert.equal(h.made.length, 1);
  });

  it('stop() after a hung start was abandoned: no fresh informer, and the stale one is stopped when its start completes', async () => {
    const h = harness({ steps: [['hang']], startTimeoutMs: 10, backoff: new Backoff(30, 30) });
    h.start();
    await until(() => h.log.lines.some((l) => l.includes('no answer from the API server')), 'the start given up');
    const stale = h.made[0]!;
    await h.informer.stop();
    await sleep(45);
    assert.equal(h.made.length, 1, 'no fresh informer after stop()');
    stale.release();
    await until(() => stale.finished === 1, 'the stale start completing');
    await sleep(2);
    assert.equal(stale.watching, false, 'the stale informer\'s watch is closed');
    assert.equal(stale.stops, 1);
    assert.deepEqual(h.events, []);
  });
});
