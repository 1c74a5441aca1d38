#!/usr/bin/env bash
# The formatter and the linter over the whole tree (`npm run lint`; `npm run lint -- --fix` rewrites
# what they can). Prettier formats; ESLint checks what formatting cannot (see eslint.config.mjs).
set -euo pipefail
cd "$(dirname "$0")/.."
files=("{service,test,packaging,bin,tools}/**/*.{ts,mjs,cjs,js}" eslint.config.mjs)
if [ "${1:-}" = "--fix" ]; then
  npx prettier --log-level warn --write "${files[@]}"
  npx eslint --fix --max-warnings 0 "${files[@]}"
else
  npx prettier --log-level warn --check "${files[@]}"
  npx eslint --max-warnings 0 "${files[@]}"
fi
