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
    const r = new CachedRead(async () => { reads += 1; await new Promise((res) => setTimeout(res, 5)); if (fail) throw new Error('gone'); return reads; }, 1_000, () => now);
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
});
