"""Every Redis key and channel name of a deployment, in one place.

Several deployments may share one Redis server, and pub/sub ignores the database number,
so each deployment names everything under its own prefix: `MODEX_REDIS_PREFIX`, or by
default `modex:<id>` where <id> is the random deployment id that `modex migrate` writes
once into the metadata database (sql/meta/003_deployment.sql). A random id kept there
rather than a hash of DATABASE_URL: every instance of a deployment reads the same row
however it reaches the database (directly, through PgBouncer, by another host name), and
two deployments whose URLs read alike (`postgres:5432/modex` in two compose projects)
still differ.

A show's keys keep the Redis Cluster hash tag `{show:ID}` (the prefix may not contain
braces, or the tag would be the prefix's). Epochs name the namespace that started them
(`epoch_tag`: the prefix and the database number), so an event that reaches a reader from
another namespace anyway (two deployments given one prefix on two database numbers) is
told apart from a new epoch of its own and dropped.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Protocol

from redis.connection import ConnectionPool

PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
EPOCH_TAG_LEN = 8
READ_DEPLOYMENT_ID = "SELECT id FROM deployment"


class Fetcher(Protocol):
    """An asyncpg pool or connection (the metadata database)."""

    async def fetchval(self, query: str, *args: object) -> object: ...


def check_prefix(prefix: str) -> str:
    """A prefix given by the operator; ValueError names what is wrong with it."""
    if not PREFIX.fullmatch(prefix):
        raise ValueError(
            f"MODEX_REDIS_PREFIX={prefix!r}: use 1-64 of A-Z a-z 0-9 _ . : - "
            "(no braces: they would take the place of the show's Redis Cluster hash tag)"
        )
    return prefix


def prefix_of_deployment(deployment_id: str) -> str:
    """The default prefix: 12 hex digits of the deployment id (48 bits: a handful of
    deployments on one Redis do not collide)."""
    digits = re.sub(r"[^0-9a-f]", "", deployment_id.lower())
    if len(digits) < 12:
        raise ValueError(f"deployment id {deployment_id!r} is not a random id")
    return f"modex:{digits[:12]}"


def database_number(redis_url: str) -> int:
    if redis_url.partition("://")[0].lower().endswith("+cluster"):
        return 0  # a Redis Cluster has database 0 only (broker_cluster.cluster_client)
    # redis-py's own reading of the URL (path, or ?db=); the pool connects only when used
    return int(ConnectionPool.from_url(redis_url).connection_kwargs.get("db", 0))


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """The names of one deployment's keys and channels."""

    prefix: str
    db: int = 0

    def _show(self, show_id: int, part: str) -> str:
        return f"{self.prefix}:{{show:{show_id}}}:{part}"

    def meta(self, show_id: int) -> str:
        """Hash: e = epoch, n = top offset."""
        return self._show(show_id, "meta")

    def stream(self, show_id: int) -> str:
        """The show's history: entry id "<n>-0", field d = event JSON."""
        return self._show(show_id, "stream")

    def presence(self, show_id: int) -> str:
        """Hash: instance id -> "<watchers>:<unix ms>"."""
        return self._show(show_id, "presence")

    def availability(self, show_id: int) -> str:
        """The core's cached seat counts, deleted by every seat change's publish."""
        return self._show(show_id, "availability")

    def announcement(self, show_id: int) -> str:
        """The show's last announcement (`LastAnnouncement` JSON), for late joiners' snapshots."""
        return self._show(show_id, "announcement")

    def channel(self, show_id: int) -> str:
        """The show's pub/sub channel: "<epoch>:<n> <event JSON>" messages."""
        return self._show(show_id, "events")

    def waiting_room(self, show_id: int, part: str) -> str:
        """The show's waiting room (app/admission.py): cfg, pre, tickets, admitted, lease,
        health."""
        return self._show(show_id, f"wr:{part}")

    def queued_booking(self, show_id: int, part: str) -> str:
        """A queued booking's status hash, or an Idempotency-Key's booking id
        (app/booking_queue.py)."""
        return self._show(show_id, f"qb:{part}")

    @property
    def waiting_rooms(self) -> str:
        """Set: the ids of shows whose waiting room is on."""
        return f"{self.prefix}:waiting_rooms"

    def booking_queue(self, part: str) -> str:
        """The queued bookings' streams (queue, dead, settled): one hash tag, so they share
        a Redis Cluster slot."""
        return f"{self.prefix}:{{bookings}}:{part}"

    def instance_channel(self, instance_id: str) -> str:
        """One process's control channel (its liveness pings)."""
        return f"{self.prefix}:instance:{instance_id}"

    def show_of_channel(self, channel: str) -> int | None:
        """The show whose channel this is in this namespace, else None (another
        namespace's channel, or not a show's)."""
        head = f"{self.prefix}:{{show:"
        if not channel.startswith(head) or not channel.endswith("}:events"):
            return None
        digits = channel[len(head) : -len("}:events")]
        if not digits.isascii() or not digits.isdigit() or len(digits) > 18:
            return None
        return int(digits)

    @property
    def epoch_tag(self) -> str:
        # the database number too: one prefix on two database numbers is two key spaces
        # that share channel names
        digest = hashlib.sha256(f"{self.prefix}\n{self.db}".encode()).hexdigest()
        return digest[:EPOCH_TAG_LEN]

    def new_epoch(self) -> str:
        return self.epoch_tag + secrets.token_hex(6)

    def owns_epoch(self, epoch: str) -> bool:
        return epoch.startswith(self.epoch_tag)


async def deployment_keys(meta: Fetcher, prefix: str, redis_url: str) -> RedisKeys:
    """This deployment's names: `prefix` (MODEX_REDIS_PREFIX) when given, else derived
    from the deployment id in the metadata database."""
    if not prefix:
        prefix = prefix_of_deployment(str(await meta.fetchval(READ_DEPLOYMENT_ID)))
    return RedisKeys(check_prefix(prefix), database_number(redis_url))
