#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian 12 machine, then builds.
# Idempotent: a second run installs nothing and only rebuilds.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v wg >/dev/null || need+=(wireguard-tools)
command -v wireguard-go >/dev/null || need+=(wireguard-go)
command -v ip >/dev/null || need+=(iproute2)
command -v ping >/dev/null || need+=(iputils-ping)
command -v openssl >/dev/null || need+=(openssl)
command -v nc >/dev/null || need+=(netcat-openbsd)
command -v unshare >/dev/null || need+=(util-linux)
command -v dbus-daemon >/dev/null || need+=(dbus-daemon)
command -v dot >/dev/null || need+=(graphviz)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v rpmbuild >/dev/null || need+=(rpm)
command -v dpkg-deb >/dev/null || need+=(dpkg)
command -v flock >/dev/null || need+=(util-linux)
command -v nft >/dev/null || need+=(nftables)
# What really leaves a node in the fail-closed tests: tcpdump on a port of the underlay bridge.
command -v tcpdump >/dev/null || need+=(tcpdump)
# The kernel tier: a qemu VM (software emulation) booting Debian's kernel from an ext4 image.
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v setpriv >/dev/null || need+=(util-linux)
# promtool checks the shipped Prometheus alert rules (installing the package starts no service here).
command -v promtool >/dev/null || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

echo "setup: building"
# tsc overwrites dist/ in place (no rm: a parallel run may be reading it)
npx tsc -p tsconfig.json
# ...but outputs whose source was moved or deleted would stay and still match test/run.sh's
# globs (a moved test would run twice, against stale copies of its helpers): remove those.
find dist/test -name '*.js' -print | while read -r out; do
  src="${out#dist/}"
  if [ ! -e "${src%.js}.ts" ]; then rm -f "$out" "$out.map"; fi
done
find dist/test -depth -type d -empty -delete
# The one-file runtime the packages ship (the packaging tests read it; packaging/build.sh makes it too).
mkdir -p build/bundle
version=$(node -p 'require("./package.json").version')
node packaging/bundle.mjs build/bundle/wg-overlay.mjs "$version"
# The manual pages and the bash completion the packages ship (the packaging tests read them too).
node packaging/docs.mjs build/doc "$version"
