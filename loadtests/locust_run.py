"""One Locust run of the seat-map suite: its options, its shows, what its buyers confirmed,
and the invariants judged when it ends (loadtests/README.md, "Locust suite").

Every process (local, master or worker) keeps a `Run`. The users of a process record into
it; at the end of a test each worker checks its own live watchers against the server's map
and sends what it saw to the master (a custom message, before it reports itself stopped, so
the master has every report when its own `test_stop` fires); the master (or the only
process) then judges the invariants and, when one is broken, sets the exit code to 3:

1. no seat confirmed twice (two bookings naming the same seat of a show);
2. every seat confirmed in the run is BOOKED in the map, and no seat became BOOKED that the
   run did not confirm (so the run's shows must be its own: by default it creates one);
3. every watcher still watching at the end has the server's map (status and version of
   every seat), within --converge-seconds;
4. no 5xx answer.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import common
import gevent
import orjson
from locust import events, runners
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust_live import LiveMap, Seats, seats_of

log = logging.getLogger("modex.locust")

# A worker that sent no heartbeat for HEARTBEAT_LIVENESS seconds (Locust: 3) is dropped, and
# with all of them the test stops: on a machine whose cores the servers under test share,
# a busy worker misses that by a second or two. The master reads it when it counts.
runners.HEARTBEAT_LIVENESS = int(os.environ.get("LOCUST_HEARTBEAT_LIVENESS", "10"))

INVARIANT_BROKEN = 3  # the process exit code when an invariant does not hold
REPORT_MESSAGE = "modex_report"
CHECK_MESSAGE = "modex_check"
SEATS_PER_ROW = 50


# ---- options ----


@events.init_command_line_parser.add_listener
def _options(parser: LocustArgumentParser) -> None:
    # on the parser, not a group: only its add_argument knows the web UI's keywords
    group = parser
    group.add_argument(
        "--hosts",
        env_var="LOCUST_HOSTS",
        default="",
        help="Comma-separated server base URLs; users are spread over them (default: --host)",
    )
    group.add_argument(
        "--ws-hosts",
        env_var="LOCUST_WS_HOSTS",
        default="",
        help="Comma-separated WebSocket URLs (default: each of --hosts as ws://HOST/ws)",
    )
    group.add_argument(
        "--show-ids",
        env_var="LOCUST_SHOW_IDS",
        default="",
        help="Comma-separated shows to use (default: create a fresh one for the run)",
    )
    group.add_argument(
        "--seats", type=int, env_var="LOCUST_SEATS", default=2000, help="Seats of a created show"
    )
    group.add_argument(
        "--hold-seconds",
        type=int,
        env_var="LOCUST_HOLD_SECONDS",
        default=30,
        help="Hold length of a created show",
    )
    group.add_argument(
        "--admin-token",
        env_var="LOCUST_ADMIN_TOKEN",
        default="",
        is_secret=True,
        help="Admin JWT (`modex token NAME --role admin`) to create the show and for Admin "
        "users; default: minted from MODEX_JWT_SECRET when that is set",
    )
    group.add_argument(
        "--kiosk-token",
        env_var="LOCUST_KIOSK_TOKEN",
        default="",
        is_secret=True,
        help="JWT kiosks put in /ws?token= (optional)",
    )
    group.add_argument(
        "--watch-seconds",
        env_var="LOCUST_WATCH_SECONDS",
        default="30-120",
        help="How long a Watcher stays on a map, MIN-MAX seconds",
    )
    group.add_argument(
        "--race-pct",
        type=int,
        env_var="LOCUST_RACE_PCT",
        default=25,
        help="Percent of holds that go for the first free seats (buyers racing)",
    )
    group.add_argument("--confirm-pct", type=int, env_var="LOCUST_CONFIRM_PCT", default=40)
    group.add_argument("--release-pct", type=int, env_var="LOCUST_RELEASE_PCT", default=40)
    group.add_argument("--extend-pct", type=int, env_var="LOCUST_EXTEND_PCT", default=20)
    group.add_argument(
        "--converge-seconds",
        type=float,
        env_var="LOCUST_CONVERGE_SECONDS",
        default=15.0,
        help="At the end, how long watchers get to match the server's map",
    )
    group.add_argument(
        "--summary-json",
        env_var="LOCUST_SUMMARY_JSON",
        default="",
        include_in_web_ui=False,
        help="Write the invariants, outcomes and Locust's CPU to this file",
    )


def option(env: Environment, name: str) -> Any:
    return getattr(env.parsed_options, name)


def listed(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def http_hosts(env: Environment) -> list[str]:
    hosts = listed(option(env, "hosts")) or listed(env.host or "")
    if not hosts:
        raise RuntimeError("no server: give --host or --hosts")
    return [h.rstrip("/") for h in hosts]


def ws_hosts(env: Environment) -> list[str]:
    given = listed(option(env, "ws_hosts"))
    if given:
        return given
    return [("ws" + h[4:] if h.startswith("http") else h) + "/ws" for h in http_hosts(env)]


def show_ids(env: Environment) -> list[int]:
    return [int(x) for x in listed(option(env, "show_ids"))]


def span(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    return float(low), float(high or low)


def admin_token(env: Environment) -> str:
    given: str = option(env, "admin_token")
    if given:
        return given
    secret = os.environ.get("MODEX_JWT_SECRET", "")
    if not secret:
        return ""
    return common.mint(secret, "locust-admin", "admin", ttl=12 * 3600)


# ---- plain HTTP for setting up and checking (not counted in Locust's statistics) ----


def read_map(host: str, show_id: int) -> Seats | None:
    """The show's seats read now (not a map a server keeps), or None if unreadable."""
    try:
        status, body = common.http_json(
            "GET", f"{host}/shows/{show_id}/seats", headers={"Cache-Control": "no-cache"}
        )
    except OSError:
        return None
    if status != 200 or body.get("stale"):
        return None
    return seats_of(body["seats"])


