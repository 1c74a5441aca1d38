#!/usr/bin/env node
// Bundles the wg-overlay runtime (service/src + its npm dependencies) into ONE ES module for
// Node 18.19+, so packages ship no node_modules. Used by packaging/build.sh.
//
//   node packaging/bundle.mjs OUTFILE VERSION
//
// VERSION replaces the constant in service/src/version.ts, so `wg-overlay version` and the
// daemon's start line name the package version.
import { build } from 'esbuild';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const [outfile, version] = process.argv.slice(2);
if (!outfile || !version) {
  process.stderr.write('usage: node packaging/bundle.mjs OUTFILE VERSION\n');
  process.exit(2);
}

// The same entry as bin/wg-overlay.js, but importing the TypeScript sources directly.
const entry = `import { main } from './service/src/main.ts';
main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(\`wg-overlay: \${err instanceof Error ? err.stack ?? err.message : String(err)}\\n\`); process.exitCode = 1; },
);
`;

/** Replaces service/src/version.ts with the package version. */
const versionPlugin = {
  name: 'wg-overlay-version',
  setup(b) {
    b.onLoad({ filter: /[\\/]service[\\/]src[\\/]version\.ts$/ }, () => ({
      contents: `export const VERSION = ${JSON.stringify(version)};\n`,
      loader: 'ts',
    }));
  },
};

const result = await build({
  stdin: { contents: entry, resolveDir: root, sourcefile: 'wg-overlay-entry.ts', loader: 'ts' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node18.19',
  outfile: resolve(outfile),
  // CommonJS dependencies (dbus-next, …) call require(); an ES module has none unless we make one.
  banner: {
    js: [
      '// wg-overlay ' + version + ': bundled runtime (see /usr/share/doc/wg-overlay).',
      "import { createRequire as __wgoCreateRequire } from 'node:module';",
      'const require = __wgoCreateRequire(import.meta.url);',
    ].join('\n'),
  },
  // Optional native add-ons of dbus-next, loaded lazily only for abstract-socket and X11 session-bus
  // addresses that the system bus never uses.
  external: ['x11', 'usocket'],
  plugins: [versionPlugin],
  legalComments: 'none',
  logLevel: 'warning',
  metafile: true,
});
const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
process.stderr.write(`bundle: ${outfile} (${Math.round(bytes / 1024)} KiB, version ${version})\n`);
