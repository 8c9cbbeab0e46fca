#!/usr/bin/env bash
# Browser test tools, idempotent: Debian's Chromium (driven by Playwright's Python API;
# `npx playwright install` cannot download browsers here) and axe-core from the npm
# registry into tests/browser/node_modules (gitignored).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q chromium fonts-dejavu-core
fi

AXE_VERSION="${AXE_VERSION:-4.11.0}"
if [ ! -f tests/browser/node_modules/axe-core/axe.min.js ]; then
  npm install --prefix tests/browser --no-save --no-audit --no-fund --loglevel=error \
    "axe-core@${AXE_VERSION}"
fi
test -f tests/browser/node_modules/axe-core/axe.min.js
/usr/bin/chromium --version