# ---- the run ----


@dataclass
class Run:
    """What one process knows and records during one test."""

    environment: Environment
    live_maps: list[LiveMap] = field(default_factory=list)
    # (show, label) -> the booking ids confirmed for it (more than one: sold twice)
    confirmed: dict[tuple[int, str], set[str]] = field(default_factory=dict)
    server_errors: Counter[str] = field(default_factory=Counter)
    in_flight: dict[str, tuple[int, list[str]]] = field(default_factory=dict)  # confirms
    booked_before: dict[int, set[str]] = field(default_factory=dict)
    created_shows: list[int] = field(default_factory=list)
    tester_shows: str | None = None  # --show-ids as given, before a test sets its own
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)  # worker id -> report
    workers: set[str] = field(default_factory=set)  # the master's workers at the start
    last_report: dict[str, Any] | None = None  # a worker's, sent again if asked
    started: float = 0.0
    cpu_started: float = 0.0
    user_number: itertools.count[int] = field(default_factory=itertools.count)

    def reset(self) -> None:
        self.live_maps.clear()
        self.confirmed.clear()
        self.server_errors.clear()
        self.in_flight.clear()
        self.reports.clear()
        self.last_report = None
        self.started = time.time()
        self.cpu_started = cpu_seconds()

    def record_booking(self, show_id: int, seats: list[str], booking_id: str) -> None:
        for label in seats:
            self.confirmed.setdefault((show_id, label), set()).add(booking_id)

    def report(self, name: str) -> dict[str, Any]:
        """This process's part: its watchers checked, its confirms, its 5xx, its CPU."""
        return {
            "process": name,
            "cpu_s": cpu_seconds() - self.cpu_started,
            "wall_s": time.time() - self.started,
            "confirmed": [
                [show, label, sorted(ids)] for (show, label), ids in self.confirmed.items()
            ],
            "server_errors": dict(self.server_errors),
            "in_flight": [[show, s] for show, seats in self.in_flight.values() for s in seats],
            "watchers": check_watchers(self),
        }


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


