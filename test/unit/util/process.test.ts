/**
 * pidAlive as a table: this process and init exist (init even when it is another user's), a pid
 * no process can have does not.
 */
import assert from 'node:assert/strict';
import { pidAlive } from '../../../service/src/util/process.js';

describe('unit: whether a process exists', () => {
  const rows: [string, number, boolean][] = [
    ['this process', process.pid, true],
    ['init (pid 1)', 1, true],
    ['a pid above the kernel limit', 999_999_999, false],
  ];
  for (const [what, pid, want] of rows) {
    it(`${what}: ${want ? 'exists' : 'does not exist'}`, () => assert.equal(pidAlive(pid), want));
  }
});
