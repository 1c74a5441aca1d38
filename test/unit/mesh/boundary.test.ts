/**
 * The pure core's boundary: every module in service/src/mesh imports only the IP arithmetic
 * (service/src/net/ip.ts) and other core modules — no node: built-ins, no packages, no adapters —
 * so the core cannot do I/O. Read from the sources, so a new import fails here at once.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../support/paths.js';

const CORE = join(REPO_ROOT, 'service', 'src', 'mesh');
const ALLOWED = (spec: string): boolean => /^\.\/[\w-]+\.js$/.test(spec) || spec === '../net/ip.js';

/** Every module specifier in a TypeScript source: static imports, re-exports and dynamic imports. */
function importsOf(source: string): string[] {
  const specs: string[] = [];
  const patterns = [
    /^\s*import\s[^'"]*?from\s*['"]([^'"]+)['"]/gm,
    /^\s*import\s*['"]([^'"]+)['"]/gm,
    /^\s*export\s[^'"]*?from\s*['"]([^'"]+)['"]/gm,
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
    /\brequire\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of source.matchAll(re)) specs.push(m[1]!);
  return specs;
}

describe('unit: the pure core imports only the IP arithmetic and itself', () => {
  const files = readdirSync(CORE).filter((f) => f.endsWith('.ts'));

  it('finds the core modules', () => {
    for (const f of ['membership.ts', 'desired.ts', 'diff.ts', 'addresses.ts', 'external-peers.ts', 'types.ts'])
      assert.ok(files.includes(f), f);
  });

  for (const f of files) {
    it(`mesh/${f}`, () => {
      const bad = importsOf(readFileSync(join(CORE, f), 'utf8')).filter((s) => !ALLOWED(s));
      assert.deepEqual(bad, [], `mesh/${f} imports ${bad.join(', ')}`);
    });
  }

  it('the rule catches what it must', () => {
    const sample =
      "import { readFile } from 'node:fs/promises';\nimport type { X } from '../config/config.js';\nexport { y } from '../wireguard/keys.js';\nconst z = await import('execa');\nimport { a } from './order.js';\nimport { b } from '../net/ip.js';";
    assert.deepEqual(
      importsOf(sample).filter((s) => !ALLOWED(s)),
      ['node:fs/promises', '../config/config.js', '../wireguard/keys.js', 'execa'],
    );
  });
});
