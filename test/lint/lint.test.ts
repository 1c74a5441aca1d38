/**
 * The lint tier: the formatter and the linter over the whole tree, as `npm run lint` runs them
 * (tools/lint.sh), so that a clean clone's `npm test` fails on a violation.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { REPO_ROOT } from '../support/paths.js';

/** Runs a command in the repository; its exit status and output. */
function run(cmd: string, args: string[]): { status: number | null; output: string } {
  const r = spawnSync(cmd, args, { cwd: REPO_ROOT, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

const FILES = ['{service,test,packaging,bin,tools}/**/*.{ts,mjs,cjs,js}', 'eslint.config.mjs'];

describe('lint: the whole tree is formatted and passes the linter', function () {
  this.timeout(300_000);

  it('Prettier: every file is formatted (npm run lint -- --fix rewrites them)', () => {
    const r = run('npx', ['prettier', '--log-level', 'warn', '--check', ...FILES]);
    assert.equal(r.status, 0, r.output);
  });

  it('ESLint: no error and no warning (floating promises, unused code, lines ≤150, function and parameter limits)', () => {
    const r = run('npx', ['eslint', '--max-warnings', '0', ...FILES]);
    assert.equal(r.status, 0, r.output);
  });
});
