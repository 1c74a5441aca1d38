/**
 * Logging for journald: sd-daemon priority prefixes, level threshold, one line per entry, and
 * error chains on one line.
 */
import assert from 'node:assert/strict';
import { createLogger, describeError, oneLine } from '../../../service/src/log/logger.js';

describe('unit: logger', () => {
  it('prefixes sd-daemon(3) priorities in journal mode', () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'debug', journal: true, sink: (l) => lines.push(l) });
    log.debug('d');
    log.info('i');
    log.notice('n');
    log.warning('w');
    log.error('e');
    assert.deepEqual(lines, ['<7>d', '<6>i', '<5>n', '<4>w', '<3>e']);
  });

  it('drops lines below the threshold and can change it at run time', () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'warning', journal: true, sink: (l) => lines.push(l) });
    log.info('hidden');
    log.warning('shown');
    log.setLevel('info');
    log.info('now shown');
    assert.deepEqual(lines, ['<4>shown', '<6>now shown']);
    assert.equal(log.enabled('debug'), false);
  });

  it('never splits an entry over lines', () => {
    const lines: string[] = [];
    const log = createLogger({ journal: true, sink: (l) => lines.push(l) });
    log.error('first\nsecond\r\n  third\u0007');
    assert.deepEqual(lines, ['<3>first | second | third\\u0007']);
    assert.equal(oneLine('a\nb'), 'a | b');
  });

  it('uses time and level words on a terminal', () => {
    const lines: string[] = [];
    createLogger({ journal: false, sink: (l) => lines.push(l) }).warning('careful');
    assert.match(lines[0]!, /^\d{4}-\d\d-\d\dT\S+Z warning careful$/);
  });

  it('describes an error with its cause chain on one line', () => {
    const err = new Error('reading kubeconfig /x', { cause: new Error('EACCES: permission denied') });
    assert.equal(describeError(err), 'reading kubeconfig /x: EACCES: permission denied');
    assert.equal(describeError('plain'), 'plain');
  });
});
