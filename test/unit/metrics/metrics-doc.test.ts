/**
 * docs/metrics.md against the daemon's registry, both ways: every metric served (with every
 * series it can have sampled) is in the table with its type and labels, and every metric in the
 * table is served; the help text of each metric is one line that Prometheus shows.
 */
import assert from 'node:assert/strict';
import { documentedMetrics, parseExposition } from '../../support/monitoring.js';
import { everyMetric } from '../../support/fakes/metrics.js';

describe('unit: docs/metrics.md lists what /metrics serves', () => {
  it('nothing served is undocumented, nothing documented is unserved; types and labels agree', async () => {
    const served = parseExposition((await everyMetric().render()).body);
    const documented = documentedMetrics();
    assert.ok(served.size >= 20, `${served.size} metrics served`);
    const row = (name: string): string => {
      const f = served.get(name)!;
      return `| \`${name}\` | ${f.type} | ${f.labels.map((l) => `\`${l}\``).join(', ') || '—'} | … |`;
    };
    const undocumented = [...served.keys()].filter((n) => !documented.has(n));
    assert.deepEqual(undocumented, [], `add to docs/metrics.md:\n${undocumented.map(row).join('\n')}`);
    const unserved = [...documented.keys()].filter((n) => !served.has(n));
    assert.deepEqual(unserved, [], 'documented in docs/metrics.md but not served');
    for (const [name, doc] of documented)
      assert.deepEqual(doc, served.get(name), `docs/metrics.md row of ${name}; served: ${row(name)}`);
  });

  it('every metric has a help text, and the names follow Prometheus conventions', async () => {
    const body = (await everyMetric().render()).body;
    for (const [name, f] of parseExposition(body)) {
      assert.match(body, new RegExp(`^# HELP ${name} \\S.{10,}$`, 'm'), `${name} has a help text`);
      assert.match(name, /^wg_overlay_[a-z0-9_]+$/);
      if (f.type === 'counter') assert.match(name, /_total$/, `counter ${name} ends in _total`);
      else assert.doesNotMatch(name, /_total$/, `${f.type} ${name} does not end in _total`);
    }
  });
});
