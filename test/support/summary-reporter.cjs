// Mocha reporter: the spec reporter's output, the time each tier took (by the prefix of each
// top-level describe: "unit:", "e2e:", …), then one closing line "N passed, N failed, N skipped"
// that CI reads as the run's totals.
'use strict';
const Mocha = require('mocha');
const {
  EVENT_RUN_END,
  EVENT_TEST_PASS,
  EVENT_TEST_FAIL,
  EVENT_TEST_PENDING,
  EVENT_HOOK_END,
  EVENT_SUITE_BEGIN,
  EVENT_SUITE_END,
} = Mocha.Runner.constants;

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    runner.on(EVENT_TEST_PASS, () => {
      passed += 1;
    });
    // A failing hook counts as one failure: the tests it guarded did not run.
    runner.on(EVENT_TEST_FAIL, () => {
      failed += 1;
    });
    runner.on(EVENT_TEST_PENDING, () => {
      skipped += 1;
    });
    void EVENT_HOOK_END;
    const tiers = new Map();
    const began = new Map();
    const tierOf = (suite) => /^([a-z0-9-]+):/i.exec(suite.title)?.[1] ?? 'other';
    runner.on(EVENT_SUITE_BEGIN, (suite) => {
      if (suite.parent?.root) began.set(suite, Date.now());
    });
    runner.on(EVENT_SUITE_END, (suite) => {
      if (!began.has(suite)) return;
      tiers.set(tierOf(suite), (tiers.get(tierOf(suite)) ?? 0) + Date.now() - began.get(suite));
    });
    runner.once(EVENT_RUN_END, () => {
      const fmt = (ms) =>
        ms < 60_000
          ? `${(ms / 1000).toFixed(1)} s`
          : `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
      if (tiers.size > 0)
        process.stdout.write(`\ntime by tier: ${[...tiers].map(([t, ms]) => `${t} ${fmt(ms)}`).join(', ')}\n`);
      process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
    });
  }
}

module.exports = SummaryReporter;
