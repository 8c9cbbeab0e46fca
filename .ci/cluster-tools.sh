#!/usr/bin/env bash
# Tools for `modex cluster` and tests/cluster/, idempotent (run as root on Debian):
#   etcd-server, pgbouncer and nginx from Debian; Patroni (PyPI `patroni[etcd3]` + psycopg)
#   into its own venv, $1 (default .venv/patroni), made with /usr/bin/python3 so that the
#   `postgres` user can run it (PostgreSQL refuses root). PostgreSQL 15's binaries come
#   from the machine (/usr/lib/postgresql/15/bin).
# Installing the Debian packages must not leave etcd, pgbouncer or nginx running as
# services: starts are denied while apt runs (policy-rc.d), and anything started anyway
# is stopped and disabled. `modex cluster up` starts its own copies.
set -euo pipefail
cd "$(dirname "$0")/.."

PATRONI_VENV="${1:-.venv/patroni}"
PATH="$PATH:/usr/sbin:/sbin"

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v pgbouncer >/dev/null 2>&1 || missing+=(pgbouncer)
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)

if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# temporary, from .ci/cluster-tools.sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  cleanup() { if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; }
  trap cleanup EXIT
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  cleanup
  trap - EXIT
  # belt and braces: on a machine where the services did start, stop them again (never
  # postgresql: the machine's own server may be the one CI uses)
  for svc in etcd pgbouncer nginx; do
    if [ -x "/etc/init.d/$svc" ]; then service "$svc" stop >/dev/null 2>&1 || true; fi
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
  done
fi

if [ ! -x "$PATRONI_VENV/bin/patroni" ]; then
  /usr/bin/python3 -m venv "$PATRONI_VENV"
  "$PATRONI_VENV/bin/pip" install -q --disable-pip-version-check \
    "patroni[etcd3]>=4.0,<5" "psycopg[binary]>=3.1"
fi
# the postgres user runs it: every folder on the way must be searchable
chmod -R a+rX "$PATRONI_VENV"

# sed reads all of it: head would end the pipe early (SIGPIPE, fatal under pipefail)
etcd --version | sed -n 1p
pgbouncer --version | sed -n 1p
nginx -v
"$PATRONI_VENV/bin/patroni" --version
