/**
 * The pure core's boundary: every module in service/src/mesh imports only the IP arithmetic
 * (service/src/net/ip.ts) and other core modules — no node: built-ins, no packages, no adapters —
 * so the core cannot do I/O. Read from the sources, so a new import fails here at once.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { REPO_ROOT } from '../../support/paths.js';

const CORE = join(REPO_ROOT, 'service', 'src', 'mesh');
const IP = join(REPO_ROOT, 'service', 'src', 'net', 'ip.js');

/** True when `spec`, imported by the core module `file`, is another core module or the IP arithmetic. */
function allowed(file: string, spec: string): boolean {
  if (!spec.startsWith('./') && !spec.startsWith('../')) return false;
  const target = resolve(dirname(file), spec);
  return target === IP || (!relative(CORE, target).startsWith('..') && target.endsWith('.js'));
}

/** Every TypeScript file under `dir`, as paths relative to the core. */
function coreFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? coreFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [relative(CORE, join(dir, e.name))] : [],
  );
}

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
  const files = coreFiles(CORE);

  it('finds the core modules, in their sub-folders', () => {
    const expected = ['membership/membership.ts', 'desired/desired.ts', 'desired/diff.ts', 'membership/addresses.ts'];
    for (const f of [...expected, 'membership/external-peers.ts', 'observations/failover.ts', 'types.ts'])
      assert.ok(files.includes(f), f);
  });

  for (const f of files) {
    it(`mesh/${f}`, () => {
      const bad = importsOf(readFileSync(join(CORE, f), 'utf8')).filter((s) => !allowed(join(CORE, f), s));
      assert.deepEqual(bad, [], `mesh/${f} imports ${bad.join(', ')}`);
    });
  }

  it('the rule catches what it must', () => {
    const sample = [
      "import { readFile } from 'node:fs/promises';",
      "import type { X } from '../../config/config.js';",
      "export { y } from '../../wireguard/keys.js';",
      "const z = await import('execa');",
      "import { a } from './order.js';",
      "import { b } from '../../net/ip.js';",
      "import { c } from '../types.js';",
    ].join('\n');
    const file = join(CORE, 'membership', 'x.ts');
    assert.deepEqual(
      importsOf(sample).filter((s) => !allowed(file, s)),
      ['node:fs/promises', '../../config/config.js', '../../wireguard/keys.js', 'execa'],
    );
  });
});
