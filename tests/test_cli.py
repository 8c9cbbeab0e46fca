"""The README's commands: `modex serve` on a bare machine, `modex migrate`, `modex token`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import jwt
import pytest

from tests.support import JWT_SECRET, ROOT, Cluster, answers_ok, free_port, wait_until_blocking


def test_token_prints_a_jwt_for_the_role() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app", "token", "alice", "--role", "admin"],
        env={**os.environ, "MODEX_JWT_SECRET": JWT_SECRET},
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.strip()
    claims = jwt.decode(out, JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["role"] == "admin" and claims["exp"] > time.time()


def test_migrate_applies_to_every_database_once(cluster: Cluster) -> None:
    again = subprocess.run(
        [sys.executable, "-m", "app", "migrate"],
        env=cluster.env(),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert again.returncode == 0, again.stderr
    assert "migrations applied" in again.stdout


class EmbeddedServe:
    """`modex serve` with no DATABASE_URL / REDIS_URL: what a newcomer runs first."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.output = ""

    def start(self) -> str:
        env = {
            k: v
            for k, v in os.environ.items()
            if k
            not in ("DATABASE_URL", "REDIS_URL", "SHARD_URLS", "MODEX_JWT_SECRET", "MODEX_DEMO")
        }
        env["MODEX_DATA_DIR"] = str(self.data_dir)
        log = self.data_dir / f"serve-{self.port}.log"
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app", "serve", "--port", str(self.port)],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        proc = self.proc

        def announced() -> bool:
            self.output = log.read_text()
            assert proc.poll() is None, f"serve exited: {self.output}"
            return f"http://localhost:{self.port}/" in self.output

        url = f"http://127.0.0.1:{self.port}"
        try:
            wait_until_blocking(announced, 90, "serve to print its address", every=0.2)
            wait_until_blocking(lambda: answers_ok(f"{url}/health"), 30, "/health", every=0.2)
        except AssertionError:
            raise AssertionError(self.output) from None
        return url

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def data_dir() -> Path:
    # short: PostgreSQL's socket lives in the data folder and its path is limited
    folder = Path(tempfile.mkdtemp(prefix="mxe-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_serve_with_nothing_installed_loads_demo_shows_and_keeps_data(data_dir: Path) -> None:
    serve = EmbeddedServe(data_dir)
    try:
        url = serve.start()
        assert "demo shows loaded" in serve.output
        shows = httpx.get(f"{url}/shows").json()["shows"]
        assert len(shows) == 3
        assert max(show["seats_total"] for show in shows) >= 5000
        token = subprocess.run(
            [sys.executable, "-m", "app", "token", "newcomer"],
            env={**os.environ, "MODEX_DATA_DIR": str(data_dir)},
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout.strip()
        show_id = shows[0]["id"]
        booked = httpx.post(
            f"{url}/shows/{show_id}/book",
            json={"seatNumbers": ["A1"]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert booked.status_code == 201, booked.text
    finally:
        serve.stop()

    again = EmbeddedServe(data_dir)
    try:
        url = again.start()
        assert "demo shows loaded" not in again.output
        shows = httpx.get(f"{url}/shows").json()["shows"]
        assert len(shows) == 3, "demo shows were loaded twice"
        seats = httpx.get(f"{url}/shows/{show_id}/seats").json()["seats"]
        assert seats[0]["label"] == "A1" and seats[0]["status"] == "BOOKED"
        assert httpx.get(f"{url}/ready").status_code == 200
    finally:
        again.stop()
