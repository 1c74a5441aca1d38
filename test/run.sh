#!/usr/bin/env bash
# The test command (README: `npm test`). On a fresh machine it installs what the tests need
# (Debian packages, npm packages), builds, and runs the suite. Its last line is
# "N passed, N failed, N skipped" with the totals of everything it ran.
#
#   npm test                 every tier
#   npm test -- unit         one tier: lint | unit | integration | e2e | system | kernel (several may be given)
#   npm test -- unit --grep address   extra arguments go to mocha
#
# A tier runs dist/test/<tier>/**/*.test.js; the integration tier also runs the Kubernetes API
# test server's own tests, dist/test/kube-api/**/*.test.js (they live beside the server).
set -euo pipefail
cd "$(dirname "$0")/.."

tiers=()
extra=()
for arg in "$@"; do
  case "$arg" in
    lint|unit|integration|e2e|system|kernel) tiers+=("$arg") ;;
    *) extra+=("$arg") ;;
  esac
done
[ ${#tiers[@]} -gt 0 ] || tiers=(lint unit integration e2e system kernel)

bash test/setup.sh >&2

globs=()
for t in "${tiers[@]}"; do
  globs+=("dist/test/$t/**/*.test.js")
  if [ "$t" = integration ]; then globs+=("dist/test/kube-api/**/*.test.js"); fi
done

set +e
node node_modules/mocha/bin/mocha.js --exit --reporter ./test/support/summary-reporter.cjs \
  --timeout 60000 "${globs[@]}" "${extra[@]}"
rc=$?
set -e
exit $rc
