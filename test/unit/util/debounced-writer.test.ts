/**
 * The debounced writer behind wg0.conf and status.json: a burst of changes shares one write made
 * a moment after the first, writes never overlap, `flush` writes at once instead of the timed
 * write, a delay of 0 writes within `changed`, and `stop` writes the final state once more and
 * ignores later changes.
 */
import assert from 'node:assert/strict';
import { DebouncedWriter } from '../../../service/src/util/debounced-writer.js';

const tick = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A writer whose writes record the state they saw and take `writeMs`. */
function recording(delayMs: number, writeMs = 0) {
  const rec = { state: 0, written: [] as number[], running: 0, overlapped: false, delaysAsked: 0 };
  const writer = new DebouncedWriter<number>({
    write: async () => {
      rec.running += 1;
      if (rec.running > 1) rec.overlapped = true;
      const seen = rec.state;
      await tick(writeMs);
      rec.written.push(seen);
      rec.running -= 1;
      return seen;
    },
    delayMs: () => {
      rec.delaysAsked += 1;
      return delayMs;
    },
  });
  return { rec, writer };
}

describe('unit: debounced writer', () => {
  it('a burst of changes shares one write, made after the delay with the latest state', async () => {
    const { rec, writer } = recording(30);
    for (let i = 1; i <= 5; i += 1) {
      rec.state = i;
      await writer.changed();
    }
    assert.deepEqual(rec.written, [], 'nothing written yet');
    assert.equal(rec.delaysAsked, 1, 'the delay is asked at the first change of the burst');
    await tick(60);
    assert.deepEqual(rec.written, [5]);
    rec.state = 6;
    await writer.changed();
    await tick(60);
    assert.deepEqual(rec.written, [5, 6], 'a later change starts a new burst');
    await writer.stop();
  });

  it('writes never overlap, and flush writes at once, after the write in progress, instead of the timed write', async () => {
    const { rec, writer } = recording(20, 15);
    rec.state = 1;
    await writer.changed();
    await tick(25); // the timed write is in progress
    rec.state = 2;
    await writer.changed();
    assert.equal(await writer.flush(), 2, 'flush resolves with what its write returned');
    await tick(40);
    assert.deepEqual(rec.written, [1, 2], 'the timed write of state 2 was replaced by the flush');
    assert.equal(rec.overlapped, false);
    await writer.stop();
  });

  it('with a delay of 0, changed() writes at once and resolves when written', async () => {
    const { rec, writer } = recording(0, 5);
    rec.state = 7;
    await writer.changed();
    assert.deepEqual(rec.written, [7]);
    await writer.stop();
  });

  it('stop cancels the timed write, writes the final state once more, and ignores later changes', async () => {
    const { rec, writer } = recording(1_000);
    rec.state = 1;
    await writer.changed();
    rec.state = 2;
    assert.equal(await writer.stop(), 2);
    rec.state = 3;
    await writer.changed();
    await tick(20);
    assert.deepEqual(rec.written, [2]);
  });
});
