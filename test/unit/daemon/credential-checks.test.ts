/**
 * The checks of this node's credential, with fake answers and a fake clock: node-policy.yaml in
 * force or not (one warning per check, saying what a stolen token could do and how to apply the
 * policy), an answer that tells nothing retried and reported as unknown, a reload checking again;
 * the token's expiry read from its JWT payload (unverified) and warned about from 14 days ahead,
 * once a day, an error once it passed.
 */
import assert from 'node:assert/strict';
import type { NodePolicyProbe, PolicyVerdict } from '../../../service/src/kube/node-policy-probe.js';
import { tokenExpiryNotice, TOKEN_WARN_BEFORE_MS } from '../../../service/src/kube/token.js';
import { createLogger, type Logger } from '../../../service/src/log/logger.js';
import { NodePolicyCheck, TokenExpiryCheck, type PolicyState } from '../../../service/src/daemon/credential-checks.js';
import { until } from '../../support/wait.js';

const DAY = 24 * 3600_000;
const NOW = Date.parse('2030-01-01T00:00:00Z');

/** A logger that keeps `level message` lines. */
function capture(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const log = createLogger({ level: 'debug', journal: false, sink: (l) => lines.push(l.replace(/^\S+ /, '')) });
  return { log, lines };
}

/** A JWT-shaped token with payload `claims` (no signature: nothing verifies it). */
function jwt(claims: object): string {
  return `eyJhbGciOiJSUzI1NiJ9.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.c2ln`;
}

/** A probe that answers from `answers` in turn (the last one again when they run out), counting calls. */
function probeOf(answers: PolicyVerdict[]): NodePolicyProbe & { calls: number } {
  const p = {
    calls: 0,
    probe: async () => answers[Math.min(p.calls++, answers.length - 1)]!,
  };
  return p;
}

const levels = (lines: string[], level: string) => lines.filter((l) => l.startsWith(`${level} `));

