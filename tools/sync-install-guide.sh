#!/usr/bin/env bash
# Copies the README's "Install on a node" section (to the end of the README) into docs/install.md,
# the guide the packages ship as /usr/share/doc/wg-overlay/install.md (a unit test checks they match).
set -euo pipefail
cd "$(dirname "$0")/.."
sed -n '/^## Install on a node$/,$p' README.md > docs/install.md
