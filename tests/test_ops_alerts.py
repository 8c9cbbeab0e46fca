"""Every alert in deploy/prometheus/alerts.yml seen to fire, then resolve, on real processes.

A real Prometheus (Debian's) scrapes two `modex serve` processes every second and evaluates
a test copy of the rules every second. The copy is made from the real file with each
minute read as a second (`for: 5m` -> `5s`, `rate(...[5m])` -> `[5s]`, `offset 10m` ->
`10s`); thresholds, labels and texts are the real ones. The servers use this module's own
databases (a 2-shard cluster) and its own Redis (PrivateRedis): the test breaks those, never
the machine's servers. Each scenario brings a failure about, waits for its alerts to go
pending and then firing, takes the failure away and waits for them to resolve.

Two rules read exporters' metrics (postgres_exporter, redis_exporter), which do not run
here: they are checked with `promtool test rules` instead (test_exporter_rules_...)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import signal
import subprocess
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import yaml
from websockets.asyncio.client import ClientConnection, connect

from tests.ops_support import INSTALL_HINT, Prometheus, until, wait_for
from tests.realtime.watch import Watcher, seat_order
from tests.support import (
    Cluster,
    PrivateRedis,
    ServerProcess,
    Services,
    admin_execute,
    auth,
    create_show_on,
)

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
RUNBOOK = ROOT / "docs" / "RUNBOOK.md"

# alert -> how the scenarios below bring it about on real processes
BROUGHT_ABOUT = {
    "InstanceDown": "an instance frozen (SIGSTOP)",
    "CircuitBreakerOpen": "shard 1's database refuses connections",
    "High5xxRate": "shard 1's database refuses connections",
    "HighBookingFailureRate": "one-step bookings of sold seats",
    "HoldConflictRateHigh": "holds of sold seats",
    "HoldLatencyP99High": "a 0.6 s trigger on shard 1's seats",
    "DBQueryLatencyP99High": "a 0.6 s trigger on shard 1's seats",
    "SeatBatchesFailing": "a trigger that fails seat_batch() on shard 1",
    "RedisListenerDown": "Redis stopped",
    "OutboxBacklogGrowing": "Redis stopped under writes",
    "OutboxBacklogHigh": "Redis stopped under writes",
    "FanoutLagHigh": "Redis paused (CLIENT PAUSE WRITE) 1.5 s at a time",
    "WebSocketConnectionsDropped": "101 sockets closed at once",
}
# alert -> why it is only checked by promtool
PROMTOOL_ONLY = {
    "DBConnectionPoolNearlyExhausted": "reads postgres_exporter's pg_* metrics",
    "RedisEvictingKeys": "reads redis_exporter's redis_evicted_keys_total",
}

# ---- the test copy of the rules -----------------------------------------------------

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
# a range, an offset, or a whole `for:` value
DURATION = re.compile(r"(?P<lead>\[|offset\s+|^)(?P<n>\d+)(?P<unit>ms|s|m|h)(?=\]|\s|\)|$)")


def minutes_as_seconds(text: str) -> str:
    """Every duration in `text` divided by 60 (a minute becomes a second)."""

    def shorten(match: re.Match[str]) -> str:
        millis = int(match["n"]) * UNITS[match["unit"]] * 1000 / 60
        assert millis == int(millis) and millis >= 1000, f"{match[0]!r} shortens badly"
        return f"{match['lead']}{int(millis) // 1000}s"

    return DURATION.sub(shorten, text)


def fast_rules() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(ALERTS.read_text())
    for group in spec["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["expr"] = minutes_as_seconds(rule["expr"])
            if "for" in rule:
                rule["for"] = minutes_as_seconds(rule["for"])
    return spec


def alert_names() -> set[str]:
    return {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}


def promtool(*args: str, cwd: Path) -> None:
    found = subprocess.run(["which", "promtool"], capture_output=True, text=True, check=False)
    if found.returncode != 0:
        pytest.fail(f"`promtool` is not installed; {INSTALL_HINT}", pytrace=False)
    proc = subprocess.run(
        ["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"


# ---- fast: coverage, the copy, the exporter rules, the runbook --------------------


def test_every_alert_is_brought_about_or_says_why_not() -> None:
    assert alert_names() == set(BROUGHT_ABOUT) | set(PROMTOOL_ONLY)
    assert not set(BROUGHT_ABOUT) & set(PROMTOOL_ONLY)


def test_fast_rules_are_the_real_rules_with_minutes_as_seconds(tmp_path: Path) -> None:
    real = yaml.safe_load(ALERTS.read_text())
    fast = fast_rules()
    for real_group, fast_group in zip(real["groups"], fast["groups"], strict=True):
        for before, after in zip(real_group["rules"], fast_group["rules"], strict=True):
            assert {k: v for k, v in before.items() if k not in ("expr", "for")} == {
                k: v for k, v in after.items() if k not in ("expr", "for")
            }
            # the same expression but for its durations
            assert re.sub(r"\d+[smh]\b", "D", before["expr"]) == re.sub(
                r"\d+[smh]\b", "D", after["expr"]
            )
    rules = {r["alert"]: r for g in fast["groups"] for r in g["rules"]}
    assert rules["HighBookingFailureRate"]["for"] == "5s"
    assert "[5s]" in rules["HighBookingFailureRate"]["expr"]
    assert "offset 10s" in rules["WebSocketConnectionsDropped"]["expr"]
    copy = tmp_path / "alerts.yml"
    copy.write_text(yaml.safe_dump(fast, sort_keys=False))
    promtool("check", "rules", str(copy), cwd=tmp_path)


def test_exporter_rules_fire_and_resolve_under_promtool(tmp_path: Path) -> None:
    """postgres_exporter and redis_exporter do not run in the tests, so these two rules are
    checked on series shaped like the exporters': firing, then quiet once the cause ends."""
    series = {
        # 200 max_connections; from minute 1 to 10, 190 in use; then 50
        'pg_settings_max_connections{instance="pg-meta:9187", server="pg-meta:5432"}': "200x30",
        'pg_stat_activity_count{instance="pg-meta:9187", datname="modex", state="active"}': (
            "10 150x9 20x20"
        ),
        'pg_stat_activity_count{instance="pg-meta:9187", datname="modex", state="idle"}': (
            "5 40x9 30x20"
        ),
        # 400 keys evicted a minute for 10 minutes, then none
        'redis_evicted_keys_total{instance="redis:9121"}': "0+400x10 4000x20",
    }
    firing = {
        "DBConnectionPoolNearlyExhausted": {
            "exp_labels": {"severity": "warning", "instance": "pg-meta:9187"},
            "exp_annotations": {
                "summary": "PostgreSQL pg-meta:9187 is using over 90% of max_connections",
                "description": "95% of connections in use (postgres_exporter).",
                "runbook_url": "docs/RUNBOOK.md#dbconnectionpoolnearlyexhausted",
            },
        },
        "RedisEvictingKeys": {
            "exp_labels": {"severity": "warning", "instance": "redis:9121"},
            "exp_annotations": {
                "summary": "Redis is evicting keys (cache thrashing)",
                "description": "2000 keys evicted in 5 minutes on redis:9121; seat history and"
                " offsets may be lost.",
                "runbook_url": "docs/RUNBOOK.md#redisevictingkeys",
            },
        },
    }
    checks: list[dict[str, Any]] = []
    for alert, expected in firing.items():
        checks.append({"eval_time": "2m", "alertname": alert, "exp_alerts": []})  # pending
        checks.append({"eval_time": "9m", "alertname": alert, "exp_alerts": [expected]})
        checks.append({"eval_time": "25m", "alertname": alert, "exp_alerts": []})
    unit = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "alert_rule_test": checks,
            }
        ],
    }
    (tmp_path / "exporters_test.yml").write_text(yaml.safe_dump(unit, sort_keys=False))
    promtool("test", "rules", "exporters_test.yml", cwd=tmp_path)


