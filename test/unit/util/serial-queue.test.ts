/**
 * The serial queue: tasks run one at a time in the order they were queued, each caller gets its
 * own task's result or error, a failed task does not stop the ones after it, and `idle()` waits
 * for everything queued so far.
 */
import assert from 'node:assert/strict';
import { SerialQueue } from '../../../service/src/util/serial-queue.js';

const tick = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('unit: serial queue', () => {
  it('runs tasks one at a time, in order, even when a later one is quicker', async () => {
    const q = new SerialQueue();
    const events: string[] = [];
    let running = 0;
    const task = (name: string, ms: number) => async () => {
      running += 1;
      assert.equal(running, 1, 'no overlap');
      events.push(`start ${name}`);
      await tick(ms);
      events.push(`end ${name}`);
      running -= 1;
      return name;
    };
    const results = await Promise.all([q.run(task('a', 20)), q.run(task('b', 1)), q.run(task('c', 5))]);
    assert.deepEqual(results, ['a', 'b', 'c']);
    assert.deepEqual(events, ['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
  });

  it('a failing task rejects its own promise only; the chain goes on', async () => {
    const q = new SerialQueue();
    const failed = q.run(async () => {
      await tick(1);
      throw new Error('boom');
    });
    const thrown = q.run(() => {
      throw new Error('sync boom');
    });
    const after = q.run(() => 'still runs');
    await assert.rejects(failed, /boom/);
    await assert.rejects(thrown, /sync boom/);
    assert.equal(await after, 'still runs');
  });

  it('idle() waits for every task queued so far, failed ones included, and never rejects', async () => {
    const q = new SerialQueue();
    await q.idle(); // nothing queued: at once
    const done: string[] = [];
    void q.run(async () => {
      await tick(10);
      done.push('slow');
    });
    q.run(() => Promise.reject(new Error('ignored here'))).catch(() => done.push('failed'));
    await q.idle();
    assert.deepEqual(done, ['slow', 'failed']);
    // A task queued after idle() was asked for is not waited for by that call.
    let late = false;
    const idle = q.idle();
    void q.run(async () => {
      await tick(10);
      late = true;
    });
    await idle;
    assert.equal(late, false);
  });
});
