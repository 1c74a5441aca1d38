/**
 * The shared read behind metrics scrapes: concurrent callers share one read, an answer is reused
 * for its time to live, a read still in flight is shared whatever its age, and a failed read is
 * not kept.
 */
import assert from 'node:assert/strict';
import { CachedRead } from '../../../service/src/util/cached-read.js';

describe('unit: cached read', () => {
  it('200 concurrent callers cost one read; a later one reads again; a failure is not kept', async () => {
    let now = 0;
    let reads = 0;
    let fail = false;
    const r = new CachedRead(
      async () => {
        reads += 1;
        await new Promise((res) => setTimeout(res, 5));
        if (fail) throw new Error('gone');
        return reads;
      },
      1_000,
      () => now,
    );
    const all = await Promise.all(Array.from({ length: 200 }, () => r.get()));
    assert.equal(reads, 1);
    assert.ok(all.every((v) => v === 1));
    now = 500;
    assert.equal(await r.get(), 1, 'reused within its time');
    now = 2_000;
    fail = true;
    await assert.rejects(r.get(), /gone/);
    fail = false;
    assert.equal(await r.get(), 3, 'a failed read is not kept');
    assert.equal(reads, 3);
  });

  it('a caller that needs a fresher answer than the time to live gets a new read; others keep sharing it', async () => {
    let now = 0;
    let reads = 0;
    const r = new CachedRead(
      async () => {
        reads += 1;
        now += 30;
        return reads;
      },
      5_000,
      () => now,
    );
    assert.equal(await r.get(), 1);
    now += 4_970; // the read finished 4.97 s ago: still within the 5 s time to live
    assert.equal(await r.get(), 1, 'within the time to live');
    assert.equal(await r.get(2_500), 2, 'older than the 2.5 s this caller accepts: read again');
    now += 1_000;
    assert.equal(await r.get(2_500), 2, 'one second old: fresh enough');
    assert.equal(await r.get(60_000), 2, 'a longer max age never stretches the time to live');
    now += 5_000;
    assert.equal(await r.get(60_000), 3);
  });
});
