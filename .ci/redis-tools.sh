#!/usr/bin/env bash
# Redis Cluster for `modex cluster up --redis cluster` and the broker tests (idempotent, run
# as root on Debian): Debian's redis-server (7.0: sharded pub/sub) and redis-cli
# (`--cluster create`). Installing it must not leave a Redis service running: starts are
# denied while apt runs (policy-rc.d) and a service started anyway is stopped and disabled.
# A machine that already has redis-server is left alone (its own Redis keeps running).
set -euo pipefail

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# temporary, from .ci/redis-tools.sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  cleanup() { if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; }
  trap cleanup EXIT
  apt-get update -q
  apt-get install -y -q --no-install-recommends redis-server redis-tools
  cleanup
  trap - EXIT
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now redis-server >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/redis-server ]; then
    service redis-server stop >/dev/null 2>&1 || true
  fi
fi

redis-server --version