_runs: dict[int, Run] = {}


def run_of(env: Environment) -> Run:
    run = _runs.get(id(env))
    if run is None:
        run = _runs[id(env)] = Run(env)
    return run


def check_watchers(run: Run) -> dict[str, Any]:
    """Waits (up to --converge-seconds) until every open live map equals a fresh read of its
    show's map, then closes them all. Holds lapsing after the run keep the maps moving, so
    each watcher only has to match one read made after its last frame was applied."""
    env = run.environment
    host = http_hosts(env)[0]
    maps = [m for m in run.live_maps if not m.closed]
    pending = list(maps)
    truths: dict[int, Seats] = {}
    deadline = time.monotonic() + float(option(env, "converge_seconds"))
    while pending:
        for show_id in sorted({m.show_id for m in pending}):
            truth = read_map(host, show_id)
            if truth is None:
                continue
            truths[show_id] = truth
            pending = [m for m in pending if m.show_id != show_id or m.seats != truth]
        if not pending or time.monotonic() > deadline:
            break
        gevent.sleep(0.2)
    examples = [
        {
            "role": m.role,
            "show_id": m.show_id,
            "connected": m.connected,
            "differences": m.differences(truths.get(m.show_id, {})),
        }
        for m in pending[:3]
    ]
    summary = {
        "checked": len(maps),
        "wrong": len(pending),
        "examples": examples,
        "frames": sum(m.frames for m in run.live_maps),
        "resyncs": sum(m.resyncs for m in run.live_maps),
        "reconnects": sum(m.reconnects for m in run.live_maps),
    }
    for m in run.live_maps:
        m.close()
    run.live_maps.clear()
    return summary


# ---- setting up: the shows ----


