"""The browser's seat store (static/js/live.js) in a Node process, so a test applies frames
with the code users run (tests/js/live_store_runner.mjs says how)."""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

from tests.realtime.apply import ShowState
from tests.support import ROOT, require_tool

RUNNER = ROOT / "tests" / "js" / "live_store_runner.mjs"


class LiveStore:
    """One Node process running live.js's SeatStore; one question at a time."""

    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> LiveStore:
        node = shutil.which("node")
        require_tool(node is not None, "Node.js (`node`)")
        assert node is not None
        self._proc = await asyncio.create_subprocess_exec(
            node,
            str(RUNNER),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def state(self, seats: list[dict[str, Any]], frames: list[dict[str, Any]]) -> ShowState:
        """A fresh store with the layout `seats` (GET /shows/{id}/seats), `frames` applied
        in order: the seats and show fields a page would then show."""
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        lines = [{"type": "layout", "seats": seats}, *frames, {"type": "state"}]
        proc.stdin.write(b"".join(json.dumps(line).encode() + b"\n" for line in lines))
        await proc.stdin.drain()
        answer = await proc.stdout.readline()
        if not answer:
            assert proc.stderr is not None
            error = (await proc.stderr.read()).decode()
            raise AssertionError(f"live.js's store failed on frames {frames}:\n{error}")
        found = json.loads(answer)
        return ShowState(
            [seat["label"] for seat in seats],
            {label: (status, int(version)) for label, (status, version) in found["seats"].items()},
            found["show"],
        )
