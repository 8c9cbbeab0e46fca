"""The Grafana dashboard (deploy/grafana): provisioned by the compose file's monitoring
profile, and every panel's query answered with data by a real Prometheus scraping real
`modex serve` processes under a short load (the seat-sales table: by the shards themselves).

Grafana itself does not run here: the test substitutes its variables ($instance: every
instance; $__rate_interval: a window that covers the load) as Grafana would."""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from tests.ops_support import Prometheus, until
from tests.realtime.watch import Watcher, seat_order
from tests.support import Cluster, ServerProcess, auth, create_show

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "modex-seatmap.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "modex.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "modex.yml"
COMPOSE = ROOT / "docker-compose.yml"

# Grafana's variables as they stand for the test: every instance, and a rate window that
# covers the whole load (Prometheus scrapes every second here)
VARIABLES = {"$__rate_interval": "30s", "$instance": ".*"}
LOAD_SECONDS = 6.0


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def prometheus_targets() -> list[tuple[str, dict[str, Any]]]:
    """(panel title, target) of every PromQL query on the dashboard."""
    return [(p["title"], t) for p in panels() for t in p["targets"] if "expr" in t]


def sql_targets() -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in panels() for t in p["targets"] if "rawSql" in t]


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr.replace("${1}", ""), f"unknown Grafana variable in {expr!r}"
    return expr


def datasource_uids() -> dict[str, str]:
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    return {d["uid"]: d["type"] for d in provisioned}


# --- offline: the files agree with each other and with compose ---------------------------


def test_dashboard_panels_are_laid_out_and_name_provisioned_datasources() -> None:
    board = dashboard()
    uids = datasource_uids()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    special = {"-- Mixed --", "-- Grafana --"}
    for panel in panels():
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["description"], panel["title"]
        assert panel["targets"], panel["title"]
        for source in [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]:
            assert source["uid"] in uids or source["uid"] in special, (panel["title"], source)
            if source["uid"] in uids:
                assert uids[source["uid"]] == source["type"], (panel["title"], source)
    variable = board["templating"]["list"][0]
    assert variable["name"] == "instance" and variable["datasource"]["uid"] in uids


def test_compose_monitoring_profile_provisions_grafana() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    grafana = services["grafana"]
    assert grafana["profiles"] == ["monitoring"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    assert (ROOT / mounts["/etc/grafana/provisioning"]).resolve() == GRAFANA / "provisioning"
    provider = yaml.safe_load(PROVIDERS.read_text())["providers"][0]
    assert (ROOT / mounts[provider["options"]["path"]]).resolve() == DASHBOARD.parent
    # the datasources point at the compose services, by name and port
    for source in yaml.safe_load(DATASOURCES.read_text())["datasources"]:
        host = re.sub(r"^\w+://", "", source["url"]).split(":")[0]
        assert host in services, f"{source['name']} points at {host}, not a compose service"
    assert "POSTGRES_PASSWORD" in grafana["environment"]


# --- for real: Prometheus scraping two servers under load ------------------------------


async def booking_load(servers: list[ServerProcess], seconds: float) -> int:
    """Holds, confirms, releases, one-step bookings (some refused), seat maps and a 404,
    spread over both servers, while a watcher on the second server follows the show."""
    clients = [httpx.AsyncClient(base_url=s.url, timeout=30) for s in servers]
    try:
        show = await create_show(clients[0], rows=20, seats_per_row=20)
        show_id = show["id"]
        labels = await seat_order(clients[0], show_id)
        async with Watcher(servers[1].ws_url) as watcher:
            await watcher.subscribe(show_id, labels)
            deadline = time.monotonic() + seconds
            n = 0
            while time.monotonic() < deadline and n + 3 < len(labels):
                client = clients[n % 2]
                user = f"load-{secrets.token_hex(3)}"
                held = await client.post(
                    f"/shows/{show_id}/holds", json={"seats": [labels[n]]}, headers=auth(user)
                )
                assert held.status_code == 201, held.text
                hold_id = held.json()["hold_id"]
                if n % 3 == 0:
                    done = await client.delete(f"/holds/{hold_id}", headers=auth(user))
                else:
                    done = await client.post(f"/holds/{hold_id}/confirm", headers=auth(user))
                assert done.status_code < 300, done.text
                booked = await client.post(  # the seed's one-step booking, then refused
                    f"/shows/{show_id}/book",
                    json={"seatNumbers": [labels[n + 1]]},
                    headers=auth(user),
                )
                refused = await client.post(
                    f"/shows/{show_id}/book",
                    json={"seatNumbers": [labels[n + 1]]},
                    headers=auth("y"),
                )
                taken = await client.post(  # a seat someone bought: a conflict
                    f"/shows/{show_id}/holds", json={"seats": [labels[n + 1]]}, headers=auth("x")
                )
                assert booked.status_code == 201, booked.text
                assert taken.status_code == refused.status_code == 409
                await client.get(f"/shows/{show_id}/seats")
                await client.get("/shows/999999999999")
                n += 2
        return int(show_id)
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture
def prometheus(servers: list[ServerProcess], tmp_path: Path) -> Iterator[Prometheus]:
    found = Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{s.port}" for s in servers])
    found.start()
    yield found
    found.stop()


@pytest.mark.slow
async def test_every_dashboard_query_returns_data_from_real_servers(
    prometheus: Prometheus, servers: list[ServerProcess], cluster: Cluster
) -> None:
    await until("both servers scraped", prometheus.targets_up, within=15)
    show_id = await booking_load(servers, LOAD_SECONDS)
    # the load's last changes and requests are in a scrape
    scraped = time.time()
    await until(
        "a scrape after the load",
        lambda: all(
            float(s["value"][0]) > scraped for s in prometheus.query('timestamp(up{job="modex"})')
        ),
        within=10,
    )

    empty = []
    for title, target in prometheus_targets():
        expr = substitute(target["expr"])
        series = prometheus.query(expr)
        values = [float(s["value"][1]) for s in series]
        if not any(math.isfinite(v) for v in values):
            empty.append(f"{title} [{target['refId']}]: {expr} -> {series}")
            continue
        # each label the legend names is on the series (a fallback `or vector(0)` has none)
        if "or vector(0)" not in expr:
            for name in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")):
                assert all(name in s["metric"] for s in series), (title, name, series)
    assert not empty, "panels without data:\n" + "\n".join(empty)

    # the instance variable lists every server
    variable = dashboard()["templating"]["list"][0]["query"]["query"]
    selector = re.fullmatch(r"label_values\((.+), instance\)", variable)
    assert selector, variable
    instances = {s["metric"]["instance"] for s in prometheus.query(selector.group(1))}
    assert instances == {f"127.0.0.1:{s.port}" for s in servers}

    # the seat-sales table, on each shard database as Grafana's PostgreSQL datasource runs it
    sold: dict[int, int] = {}
    for title, target in sql_targets():
        shard = int(target["datasource"]["uid"].rsplit("-", 1)[1])
        conn = await asyncpg.connect(cluster.shard_urls[shard])
        try:
            rows = await conn.fetch(target["rawSql"])
        finally:
            await conn.close()
        assert all({"show", "sold", "held", "seats"} <= set(r.keys()) for r in rows), title
        sold.update({r["show"]: r["sold"] for r in rows})
    assert sold.get(show_id, 0) > 0, f"show {show_id} sold nothing in {sold}"