describe('unit: daemon: node-policy check', () => {
  const enforced: PolicyVerdict = { state: 'enforced', detail: 'nodes "a" is forbidden: … denied request: no labels' };
  const unknown: PolicyVerdict = { state: 'unknown', detail: 'HTTP 503: etcd is down' };

  function check(answers: PolicyVerdict[]) {
    const { log, lines } = capture();
    const states: PolicyState[] = [];
    const probe = probeOf(answers);
    const c = new NodePolicyCheck({ probe, node: 'node-a', log, onState: (s) => states.push(s), retryMs: 5 });
    return { c, lines, states, probe };
  }

  it('not in force: one warning per check saying what a stolen token could do and how to apply the policy', async () => {
    const { c, lines, states } = check([{ state: 'not-enforced' }]);
    await c.check();
    assert.deepEqual(states, ['not-enforced']);
    const warnings = levels(lines, 'warning');
    assert.equal(warnings.length, 1);
    assert.match(
      warnings[0]!,
      /node-policy\.yaml is not in force: a dry-run write of a label on this node's own Node node-a/,
    );
    assert.match(warnings[0]!, /whoever steals this node's token can change any Node \(labels, taints, pod CIDRs/);
    assert.match(warnings[0]!, /kubectl apply -f \/usr\/share\/wg-overlay\/kubernetes\/node-policy\.yaml/);
    // A reload checks again, and says it again; nothing is retried in between.
    await c.check();
    assert.equal(levels(lines, 'warning').length, 2);
    c.stop();
  });

  it('in force: no warning, one info line with the denial', async () => {
    const { c, lines, states } = check([enforced]);
    await c.check();
    assert.deepEqual(states, ['enforced']);
    assert.deepEqual(levels(lines, 'warning'), []);
    assert.match(levels(lines, 'info')[0]!, /node-policy\.yaml is in force: .* was refused \(nodes "a" is forbidden/);
    c.stop();
  });

  it('an answer that tells nothing (API down) is unknown, said once, and retried until there is an answer', async () => {
    const { c, lines, states, probe } = check([unknown, unknown, unknown, { state: 'not-enforced' }]);
    const first = await c.check();
    assert.equal(first.state, 'unknown');
    await until(() => probe.calls >= 4, 'four dry runs', 2_000);
    assert.deepEqual(states, ['unknown', 'unknown', 'unknown', 'not-enforced']);
    assert.equal(levels(lines, 'notice').length, 1, 'unknown is said once per check');
    assert.match(
      levels(lines, 'notice')[0]!,
      /cannot tell whether node-policy\.yaml is in force \(HTTP 503: etcd is down\)/,
    );
    assert.equal(levels(lines, 'warning').length, 1);
    c.stop();
  });

  it('a new check replaces the retries of the old one; stop ends them', async () => {
    const { c, probe } = check([unknown]);
    await c.check();
    await c.check();
    await until(() => probe.calls >= 4, 'four dry runs', 2_000);
    c.stop();
    const calls = probe.calls;
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(probe.calls <= calls + 1, `no retries after stop (${calls} → ${probe.calls})`);
  });
});

describe('unit: daemon: token expiry', () => {
  it('tokenExpiryNotice: nothing before 14 days, a warning within, an error once expired; none for a token without exp', () => {
    const at = (ms: number) => new Date(NOW + ms);
    assert.equal(TOKEN_WARN_BEFORE_MS, 14 * DAY);
    assert.deepEqual(tokenExpiryNotice(undefined, NOW), { level: 'ok' });
    assert.deepEqual(tokenExpiryNotice(at(30 * DAY), NOW), { level: 'ok' });
    assert.deepEqual(tokenExpiryNotice(at(14 * DAY + 1000), NOW), { level: 'ok' });
    const rows: Array<[number, RegExp]> = [
      [14 * DAY, /expires in 14 days \(at 2030-01-15T00:00:00\.000Z\)/],
      [DAY + 5, /expires in 1 day /],
      [5 * 3600_000, /expires in 5 hours /],
      [60_000, /expires in less than an hour /],
    ];
    for (const [left, re] of rows) {
      const n = tokenExpiryNotice(at(left), NOW);
      assert.equal(n.level, 'warning');
      assert.match(n.message!, re);
      assert.match(n.message!, /wg-overlay kubeconfig --token-only --token-file -/);
    }
    const expired = tokenExpiryNotice(at(-1000), NOW);
    assert.equal(expired.level, 'error');
    assert.match(expired.message!, /token expired at 2029-12-31T23:59:59\.000Z: the API server refuses it/);
  });

  /** A check over a token that `set` replaces, at a clock that `advance` moves. */
  function tokenCheck(first: string | undefined) {
    const { log, lines } = capture();
    let token = first;
    let now = NOW;
    const expiries: Array<number | undefined> = [];
    const c = new TokenExpiryCheck({
      token: async () => token,
      log,
      onExpiry: (s) => expiries.push(s),
      intervalMs: 3_600_000,
      now: () => now,
    });
    return {
      c,
      lines,
      expiries,
      set: (t: string) => (token = t),
      advance: (ms: number) => (now += ms),
    };
  }

  it('reads exp from the unverified JWT payload into the metric; warns from 14 days ahead, at most once a day unless asked', async () => {
    const exp = Math.floor((NOW + 20 * DAY) / 1000);
    const t = tokenCheck(jwt({ sub: 'system:serviceaccount:wg-overlay:wg-overlay', exp }));
    await t.c.check(true);
    assert.deepEqual(t.expiries, [exp]);
    assert.deepEqual(levels(t.lines, 'warning'), [], '20 days left: nothing to say');
    t.advance(6 * DAY + 3600_000); // 13 days 23 h left
    await t.c.check(false);
    assert.equal(levels(t.lines, 'warning').length, 1);
    assert.match(levels(t.lines, 'warning')[0]!, /token expires in 13 days/);
    for (let h = 0; h < 23; h++) {
      t.advance(3600_000);
      await t.c.check(false); // the hourly reads
    }
    assert.equal(levels(t.lines, 'warning').length, 1, 'once a day');
    await t.c.check(true); // a reload always says it
    assert.equal(levels(t.lines, 'warning').length, 2);
    t.advance(DAY);
    await t.c.check(false);
    assert.equal(levels(t.lines, 'warning').length, 3, 'the next day again');
    t.advance(13 * DAY);
    await t.c.check(false);
    assert.equal(levels(t.lines, 'error').length, 1);
    assert.match(levels(t.lines, 'error')[0]!, /token expired at/);
  });

  it('a token replaced on disk (--token-only) is noticed at the next read: said once, warnings start afresh', async () => {
    const t = tokenCheck(jwt({ exp: Math.floor((NOW + 3 * DAY) / 1000) }));
    await t.c.check(true);
    assert.equal(levels(t.lines, 'warning').length, 1);
    const next = Math.floor((NOW + 30 * DAY) / 1000);
    t.set(jwt({ exp: next }));
    t.advance(3600_000);
    await t.c.check(false);
    assert.equal(t.expiries.at(-1), next);
    assert.match(levels(t.lines, 'info').at(-1)!, /token was replaced: it expires at 2030-01-31T00:00:00\.000Z/);
    assert.equal(levels(t.lines, 'warning').length, 1);
  });

  it('a token that is not a JWT, or has no exp: expiry 0 in the metric, nothing said', async () => {
    for (const token of ['static-token', jwt({ sub: 'x' })]) {
      const t = tokenCheck(token);
      await t.c.check(true);
      assert.deepEqual(t.expiries, [undefined]);
      assert.deepEqual(
        t.lines.filter((l) => !l.startsWith('debug ')),
        [],
      );
    }
  });
});