def test_runbook_has_a_section_for_every_alert() -> None:
    text = RUNBOOK.read_text()
    sections = dict(re.findall(r"^### (\w+)\n(.*?)(?=^##|\Z)", text, re.S | re.M))
    assert set(sections) == alert_names()
    for name, body in sections.items():
        steps = re.findall(r"^\d\. ", body, re.M)
        assert len(steps) >= 3, f"{name}: the first three things to do"
    rules = {
        r["alert"]: r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]
    }
    for name, rule in rules.items():
        assert rule["annotations"].get("runbook_url", "").endswith(f"RUNBOOK.md#{name.lower()}")


# ---- for real: the module's own cluster, Redis, servers and Prometheus -----------------


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    found = PrivateRedis(tmp_path_factory.mktemp("alerts-redis")).start()
    yield found
    found.stop()


@pytest.fixture(scope="module")
async def alert_cluster(services: Services) -> AsyncIterator[Cluster]:
    found = Cluster(services, shard_count=2)
    await found.create()
    yield found
    await found.drop()


@pytest.fixture(scope="module")
def alert_servers(
    alert_cluster: Cluster, private_redis: PrivateRedis, log_dir: Path
) -> Iterator[list[ServerProcess]]:
    started = [
        ServerProcess(alert_cluster, log_dir, REDIS_URL=private_redis.url).start() for _ in range(2)
    ]
    yield started
    for server in started:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.send_signal(signal.SIGCONT)
        server.stop()


