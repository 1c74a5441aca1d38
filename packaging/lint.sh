#!/usr/bin/env bash
# Checks the packages with the distributions' own tools and fails on anything they report that
# is not overridden with its reason:
#   lintian (Debian) on the .deb: no error, warning or info tag (pedantic and experimental ones
#     are printed); the overrides are the package's own, packaging/lintian/wg-overlay, installed
#     as /usr/share/lintian/overrides/wg-overlay, and an override no longer needed is reported too;
#   rpmlint (Fedora, openSUSE) on the .rpm, with packaging/rpmlint.toml: no error but
#     no-signature (the package is signed when it is published, not when it is built), no warning.
#
#   bash packaging/lint.sh PKG.deb PKG.rpm      (packaging/build.sh --lint runs it)
#
# Exit status: 0 clean, 1 something reported, 2 usage, 3 lintian or rpmlint is not installed
# (Debian: apt-get install lintian rpmlint).
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

[ $# -eq 2 ] && [ "${1%.deb}" != "$1" ] && [ "${2%.rpm}" != "$2" ] || {
  echo "usage: bash packaging/lint.sh PKG.deb PKG.rpm" >&2
  exit 2
}
deb=$1
rpm=$2
for tool in lintian rpmlint; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "lint.sh: $tool is not installed (Debian: apt-get install lintian rpmlint)" >&2
    exit 3
  }
done

failed=0

lout=$(lintian --pedantic --display-info --display-experimental --show-overrides "$deb" 2>&1)
bad=$(printf '%s\n' "$lout" | grep -E '^[EWI]: ' || true)
notes=$(printf '%s\n' "$lout" | grep -E '^[PX]: ' || true)
overridden=$(printf '%s\n' "$lout" | grep -cE '^O: ' || true)
if [ -n "$bad" ]; then
  printf 'lintian %s:\n%s\n' "$(basename "$deb")" "$bad"
  failed=1
fi
[ -z "$notes" ] || printf 'lintian (pedantic and experimental, not failing):\n%s\n' "$notes"
echo "lintian: $(printf '%s\n' "$bad" | grep -c '^E: ') errors, $(printf '%s\n' "$bad" | grep -c '^W: ') warnings," \
  "$(printf '%s\n' "$bad" | grep -c '^I: ') info tags; $overridden overridden (packaging/lintian/wg-overlay)"

rout=$(rpmlint -c "$repo/packaging/rpmlint.toml" "$rpm" 2>&1)
tags=$(printf '%s\n' "$rout" | grep -E '^[^ ]+: [EW]: ' || true)
rbad=$(printf '%s\n' "$tags" | grep -vE ': E: no-signature$' | grep -v '^$' || true)
if [ -n "$rbad" ]; then
  printf 'rpmlint %s:\n%s\n' "$(basename "$rpm")" "$rbad"
  failed=1
fi
echo "rpmlint: $(printf '%s\n' "$tags" | grep -c ': E: ') errors ($(printf '%s\n' "$tags" | grep -c ': E: no-signature$') of them" \
  "no-signature), $(printf '%s\n' "$tags" | grep -c ': W: ') warnings (packaging/rpmlint.toml)"

exit $failed
