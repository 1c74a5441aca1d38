#!/usr/bin/env node
// wg-overlay CLI from a checkout (after `npm ci && npm run build`). Packages ship a bundle instead.
import { main } from '../dist/service/src/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`wg-overlay: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
