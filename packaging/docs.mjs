#!/usr/bin/env node
// Writes the documentation the packages ship, generated from the one description of the command
// line (service/src/cli/commands.ts, rendered by service/src/cli/manual.ts) and from the commented
// default config file. Used by packaging/build.sh before nfpm.yaml is packaged:
//
//   node packaging/docs.mjs OUTDIR VERSION
//
// OUTDIR/wg-overlay.8.gz        the manual page wg-overlay(8)
// OUTDIR/wg-overlay.conf.5.gz   wg-overlay.conf(5), from packaging/wg-overlay.conf
// OUTDIR/wg-overlay.bash        the bash completion
//
// The pages are dated with the newest entry of packaging/changelog.yaml, and compressed as Debian
// wants them (gzip -9n: best compression, no name or time stamp), so the same input gives the
// same bytes.
import { build } from 'esbuild';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import YAML from 'yaml';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The renderers (TypeScript), bundled into a temporary module and loaded. */
export async function loadRenderers() {
  const result = await build({
    entryPoints: [join(root, 'service/src/cli/manual.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node18.19',
    write: false,
    logLevel: 'warning',
    // CommonJS dependencies call require(); an ES module has none unless we make one.
    banner: { js: "import { createRequire as __c } from 'node:module'; const require = __c(import.meta.url);" },
  });
  const dir = mkdtempSync(join(tmpdir(), 'wg-overlay-docs-'));
  try {
    const file = join(dir, 'manual.mjs');
    writeFileSync(file, result.outputFiles[0].text);
    return await import(pathToFileURL(file).href);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The date (YYYY-MM-DD) of the newest entry of the changelog. */
export function releaseDate(changelogFile = join(root, 'packaging/changelog.yaml')) {
  const entries = YAML.parse(readFileSync(changelogFile, 'utf8'));
  const newest = entries.map((e) => new Date(e.date)).sort((a, b) => b - a)[0];
  if (!newest || Number.isNaN(newest.getTime())) throw new Error(`${changelogFile}: no dated entry`);
  return newest.toISOString().slice(0, 10);
}

/** gzip -9n. */
const gzip = (text) => gzipSync(Buffer.from(text), { level: 9 });

/** Writes `data` to `file` through a temporary file (a parallel reader never sees half a file). */
function put(file, data) {
  writeFileSync(`${file}.tmp`, data, { mode: 0o644 });
  renameSync(`${file}.tmp`, file);
}

/** Writes the three files into `outDir`. */
export async function writeDocs(outDir, version) {
  const r = await loadRenderers();
  const info = { version, date: releaseDate() };
  const conf = readFileSync(join(root, 'packaging/wg-overlay.conf'), 'utf8');
  mkdirSync(outDir, { recursive: true });
  put(join(outDir, 'wg-overlay.8.gz'), gzip(r.renderManPage(info)));
  put(join(outDir, 'wg-overlay.conf.5.gz'), gzip(r.renderConfManPage(conf, info)));
  put(join(outDir, 'wg-overlay.bash'), r.renderBashCompletion());
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [outDir, version] = process.argv.slice(2);
  if (!outDir || !version) {
    process.stderr.write('usage: node packaging/docs.mjs OUTDIR VERSION\n');
    process.exit(2);
  }
  await writeDocs(resolve(outDir), version);
}
