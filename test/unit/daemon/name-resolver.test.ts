/**
 * The name resolver: a name resolves to its first address and the change is announced; a name
 * that never resolved stays absent (and is retried sooner); a failed refresh keeps the last
 * address with one warning; a lookup that never answers times out; names no longer wanted are
 * forgotten.
 */
import assert from 'node:assert/strict';
import { NameResolver } from '../../../service/src/daemon/name-resolver.js';
import { memoryLogger } from '../../../service/src/log/logger.js';

const tick = (ms = 5): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('unit: name resolver', () => {
  it('resolves, refreshes, keeps the last address through a failure, and forgets unwanted names', async () => {
    const answers = new Map<string, string[] | Error>([
      ['vpn.example.com', ['198.51.100.7', '2001:db8::7']],
      ['gone.example.com', new Error('ENOTFOUND')],
    ]);
    const log = memoryLogger();
    let changes = 0;
    const r = new NameResolver(
      async (n) => {
        const a = answers.get(n);
        if (a instanceof Error) throw a;
        return a ?? [];
      },
      log,
      () => {
        changes += 1;
      },
      { refresh: 20, retry: 10, timeout: 50 },
    );
    r.want(['vpn.example.com', 'gone.example.com']);
    await tick();
    assert.deepEqual([...r.resolved], [['vpn.example.com', '198.51.100.7']]);
    assert.equal(changes, 1);
    assert.ok(
      log.lines.some(
        (l) =>
          l.startsWith('<4>') &&
          /cannot resolve gone\.example\.com \(ENOTFOUND\); what needs it is left out until it resolves/.test(l),
      ),
    );
    answers.set('vpn.example.com', new Error('SERVFAIL'));
    await tick(40);
    assert.deepEqual([...r.resolved], [['vpn.example.com', '198.51.100.7']], 'the last address is kept');
    assert.equal(
      log.lines.filter((l) =>
        /cannot resolve vpn\.example\.com \(SERVFAIL\); keeping its last address 198\.51\.100\.7/.test(l),
      ).length,
      1,
      'one warning, not one per retry',
    );
    answers.set('gone.example.com', ['203.0.113.5']);
    await tick(30);
    assert.equal(r.resolved.get('gone.example.com'), '203.0.113.5');
    r.want(['gone.example.com']);
    assert.deepEqual([...r.resolved.keys()], ['gone.example.com']);
    r.stop();
  });

  it('a lookup that never answers times out', async () => {
    const log = memoryLogger();
    const r = new NameResolver(
      () => new Promise(() => undefined),
      log,
      () => undefined,
      { timeout: 20, retry: 1_000 },
    );
    r.want(['slow.example.com']);
    await tick(50);
    assert.ok(
      log.lines.some((l) =>
        /cannot resolve slow\.example\.com \(no answer for slow\.example\.com within 20 ms\)/.test(l),
      ),
    );
    assert.equal(r.resolved.size, 0);
    r.stop();
  });
});
