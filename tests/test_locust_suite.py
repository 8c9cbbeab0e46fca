"""The load testers' Locust suite (loadtests/locustfile.py) runs headless against real
servers, and its end-of-run invariants hold there and fail against a server that lies."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ROOT, ServerProcess, token

pytestmark = pytest.mark.slow  # two Locust runs of a few seconds each


def locust(tmp_path: Path, *args: str, seconds: int = 6) -> tuple[int, str, dict[str, Any]]:
    """Runs the suite headless; its exit code, output and --summary-json."""
    summary = tmp_path / "summary.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "locust",
            "-f", "loadtests/locustfile.py",
            "--headless", "--only-summary",
            "-t", f"{seconds}s",
            "--seats", "200",
            "--watch-seconds", "60-60",
            "--admin-token", token("locust", "admin"),
            "--summary-json", str(summary),
            *args,
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert summary.exists(), output
    return done.returncode, output, json.loads(summary.read_text())


def test_the_suite_runs_distributed_on_two_servers_and_its_invariants_hold(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    hosts = ",".join(s.url for s in servers)
    code, output, summary = locust(
        tmp_path, "--hosts", hosts, "--processes", "2", "-u", "100", "-r", "100"
    )
    assert code == 0, output
    assert all(i["holds"] for i in summary["invariants"]), summary
    assert summary["watchers"]["checked"] >= 60 and summary["watchers"]["frames"] > 0, summary
    assert summary["seats_confirmed"] > 0, summary
    assert [p["process"] for p in summary["processes"]].count("master") == 1, summary
    assert len(summary["processes"]) == 3, summary  # the master and both workers reported
    for name in ("WS       seats", "WS       watcher connect", "/shows/[id]/holds"):
        assert name in output, output


class WrongMap(BaseHTTPRequestHandler):
    """A test double of a server whose seat-map cache is never invalidated: it passes
    every request to a real server but answers each map as it first read it (watchers
    learn the truth over /ws, from the real servers)."""

    protocol_version = "HTTP/1.1"
    upstream: httpx.Client
    maps: dict[str, bytes]

    def do_GET(self) -> None:
        self.forward()

    def do_POST(self) -> None:
        self.forward()

    def do_PATCH(self) -> None:
        self.forward()

    def do_DELETE(self) -> None:
        self.forward()

    def forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        skip = {"host", "content-length", "connection"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
        answer = self.upstream.request(self.command, self.path, content=body, headers=headers)
        content = answer.content
        if self.command == "GET" and self.path.endswith("/seats") and answer.status_code == 200:
            content = self.maps.setdefault(self.path, content)
        self.send_response(answer.status_code)
        self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def wrong_map(server: ServerProcess) -> Iterator[str]:
    with httpx.Client(base_url=server.url, timeout=30) as upstream:
        handler = type("Handler", (WrongMap,), {"upstream": upstream, "maps": {}})
        double = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=double.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{double.server_address[1]}"
        double.shutdown()
        double.server_close()


def test_the_suite_fails_the_run_when_the_server_answers_a_wrong_map(
    servers: list[ServerProcess], wrong_map: str, tmp_path: Path
) -> None:
    code, output, summary = locust(
        tmp_path,
        "--hosts", wrong_map,
        "--ws-hosts", ",".join(s.ws_url for s in servers),
        "-u", "20", "-r", "20",
        "--converge-seconds", "2",
        seconds=4,
    )  # fmt: skip
    assert code == 3, output
    verdicts = {i["name"]: i["holds"] for i in summary["invariants"]}
    assert verdicts["every watcher's final state equals the server's map"] is False, summary
    assert summary["watchers"]["wrong"] == summary["watchers"]["checked"] > 0, summary
    assert "BROKEN every watcher's final state equals the server's map" in output
