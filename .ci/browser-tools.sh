#!/usr/bin/env bash
# Browser test tools, idempotent: Node.js, Debian's Chromium (driven by Playwright's Python API;
# `npx playwright install` cannot download browsers here) and axe-core from the npm
# registry into tests/browser/node_modules (gitignored).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q chromium fonts-dejavu-core
fi

# Node.js runs axe-core's install and the browser's own seat store (static/js/live.js) in
# the verify_action tests (tests/js/live_store_runner.mjs; needs 18.19+ for module.register)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q nodejs npm
fi

AXE_VERSION="${AXE_VERSION:-4.11.0}"
if [ ! -f tests/browser/node_modules/axe-core/axe.min.js ]; then
  npm install --prefix tests/browser --no-save --no-audit --no-fund --loglevel=error \
    "axe-core@${AXE_VERSION}"
fi
test -f tests/browser/node_modules/axe-core/axe.min.js
/usr/bin/chromium --version
