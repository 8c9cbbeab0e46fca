"""A local multi-node cluster from Debian and PyPI packages (`modex cluster up|down`):
nginx -> N `modex serve` -> PgBouncer -> per database a Patroni-managed primary with
synchronous standbys (etcd as Patroni's store) -> and Redis. Also PgBouncer on its own, for
tests that put it between the app and an existing PostgreSQL."""
