"""A real Prometheus (Debian's `prometheus`, installed by `make tools`) for the ops tests:
it scrapes `modex serve` processes every second and evaluates alert rules every second."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from tests.support import free_port, wait_until, wait_until_blocking

INSTALL_HINT = "install the deploy tools: `bash .ci/deploy-tools.sh .venv` (as root)"
T = TypeVar("T")


def prometheus_binary() -> str:
    for found in (shutil.which("prometheus"), "/usr/bin/prometheus", "/usr/sbin/prometheus"):
        if found and Path(found).is_file():
            return found
    pytest.fail(f"`prometheus` is not installed; {INSTALL_HINT}", pytrace=False)


def wait_for(what: str, probe: Callable[[], T], timeout: float, every: float = 0.25) -> T:
    """probe()'s first true result (a non-empty list, a dict, True); fails after `timeout` s
    (a short failure: the alert tests' tracebacks say nothing more)."""
    try:
        return wait_until_blocking(probe, timeout, what, every)
    except AssertionError as timed_out:
        pytest.fail(str(timed_out), pytrace=False)


async def until(what: str, probe: Callable[[], T], within: float, every: float = 0.25) -> T:
    """wait_for() in a running event loop: other tasks (load, watchers) go on meanwhile."""
    try:
        return await wait_until(probe, within, what, every)
    except AssertionError as timed_out:
        pytest.fail(str(timed_out), pytrace=False)


class Prometheus:
    """One Prometheus process of the test's own: its own port, folder and config."""

    def __init__(self, folder: Path, targets: list[str], rule_file: Path | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.targets = targets
        self.rule_file = rule_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            # 1 s apart, so a test sees a rate within seconds; a scrape that takes longer
            # than a second counts as failed (up == 0), as a hung instance would
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "scrape_configs": [
                {
                    "job_name": "modex",
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": self.targets}],
                }
            ],
        }
        if self.rule_file is not None:
            config["rule_files"] = [str(self.rule_file)]
        return config

    def start(self, timeout: float = 30) -> Prometheus:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        log = (self.folder / "prometheus.log").open("ab")
        self.proc = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"prometheus exited:\n{self.log()[-3000:]}", pytrace=False)
            try:
                return self.http.get("/-/ready").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for("prometheus to be ready", ready, timeout)
        return self

    def stop(self) -> None:
        self.http.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        path = self.folder / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        response = self.http.get(f"/api/v1/{path}", params=params)
        body = response.json()
        assert body.get("status") == "success", f"{path} {params}: {response.text}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's series (a vector), as the API returns them."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", f"{expr!r} is a {data['resultType']}"
        return data["result"]  # type: ignore[no-any-return]

    def targets_up(self) -> bool:
        active = self.api("targets")["activeTargets"]
        return len(active) == len(self.targets) and all(t["health"] == "up" for t in active)

    def rules(self) -> dict[str, dict[str, Any]]:
        """Alerting rules by name, each with its `state` and active `alerts`."""
        groups = self.api("rules", type="alert")["groups"]
        return {rule["name"]: rule for group in groups for rule in group["rules"]}