def create_show(env: Environment, host: str, token: str, scheduled: bool) -> int:
    seats = max(1, int(option(env, "seats")))
    per_row = min(SEATS_PER_ROW, seats)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    body = {
        "title": f"Locust on-sale {stamp}",
        "venue": "Locust arena",
        "starts_at": (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rows": -(-seats // per_row),
        "seats_per_row": per_row,
        "hold_seconds": int(option(env, "hold_seconds")),
        "status": "SCHEDULED" if scheduled else "ON_SALE",
    }
    status, show = common.http_json("POST", f"{host}/admin/shows", body, token)
    if status != 201:
        raise RuntimeError(f"creating the run's show failed: {status} {show}")
    return int(show["id"])


def open_sale(env: Environment) -> None:
    """The on-sale moment: the run's SCHEDULED shows go ON_SALE (called by the shape)."""
    run = run_of(env)
    host = http_hosts(env)[0]
    for show_id in run.created_shows:
        status, body = common.http_json(
            "PATCH", f"{host}/admin/shows/{show_id}", {"status": "ON_SALE"}, admin_token(env)
        )
        if status != 200:
            log.error("opening the sale of show %s failed: %s %s", show_id, status, body)


@events.test_start.add_listener
def _test_start(environment: Environment, **_: Any) -> None:
    run = run_of(environment)
    run.reset()
    if isinstance(environment.runner, MasterRunner):
        run.workers = {worker.id for worker in environment.runner.clients.all}
    if isinstance(environment.runner, WorkerRunner):
        return  # the master set the shows up; they arrive with the spawn message's options
    host = http_hosts(environment)[0]
    if run.tester_shows is None:
        run.tester_shows = option(environment, "show_ids")
    if not run.tester_shows:  # a fresh show for every test
        token = admin_token(environment)
        if not token:
            raise RuntimeError(
                "no --show-ids: give --admin-token (or MODEX_JWT_SECRET) to create one"
            )
        scheduled = bool(getattr(environment.shape_class, "opens_sale", False))
        run.created_shows = [create_show(environment, host, token, scheduled)]
        # sent to the workers with the spawn message's custom options
        vars(environment.parsed_options)["show_ids"] = ",".join(map(str, run.created_shows))
        log.info("created show %s for the run", run.created_shows)
    for show_id in show_ids(environment):
        before = read_map(host, show_id)
        if before is None:
            raise RuntimeError(f"cannot read the map of show {show_id} from {host}")
        run.booked_before[show_id] = {k for k, (s, _) in before.items() if s == "BOOKED"}


# ---- recording ----


def _count_server_errors(
    run: Run, request_type: str, name: str, response: Any = None, **_: Any
) -> None:
    status = getattr(response, "status_code", 0) or 0
    if status >= 500:
        run.server_errors[f"{status} {request_type} {name}"] += 1


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    run = run_of(environment)
    environment.events.request.add_listener(functools.partial(_count_server_errors, run))
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message(
            REPORT_MESSAGE, lambda msg, **_: run.reports.__setitem__(msg.node_id, msg.data)
        )
    elif isinstance(runner, WorkerRunner):
        runner.register_message(CHECK_MESSAGE, lambda msg, **_: _check_asked(environment))


def _check_asked(environment: Environment) -> None:
    """The master ends a headless run with `quit`, which tells no worker to stop first:
    it asks for the reports itself. Stopping fires this worker's test_stop (the report)."""
    runner = environment.runner
    assert isinstance(runner, WorkerRunner)
    run = run_of(environment)
    if run.last_report is None:
        runner.stop()
    if run.last_report is not None:
        runner.send_message(REPORT_MESSAGE, run.last_report)


# ---- judging ----


@events.test_stop.add_listener
def _test_stop(environment: Environment, **_: Any) -> None:
    run = run_of(environment)
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        run.last_report = run.report(f"worker {runner.worker_index}")
        runner.send_message(REPORT_MESSAGE, run.last_report)
        return
    if isinstance(runner, MasterRunner):
        collect_reports(environment, runner)
        own = {"process": "master", "cpu_s": cpu_seconds() - run.cpu_started,
               "wall_s": time.time() - run.started}  # fmt: skip
        reports = [*run.reports.values(), own]
    else:
        reports = [run.report("local")]
    verdicts, summary = judge(environment, reports)
    print_verdicts(verdicts, summary)
    if any(not ok for _, ok, _ in verdicts):
        environment.process_exit_code = INVARIANT_BROKEN
    path = option(environment, "summary_json")
    if path:
        with open(path, "wb") as out:
            out.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2))


def collect_reports(environment: Environment, runner: MasterRunner) -> None:
    """Waits for every worker's report, asking those that have not sent one."""
    run = run_of(environment)
    missing = run.workers - set(run.reports)
    for worker in missing:
        runner.send_message(CHECK_MESSAGE, None, worker)
    deadline = time.monotonic() + float(option(environment, "converge_seconds")) + 30
    while run.workers - set(run.reports) and time.monotonic() < deadline:
        gevent.sleep(0.1)
    for worker in run.workers - set(run.reports):
        run.reports[worker] = {
            "process": f"worker {worker} (no report)",
            "cpu_s": 0.0,
            "wall_s": 0.0,
            "watchers": {"checked": 1, "wrong": 1, "examples": [f"{worker} sent no report"],
                         "frames": 0, "resyncs": 0, "reconnects": 0},
        }  # fmt: skip


Verdict = tuple[str, bool, str]  # invariant, holds, details


