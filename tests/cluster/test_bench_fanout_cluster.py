"""loadtests/bench_fanout_cluster.py runs: three instances behind nginx, on one Redis and on
a Redis Cluster, and every watcher ends equal to the map in both."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, Services, require_tool

pytestmark = pytest.mark.slow


def test_quick_run_reports_both_configurations_and_every_watcher_converges(
    services: Services,
) -> None:
    require_tool(shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists(), "nginx")
    require_tool(shutil.which("redis-server") is not None, "redis-server")
    run = subprocess.run(
        [
            sys.executable,
            "loadtests/bench_fanout_cluster.py",
            "--quick",
            "--database-url",
            services.pg_admin_url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = run.stdout
    assert run.returncode == 0, out + run.stderr[-3000:]
    for kind in ("single", "cluster"):
        line = re.search(rf"^ *{kind}: 300 watchers, .*$", out, re.M)
        assert line, out
        assert "missing 0, duplicates 0, not converged 0" in line.group(0), line.group(0)
        assert re.search(r"p99 \d+(\.\d+)? ms", line.group(0)), line.group(0)
    assert re.search(r"median deliveries_s: single [\d,.]+, cluster [\d,.]+", out), out
    assert "every watcher converged" in out
