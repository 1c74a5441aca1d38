#!/usr/bin/env bash
# Builds wg-overlay's .deb and .rpm from nfpm.yaml (the one package description):
#   1. bundles the runtime into build/bundle/wg-overlay.mjs (esbuild, ESM, Node 18.19+), and
#      writes the manual pages and the bash completion into build/doc/ (packaging/docs.mjs);
#   2. packages it with nfpm when nfpm is on PATH, otherwise with packaging/nfpm-lite.mjs, which
#      reads the same nfpm.yaml and produces the same packages with dpkg-deb and rpmbuild.
#
#   bash packaging/build.sh [--version X.Y.Z] [--target DIR] [--no-bundle] [--lint]
#
# --lint: check both packages with lintian and rpmlint afterwards (packaging/lint.sh) and fail
# on anything they report that packaging/lintian/wg-overlay or packaging/rpmlint.toml do not
# override with its reason.
#
# Version: --version, else $WG_OVERLAY_VERSION, else package.json's. Packages land in
# build/packages/ (or --target). Needs: node + npm dependencies (npm ci), and dpkg-deb and
# rpmbuild (Debian packages dpkg and rpm) unless nfpm is installed. Prints the package paths.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

version=${WG_OVERLAY_VERSION:-}
target=build/packages
bundle=yes
lint=no
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    --no-bundle) bundle=no; shift ;;
    --lint) lint=yes; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$version" ] || version=$(node -p 'require("./package.json").version')
export WG_OVERLAY_VERSION=$version

# One build at a time per checkout: build/bundle/wg-overlay.mjs is nfpm.yaml's fixed source path.
mkdir -p build
exec 9>build/.build.lock
flock 9

if [ "$bundle" = yes ]; then
  mkdir -p build/bundle
  node packaging/bundle.mjs build/bundle/wg-overlay.mjs "$version" >&2
fi
[ -f build/bundle/wg-overlay.mjs ] || { echo "build.sh: build/bundle/wg-overlay.mjs is missing" >&2; exit 1; }
# The manual pages and the bash completion (nfpm.yaml's build/doc/ sources), for this version.
node packaging/docs.mjs build/doc "$version"

mkdir -p "$target"
packages=()
if command -v nfpm >/dev/null 2>&1; then
  for p in deb rpm; do
    nfpm package --config nfpm.yaml --packager "$p" --target "$target/" >&2
  done
  mapfile -t packages < <(ls -1 "$target"/wg-overlay*"$version"*)
else
  for p in deb rpm; do
    packages+=("$(node packaging/nfpm-lite.mjs "$p" --config nfpm.yaml --target "$target")")
  done
fi
printf '%s\n' "${packages[@]}"
if [ "$lint" = yes ]; then
  bash packaging/lint.sh "$(printf '%s\n' "${packages[@]}" | grep '\.deb$')" "$(printf '%s\n' "${packages[@]}" | grep '\.rpm$')" >&2
fi
