/**
 * The words for a file that could not be read: missing, forbidden, or anything else by its code.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { whyUnreadable } from '../../../service/src/util/read-failure.js';

const failure = (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    () => assert.fail('expected a failure'),
    (err: unknown) => err,
  );

describe('unit: util: why a file could not be read', () => {
  it('names a missing file, a forbidden one, and any other failure by its code', async () => {
    assert.equal(whyUnreadable(await failure(readFile('/nonexistent/file'))), 'does not exist');
    assert.equal(
      whyUnreadable(Object.assign(new Error('x'), { code: 'EACCES' })),
      'is not readable (permission denied)',
    );
    assert.equal(whyUnreadable(await failure(readFile(tmpdir()))), 'cannot be read (EISDIR)');
    assert.equal(whyUnreadable(new Error('odd')), 'cannot be read (Error: odd)');
  });
});