def judge(env: Environment, reports: list[dict[str, Any]]) -> tuple[list[Verdict], dict[str, Any]]:
    run = run_of(env)
    confirmed: dict[tuple[int, str], set[str]] = {}
    for report in reports:
        for show, label, ids in report.get("confirmed", ()):
            confirmed.setdefault((show, label), set()).update(ids)
    in_flight = {(show, label) for r in reports for show, label in r.get("in_flight", ())}
    errors: Counter[str] = Counter()
    for report in reports:
        errors.update(report.get("server_errors", {}))
    watchers = [r["watchers"] for r in reports if "watchers" in r]

    twice = sorted(f"{show}/{label}" for (show, label), ids in confirmed.items() if len(ids) > 1)
    host = http_hosts(env)[0]
    not_booked: list[str] = []
    unexplained: list[str] = []
    for show_id in show_ids(env):
        truth = read_map(host, show_id)
        if truth is None:
            not_booked.append(f"show {show_id}: map unreadable")
            continue
        mine = {label for (show, label) in confirmed if show == show_id}
        booked = {label for label, (status, _) in truth.items() if status == "BOOKED"}
        not_booked += [f"{show_id}/{label}" for label in sorted(mine - booked)]
        before = run.booked_before.get(show_id, set())
        # a confirm the end of the run cut off may have booked its seats (or not)
        cut_off = {label for (show, label) in in_flight if show == show_id}
        unexplained += [f"{show_id}/{label}" for label in sorted(booked - before - mine - cut_off)]

    checked = sum(w["checked"] for w in watchers)
    wrong = sum(w["wrong"] for w in watchers)
    examples = [e for w in watchers for e in w["examples"]][:3]
    verdicts: list[Verdict] = [
        ("no seat confirmed twice", not twice, ", ".join(twice[:10])),
        (
            "the run's confirmed seats are BOOKED in the map, and only they",
            not not_booked and not unexplained,
            f"{len(confirmed)} confirmed, {len(in_flight)} in confirms cut off by the stop; "
            f"not BOOKED: {not_booked[:10]}; "
            f"BOOKED but not confirmed in the run: {unexplained[:10]}",
        ),
        (
            "every watcher's final state equals the server's map",
            wrong == 0,
            f"{checked - wrong}/{checked} watchers match" + (f"; {examples}" if examples else ""),
        ),
        ("no 5xx", not errors, ", ".join(f"{k}: {v}" for k, v in errors.most_common(10))),
    ]
    summary = {
        "shows": show_ids(env),
        "invariants": [{"name": n, "holds": ok, "details": d} for n, ok, d in verdicts],
        "seats_confirmed": len(confirmed),
        "server_errors": dict(errors),
        "watchers": {
            "checked": checked,
            "wrong": wrong,
            "frames": sum(w["frames"] for w in watchers),
            "resyncs": sum(w["resyncs"] for w in watchers),
            "reconnects": sum(w["reconnects"] for w in watchers),
            "examples": examples,
        },
        "processes": [
            {
                "process": r["process"],
                "cpu_s": round(r["cpu_s"], 2),
                "wall_s": round(r["wall_s"], 2),
                "cpu_pct": round(100 * r["cpu_s"] / max(r["wall_s"], 1e-9), 1),
            }
            for r in reports
        ],
    }
    return verdicts, summary


def print_verdicts(verdicts: list[Verdict], summary: dict[str, Any]) -> None:
    lines = ["", "invariants:"]
    for name, ok, details in verdicts:
        lines.append(
            f"  {'OK    ' if ok else 'BROKEN'} {name}" + (f" ({details})" if details else "")
        )
    w = summary["watchers"]
    lines.append(
        f"watchers: {w['checked']} checked, {w['frames']} frames, {w['resyncs']} resyncs, "
        f"{w['reconnects']} reconnects; seats confirmed: {summary['seats_confirmed']}"
    )
    lines.append("Locust CPU: " + ", ".join(
        f"{p['process']} {p['cpu_pct']:.0f}% of a core ({p['cpu_s']:.1f} s in {p['wall_s']:.0f} s)"
        for p in summary["processes"]
    ))  # fmt: skip
    print("\n".join(lines), flush=True)
