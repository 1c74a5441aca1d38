#!/usr/bin/env bash
# The demo: installs what it needs (Debian packages, npm packages), builds, and runs a local
# 3-node wg-overlay cluster in network namespaces. Needs root (namespaces, WireGuard).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "demo: needs root (network namespaces, WireGuard): run it with sudo" >&2; exit 1; fi
bash test/setup.sh >&2
exec node dist/test/demo/demo.js "$@"
