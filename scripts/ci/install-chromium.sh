#!/usr/bin/env bash
# Installs Debian's Chromium (package `chromium`, /usr/bin/chromium) for the status page's browser
# test (tests/it/status_page.rs drives it headless through tests/browser/status_page.mjs), only when
# /usr/bin/chromium is missing: a machine that has it returns at once.
#
# Usage: scripts/ci/install-chromium.sh   (as root, or with sudo on PATH)
# Owns: getting the browser onto the machine. Must never: start the browser, or install anything
# else than Debian's chromium and what apt pulls in for it.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
  exit 0
fi
SUDO=()
if [[ "$(id -u)" != 0 ]]; then
  SUDO=(sudo)
fi
echo "install-chromium: /usr/bin/chromium is missing; installing Debian's chromium" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq >&2
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium >&2
/usr/bin/chromium --version >&2