@pytest.fixture(scope="module")
def prometheus(
    alert_servers: list[ServerProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    folder = tmp_path_factory.mktemp("alerts-prometheus")
    rules = folder / "alerts.yml"
    rules.write_text(yaml.safe_dump(fast_rules(), sort_keys=False))
    found = Prometheus(
        folder, [f"127.0.0.1:{s.port}" for s in alert_servers], rule_file=rules
    ).start()
    yield found
    found.stop()


@pytest.fixture(scope="module")
async def shows(alert_servers: list[ServerProcess], alert_cluster: Cluster) -> dict[int, int]:
    """A 30 x 40 show on each shard: {shard: show id}."""
    placed: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=alert_servers[0].url, timeout=30) as client:
        for shard in (0, 1):
            show = await create_show_on(client, alert_cluster, shard, rows=30, seats_per_row=40)
            placed[shard] = show["id"]
    return placed


class AlertLog:
    """What the rules' states went through, polled from Prometheus's API."""

    def __init__(self, prometheus: Prometheus) -> None:
        self.prometheus = prometheus
        self.states: dict[str, list[str]] = defaultdict(list)

    def poll(self) -> dict[str, dict[str, Any]]:
        rules = self.prometheus.rules()
        for name, rule in rules.items():
            seen = self.states[name]
            if not seen or seen[-1] != rule["state"]:
                seen.append(rule["state"])
        return rules

    async def quiet(self, *names: str) -> None:
        """Waits for `names` to be inactive, then starts their history afresh."""
        await until(
            f"{names} to be inactive",
            lambda: all(self.poll()[n]["state"] == "inactive" for n in names),
            within=30,
        )
        for name in names:
            self.states[name] = ["inactive"]

    async def fires(self, name: str, within: float, **labels: str) -> dict[str, str]:
        def firing() -> dict[str, str] | None:
            for alert in self.poll()[name]["alerts"]:
                if alert["state"] == "firing" and labels.items() <= alert["labels"].items():
                    return alert["labels"]  # type: ignore[no-any-return]
            return None

        found = await until(f"{name} {labels or ''} to fire", firing, within, every=0.2)
        assert found and self.states[name][:3] == ["inactive", "pending", "firing"], self.states
        return found

    async def resolves(self, name: str, within: float) -> None:
        await until(
            f"{name} to resolve",
            lambda: self.poll()[name]["state"] == "inactive",
            within,
            every=0.2,
        )
        assert self.states[name][-3:] == ["pending", "firing", "inactive"] or self.states[name][
            -2:
        ] == ["firing", "inactive"], self.states[name]


@pytest.fixture(scope="module")
def alerts(prometheus: Prometheus) -> AlertLog:
    wait_for("both servers scraped", prometheus.targets_up, timeout=20)
    return AlertLog(prometheus)


@contextlib.asynccontextmanager
async def load(*workers: Callable[[], Awaitable[Any]], pause: float = 0.02) -> AsyncIterator[None]:
    """Runs each worker over and over until the block ends."""
    stop = asyncio.Event()

    async def loop(worker: Callable[[], Awaitable[Any]]) -> None:
        while not stop.is_set():
            await worker()
            await asyncio.sleep(pause)

    tasks = [asyncio.create_task(loop(w)) for w in workers]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def hold_and_release(
    client: httpx.AsyncClient, show_id: int, seats: list[str]
) -> Callable[[], Awaitable[None]]:
    """A worker: hold the next seat, then release it (any answer, 503 included, is fine)."""
    user = f"load-{secrets.token_hex(3)}"
    turn = [0]

    async def once() -> None:
        seat = seats[turn[0] % len(seats)]
        turn[0] += 1
        held = await client.post(
            f"/shows/{show_id}/holds", json={"seats": [seat]}, headers=auth(user)
        )
        if held.status_code == 201:
            await client.delete(f"/holds/{held.json()['hold_id']}", headers=auth(user))

    return once


@pytest.fixture(scope="module")
def pair(alert_servers: list[ServerProcess]) -> list[ServerProcess]:
    """The servers conftest's `clients` talks to."""
    return alert_servers


async def shard_execute(cluster: Cluster, shard: int, *statements: str) -> None:
    conn = await cluster.connect_shard(shard)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


# ---- the scenarios, in file order ----------------------------------------------------


@pytest.mark.slow
async def test_a_frozen_instance_fires_instance_down(
    alerts: AlertLog, prometheus: Prometheus, alert_servers: list[ServerProcess]
) -> None:
    await alerts.quiet("InstanceDown")
    frozen = alert_servers[1]
    assert frozen.proc is not None
    frozen.proc.send_signal(signal.SIGSTOP)  # alive, but answers nothing: a hung instance
    try:
        labels = await alerts.fires("InstanceDown", within=15)
        assert labels["instance"] == f"127.0.0.1:{frozen.port}"
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
    await alerts.resolves("InstanceDown", within=15)


@pytest.mark.slow
async def test_a_shard_refusing_connections_opens_its_breaker_and_floods_5xx(
    alerts: AlertLog,
    alert_cluster: Cluster,
    services: Services,
    shows: dict[int, int],
    clients: list[httpx.AsyncClient],
) -> None:
    await alerts.quiet("CircuitBreakerOpen", "High5xxRate")
    show_id = shows[1]
    seats = (await seat_order(clients[0], show_id))[:40]
    database = alert_cluster.databases[1]
    workers = [hold_and_release(c, show_id, seats[i::4]) for i, c in enumerate(clients * 2)]
    async with load(*workers, pause=0.05):
        await admin_execute(
            services,
            f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false',
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{database}' AND pid <> pg_backend_pid()",
        )
        try:
            labels = await alerts.fires("CircuitBreakerOpen", within=20)
            assert labels["shard"] == "1"
            await alerts.fires("High5xxRate", within=20)
        finally:
            await admin_execute(services, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        # the next try after the breaker's cool-down succeeds and closes it
        await alerts.resolves("CircuitBreakerOpen", within=20)
        await alerts.resolves("High5xxRate", within=20)


@pytest.mark.slow
async def test_bookings_and_holds_of_sold_seats_fire_failure_and_conflict_alerts(
    alerts: AlertLog, shows: dict[int, int], clients: list[httpx.AsyncClient]
) -> None:
    await alerts.quiet("HighBookingFailureRate", "HoldConflictRateHigh")
    show_id = shows[0]
    sold = (await seat_order(clients[0], show_id))[-1]
    booked = await clients[0].post(
        f"/shows/{show_id}/book", json={"seatNumbers": [sold]}, headers=auth("first")
    )
    assert booked.status_code == 201, booked.text

    async def book_sold() -> None:
        refused = await clients[1].post(
            f"/shows/{show_id}/book", json={"seatNumbers": [sold]}, headers=auth("late")
        )
        assert refused.status_code == 409, refused.text

    async def hold_sold() -> None:
        refused = await clients[0].post(
            f"/shows/{show_id}/holds", json={"seats": [sold]}, headers=auth("late")
        )
        assert refused.status_code == 409, refused.text

    async with load(book_sold, hold_sold, hold_sold, pause=0.1):
        await alerts.fires("HighBookingFailureRate", within=20)
        await alerts.fires("HoldConflictRateHigh", within=25)
    await alerts.resolves("HighBookingFailureRate", within=20)
    await alerts.resolves("HoldConflictRateHigh", within=20)


SLOW_SEATS = """
CREATE FUNCTION alert_test_slow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(0.6); RETURN NULL; END $$;
CREATE TRIGGER alert_test_slow BEFORE UPDATE ON seats
    FOR EACH STATEMENT EXECUTE FUNCTION alert_test_slow();
"""
FAIL_BATCHES = """
CREATE FUNCTION alert_test_no_batches() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_query() LIKE '%seat_batch(%' THEN
        RAISE EXCEPTION 'seat_batch() broken by tests/test_ops_alerts.py';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER alert_test_no_batches BEFORE UPDATE ON seats
    FOR EACH STATEMENT EXECUTE FUNCTION alert_test_no_batches();
"""


@pytest.mark.slow
async def test_a_slow_shard_fires_the_latency_alerts(
    alerts: AlertLog,
    alert_cluster: Cluster,
    shows: dict[int, int],
    clients: list[httpx.AsyncClient],
) -> None:
    await alerts.quiet("HoldLatencyP99High", "DBQueryLatencyP99High")
    show_id = shows[1]
    seats = (await seat_order(clients[0], show_id))[40:80]
    workers = [hold_and_release(c, show_id, seats[i::4]) for i, c in enumerate(clients * 2)]
    async with load(*workers):
        await shard_execute(alert_cluster, 1, SLOW_SEATS)
        try:
            await alerts.fires("HoldLatencyP99High", within=25)
            labels = await alerts.fires("DBQueryLatencyP99High", within=25)
            assert labels["query_type"]
        finally:
            await shard_execute(
                alert_cluster,
                1,
                "DROP TRIGGER alert_test_slow ON seats",
                "DROP FUNCTION alert_test_slow()",
            )
        await alerts.resolves("HoldLatencyP99High", within=20)
        await alerts.resolves("DBQueryLatencyP99High", within=20)


@pytest.mark.slow
async def test_failing_seat_batches_fire_seat_batches_failing(
    alerts: AlertLog,
    alert_cluster: Cluster,
    shows: dict[int, int],
    clients: list[httpx.AsyncClient],
) -> None:
    await alerts.quiet("SeatBatchesFailing")
    show_id = shows[1]
    seats = (await seat_order(clients[0], show_id))[80:120]
    workers = [hold_and_release(c, show_id, seats[i::2]) for i, c in enumerate(clients)]
    async with load(*workers, pause=0.05):
        await shard_execute(alert_cluster, 1, FAIL_BATCHES)
        try:
            await alerts.fires("SeatBatchesFailing", within=20)
        finally:
            await shard_execute(
                alert_cluster,
                1,
                "DROP TRIGGER alert_test_no_batches ON seats",
                "DROP FUNCTION alert_test_no_batches()",
            )
        await alerts.resolves("SeatBatchesFailing", within=20)


@pytest.mark.slow
async def test_redis_down_under_writes_fires_listener_and_outbox_alerts(
    alerts: AlertLog,
    private_redis: PrivateRedis,
    shows: dict[int, int],
    clients: list[httpx.AsyncClient],
) -> None:
    names = ("RedisListenerDown", "OutboxBacklogGrowing", "OutboxBacklogHigh")
    await alerts.quiet(*names)
    show_id = shows[0]
    seats = (await seat_order(clients[0], show_id))[:400]
    # each hold and each release is one outbox row that cannot be published
    workers = [hold_and_release(c, show_id, seats[i::8]) for i, c in enumerate(clients * 4)]
    private_redis.stop()
    try:
        labels = await alerts.fires("RedisListenerDown", within=20)
        assert labels["instance"]
        async with load(*workers, pause=0.01):
            await alerts.fires("OutboxBacklogGrowing", within=40, shard="0")
            await alerts.fires("OutboxBacklogHigh", within=40, shard="0")
    finally:
        private_redis.start()
    for name in names:
        await alerts.resolves(name, within=30)


@pytest.mark.slow
async def test_a_paused_redis_slows_the_fan_out_and_fires_fanout_lag_high(
    alerts: AlertLog,
    private_redis: PrivateRedis,
    shows: dict[int, int],
    clients: list[httpx.AsyncClient],
    alert_servers: list[ServerProcess],
) -> None:
    await alerts.quiet("FanoutLagHigh")
    show_id = shows[0]
    order = await seat_order(clients[0], show_id)
    redis = aioredis.Redis.from_url(private_redis.url)

    async def pause_publishing() -> None:
        # publishes (EVALSHA, PUBLISH) wait 1.5 s, then a moment to flush
        await redis.client_pause(1500, all=False)
        await asyncio.sleep(1.6)  # the fault lasts this long: it is what the alert sees

    try:
        async with Watcher(alert_servers[1].ws_url) as watcher:
            await watcher.subscribe(show_id, order)
            workers = [hold_and_release(clients[0], show_id, order[400:440])]
            async with load(*workers, pause=0.05), load(pause_publishing, pause=0):
                await alerts.fires("FanoutLagHigh", within=25)
            await alerts.resolves("FanoutLagHigh", within=20)
    finally:
        await redis.client_unpause()
        await redis.aclose()


@pytest.mark.slow
async def test_most_websockets_dropping_at_once_fires_websocket_connections_dropped(
    alerts: AlertLog, prometheus: Prometheus, alert_servers: list[ServerProcess]
) -> None:
    await alerts.quiet("WebSocketConnectionsDropped")
    sockets: list[ClientConnection] = []
    try:
        for _ in range(101):
            sockets.append(await connect(alert_servers[0].ws_url))
        # the rule compares with 10 "minutes" (seconds) ago: hold them that long
        await until(
            "101 connections seen for 10 s",
            lambda: prometheus.query("min_over_time(sum(ws_connections)[11s:1s]) > 100"),
            within=30,
        )
    finally:
        await asyncio.gather(*(s.close() for s in sockets))
    await alerts.fires("WebSocketConnectionsDropped", within=15)
    await alerts.resolves("WebSocketConnectionsDropped", within=20)
