"""Watchers for bench_fanout.py: one process holding thousands of picows WebSocket clients.

Started by the orchestrator (pinned with taskset to the load core) and driven through
JSON lines on stdin/stdout:

    {"cmd": "connect", "url": ..., "n": 1000, "show_id": 1, "encoding": "rle"}
        open n more connections, each subscribes; answers once each got its snapshot
    {"cmd": "window", "start": t0, "end": t1}   count frames received in [t0, t1)
    {"cmd": "stats"}                             what the last window saw
    {"cmd": "check", "versions": [...]}          watchers whose seat versions differ
    {"cmd": "close"} / {"cmd": "exit"}

Per frame: receive time - the frame's `ts` (commit time of the oldest change in it) into a
1 ms histogram, for EVERY frame with at least one change this watcher had not seen (frames
of only re-published, already seen changes are counted as stale instead); per watcher and
seat the last version seen, so a version that skips one counts as missing and one not
newer as a duplicate.

Cheap per frame (the tool must stay well under one core): all watchers get the same bytes
(encode-once), so each distinct frame is parsed once, and applying it is shared too. A
watcher's seat versions are an immutable array; applying a frame to a given array gives
a new array and the fresh/missing/duplicate counts, computed by the first watcher that
applies that frame to that exact array (identity) and reused by every watcher holding the
same array. A watcher with its own history (a resync, a late join) computes its own.
Nothing is sampled: every frame of every watcher is checked and timed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from array import array
from pathlib import Path
from typing import Any

import common
import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

MAX_MS = 60_000
TEXT = WSMsgType.TEXT  # an enum attribute lookup per frame showed up in the profile


def rle_versions(version: str) -> list[int]:
    out: list[int] = []
    for run in version.split(",") if version else []:
        value, _, count = run.partition("*")
        out.extend([int(value)] * (int(count) if count else 1))
    return out


class State:
    def __init__(self) -> None:
        self.index: dict[str, int] = {}  # seat label -> position in map order
        self.cache: dict[bytes, Parsed] = {}
        self.listeners: list[Watcher] = []
        self.w_start = 0.0
        self.w_end = 0.0
        self.reset()

    def reset(self) -> None:
        self.frames = 0
        self.changes = 0
        self.bytes = 0
        self.missing = 0
        self.dupes = 0
        self.snapshots = 0
        self.other = 0
        self.errors: dict[str, int] = {}
        self.hist = array("l", [0]) * (MAX_MS + 1)
        self.no_ts = 0
        self.late_snapshots = 0
        self.stale_frames = 0

    def parse(self, data: bytes) -> Parsed:
        msg = orjson.loads(data)
        kind = msg.get("type")
        if kind == "seats":
            index = self.index
            changes = tuple(
                (index.get(c["label"], -1), int(c["version"])) for c in msg.get("changes", ())
            )
            return Parsed("seats", msg.get("ts"), changes, None)
        if kind == "snapshot":
            if msg.get("encoding") == "rle":
                versions = array("l", rle_versions(msg["version"]))
            else:
                versions = array("l", [0]) * len(self.index)
                for seat in msg.get("seats", ()):
                    i = self.index.get(seat["label"], -1)
                    if i >= 0:
                        versions[i] = seat["version"]
            return Parsed("snapshot", None, (), versions)
        if kind == "error":
            return Parsed("error", msg.get("code"), (), None)
        return Parsed("other", None, (), None)


class Parsed:
    """One distinct frame, parsed once. `applied` caches its effect per input array:
    id(versions before) -> (versions before, versions after, fresh, missing, dupes); the
    entry keeps the input alive, so its id cannot be reused by another array. Equal
    results are one array (`results`), so watchers whose histories differ (snapshots at
    different times) share again once their seat versions agree."""

    __slots__ = ("applied", "changes", "kind", "results", "ts", "versions")

    def __init__(
        self, kind: str, ts: Any, changes: tuple[tuple[int, int], ...], versions: Any
    ) -> None:
        self.kind = kind
        self.ts = ts
        self.changes = changes
        self.versions = versions  # a snapshot's seat versions (shared, never mutated)
        self.applied: dict[int, Applied] = {}
        self.results: dict[bytes, array[int]] = {}

    def apply(self, before: array[int]) -> Applied:
        after = array("l", before)
        fresh = missing = dupes = 0
        for i, v in self.changes:
            if i < 0:
                continue
            last = after[i]
            if v == last + 1:
                after[i] = v
                fresh += 1
            elif v <= last:
                dupes += 1
            else:
                missing += v - last - 1
                after[i] = v
                fresh += 1
        after = self.results.setdefault(after.tobytes(), after)
        result = (before, after, fresh, missing, dupes)
        if len(self.applied) < 1024:  # normally a few entries: watchers share states
            self.applied[id(before)] = result
        return result


Applied = tuple["array[int]", "array[int]", int, int, int]

STATE = State()


class Watcher(WSListener):
    __slots__ = ("closed", "ready", "transport", "versions")

    def __init__(self) -> None:
        self.transport: WSTransport | None = None
        self.versions: array[int] | None = None  # shared with other watchers: never mutate
        self.ready = False
        self.closed = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        transport.send(WSMsgType.TEXT, SUBSCRIBE[0])

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != TEXT:
            return
        now = time.time()
        data = frame.get_payload_as_bytes()
        st = STATE
        parsed = st.cache.get(data)
        if parsed is None:
            if len(st.cache) > 5_000:
                st.cache.clear()
            parsed = st.cache[data] = st.parse(data)
        kind = parsed.kind
        in_window = st.w_start <= now < st.w_end
        if kind == "seats":
            versions = self.versions
            fresh = 1
            if versions is not None:
                applied = parsed.applied.get(id(versions))
                if applied is None or applied[0] is not versions:
                    applied = parsed.apply(versions)
                self.versions = applied[1]
                fresh = applied[2]
                if in_window:
                    st.missing += applied[3]
                    st.dupes += applied[4]
            if not in_window:
                return
            st.frames += 1
            st.bytes += len(data)
            st.changes += len(parsed.changes)
            ts = parsed.ts
            if ts is None:
                st.no_ts += 1
            elif fresh:
                # commit-to-receive of frames that bring something new (a frame of only
                # re-published, already seen changes carries their old commit time)
                ms = int(now * 1000 - ts)  # ts: epoch ms
                st.hist[ms if 0 <= ms < MAX_MS else (MAX_MS if ms > 0 else 0)] += 1
            else:
                st.stale_frames += 1
        elif kind == "snapshot":
            self.versions = parsed.versions
            if self.ready and in_window:
                st.late_snapshots += 1  # a resync (slow consumer, gap, check)
            self.ready = True
            if in_window:
                st.snapshots += 1
        elif kind == "error":
            st.errors[str(parsed.ts)] = st.errors.get(str(parsed.ts), 0) + 1
        elif in_window:
            st.other += 1


SUBSCRIBE = [b""]


async def connect(cmd: dict[str, Any]) -> dict[str, Any]:
    sub: dict[str, Any] = {"type": "subscribe", "show_id": cmd["show_id"]}
    if cmd.get("encoding"):
        sub["encoding"] = cmd["encoding"]
    SUBSCRIBE[0] = orjson.dumps(sub)
    n = cmd["n"]
    sem = asyncio.Semaphore(cmd.get("parallel", 64))
    new: list[Watcher] = []
    failed: dict[str, int] = {}

    async def one() -> None:
        async with sem:
            try:
                _, listener = await ws_connect(Watcher, cmd["url"], websocket_handshake_timeout=60)
                new.append(listener)  # type: ignore[arg-type]
            except Exception as exc:
                key = type(exc).__name__
                failed[key] = failed.get(key, 0) + 1

    t0 = time.monotonic()
    await asyncio.gather(*(one() for _ in range(n)))
    t1 = time.monotonic()
    deadline = time.monotonic() + cmd.get("timeout", 60)
    while time.monotonic() < deadline and not all(w.ready or w.closed for w in new):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    STATE.listeners.extend(new)
    return {
        "connected": len(new),
        "ready": sum(1 for w in new if w.ready),
        "failed": failed,
        "connect_s": t1 - t0,
        "ready_s": time.monotonic() - t0,
        "total": len(STATE.listeners),
    }


def stats() -> dict[str, Any]:
    st = STATE
    hist = {i: c for i, c in enumerate(st.hist) if c}
    return {
        "frames": st.frames,
        "changes": st.changes,
        "bytes": st.bytes,
        "missing": st.missing,
        "dupes": st.dupes,
        "snapshots": st.snapshots,
        "late_snapshots": st.late_snapshots,
        "stale_frames": st.stale_frames,
        "other": st.other,
        "no_ts": st.no_ts,
        "errors": st.errors,
        "hist": hist,
        "closed": sum(1 for w in st.listeners if w.closed),
        "watchers": len(st.listeners),
        "cpu_s": getattr(st, "cpu_s", 0.0),
        "rss": _rss(),
    }


def _rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def window(start: float, end: float) -> None:
    st = STATE
    st.reset()
    st.w_start, st.w_end = start, end
    await asyncio.sleep(max(0.0, start - time.time()))
    c0 = time.process_time()
    await asyncio.sleep(max(0.0, end - time.time()))
    st.cpu_s = time.process_time() - c0


async def main() -> None:
    common.raise_nofile()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout
    tasks: set[asyncio.Task[None]] = set()

    def reply(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        name = cmd["cmd"]
        if name == "labels":
            STATE.index = {label: i for i, label in enumerate(cmd["labels"])}
            STATE.cache.clear()
            reply({"ok": True})
        elif name == "connect":
            reply(await connect(cmd))
        elif name == "window":
            task = asyncio.create_task(window(cmd["start"], cmd["end"]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            reply({"ok": True})
        elif name == "stats":
            await asyncio.gather(*tasks)
            reply(stats())
        elif name == "check":
            truth = cmd["versions"]
            wrong = 0
            for w in STATE.listeners:
                if w.closed:
                    continue
                if w.versions is None or list(w.versions) != truth:
                    wrong += 1
            reply({"wrong": wrong, "live": sum(1 for w in STATE.listeners if not w.closed)})
        elif name == "close":
            for w in STATE.listeners:
                if w.transport is not None and not w.closed:
                    w.transport.disconnect()
            await asyncio.sleep(0.5)
            STATE.listeners.clear()
            STATE.cache.clear()
            reply({"ok": True})
        elif name == "exit":
            reply({"ok": True})
            break


# ---- the orchestrator's side: watcher processes driven over their stdin/stdout ----


class WatcherProc:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.count = 0

    async def ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError("a watcher process exited")
        result: dict[str, Any] = json.loads(line)
        return result


class Watchers:
    """Watcher processes as one pool: commands go to all of them, new watchers are spread
    so every process holds about as many."""

    def __init__(self, procs: list[WatcherProc]) -> None:
        self.procs = procs

    @classmethod
    async def start(cls, n_procs: int, taskset: list[str], logs: Path) -> Watchers:
        procs = []
        for i in range(n_procs):
            proc = await asyncio.create_subprocess_exec(
                *taskset, sys.executable, __file__,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=(logs / f"watchers-{i}.log").open("ab"), cwd=common.ROOT,
            )  # fmt: skip
            procs.append(WatcherProc(proc))
        return cls(procs)

    @property
    def count(self) -> int:
        return sum(p.count for p in self.procs)

    async def all(self, cmd: dict[str, Any]) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(p.ask(cmd) for p in self.procs)))

    async def add(self, n: int, url: str, show_id: int) -> dict[str, Any]:
        target = self.count + n
        share = [target // len(self.procs)] * len(self.procs)
        for i in range(target % len(self.procs)):
            share[i] += 1
        asks = [(p, want - p.count) for p, want in zip(self.procs, share, strict=True)]
        asks = [(p, extra) for p, extra in asks if extra > 0]
        connect = {"cmd": "connect", "url": url, "show_id": show_id, "encoding": "rle"}
        results = await asyncio.gather(*(p.ask({**connect, "n": extra}) for p, extra in asks))
        merged: dict[str, Any] = {"connected": 0, "ready": 0, "failed": {}, "ready_s": 0.0}
        for (p, _), r in zip(asks, results, strict=True):
            p.count += r["connected"]
            merged["connected"] += r["connected"]
            merged["ready"] += r["ready"]
            merged["ready_s"] = max(merged["ready_s"], r["ready_s"])
            for k, v in r["failed"].items():
                merged["failed"][k] = merged["failed"].get(k, 0) + v
        return merged

    async def close(self) -> None:
        await self.all({"cmd": "close"})
        for p in self.procs:
            p.count = 0

    async def stop(self) -> None:
        for p in self.procs:
            try:
                await asyncio.wait_for(p.ask({"cmd": "exit"}), 10)
                await asyncio.wait_for(p.proc.wait(), 10)
            except (TimeoutError, RuntimeError, OSError):
                if p.proc.returncode is None:
                    p.proc.kill()
                    await p.proc.wait()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
