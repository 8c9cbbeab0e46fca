"""A live seat map over /ws for Locust users: one WebSocket (websocket-client, whose
blocking socket calls yield to other greenlets under Locust's gevent monkey-patching; no
asyncio loop) kept current by a reader greenlet of its own.

It does what the browser's LiveClient (static/js/live.js) does: start from the map read
over HTTP and subscribe with its offset, apply `seats` frames by per-seat version, take a
snapshot when the server sends one, ping after 20 s of quiet, and when the connection drops
reconnect with backoff and jitter (1, 2, 4, 8, 16 s) and resume from the last offset.

What it sees goes into Locust's statistics as requests of type "WS":
- `seats`: one per seat change frame, response time = receive time - the frame's commit
  time (`ts`, epoch ms), so the figure holds across machines whose clocks are synced;
- `announcement`, `show`: an admin's broadcast or show change from this suite (its send
  time rides in the message or the title), response time = delivery time;
- `<role> reconnect` (time from the drop to the new subscription), `<role> resync` (a
  snapshot the server sent instead of a replay), `<role> drop <close code>`;
- failures: an `error` frame, a connection that could not be (re)opened, a close other
  than 1000/1001/1012 (server restart).
"""

from __future__ import annotations

import contextlib
import random
import re
import struct
import time
from typing import Any

import gevent
import orjson
import websocket
from locust.event import Events

PING_AFTER = 20.0  # seconds of quiet before a ping (the browser's PING_EVERY_MS)
SILENCE_LIMIT = 50.0  # seconds without a byte: the connection is dead (SILENCE_LIMIT_MS)
CONNECT_TIMEOUT = 10.0
BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0)
EXPECTED_CLOSES = {1000, 1001, 1012}  # normal, going away, server restarting

# what this suite's admins send: the send time (epoch ms) rides along
ANNOUNCEMENT = re.compile(r"^locust (\d{13})\b")
TITLE_MARK = re.compile(r"\[locust (\d{13})\]$")

Seats = dict[str, tuple[str, int]]  # label -> (status, version)


def now_ms() -> float:
    return time.time() * 1000.0


def seats_of(seat_list: list[dict[str, Any]]) -> Seats:
    return {s["label"]: (s["status"], s["version"]) for s in seat_list}


class LiveMap:
    """One show's seats as a watcher sees them, kept live over one WebSocket."""

    def __init__(
        self,
        events: Events,
        ws_url: str,
        show_id: int,
        role: str,
        seats: Seats,
        offset: str,
        token: str | None = None,
    ) -> None:
        self.events = events
        self.url = ws_url + (f"?token={token}" if token else "")
        self.show_id = show_id
        self.role = role
        self.seats = seats
        self.offset = offset
        self.closed = False
        self.connected = False
        self.frames = 0
        self.resyncs = 0
        self.reconnects = 0
        self._ws: websocket.WebSocket | None = None
        self._reader: gevent.Greenlet | None = None
        self._want_snapshot = False
        self._last_heard = time.monotonic()

    # ---- life cycle ----

    def open(self) -> None:
        """Connect and subscribe (from the map's offset); raises if the server refuses."""
        started = time.perf_counter()
        try:
            self._connect()
        except Exception as exc:
            self._report(f"{self.role} connect", started, exc)
            raise
        self._report(f"{self.role} connect", started)
        self._reader = gevent.spawn(self._read)

    def close(self) -> None:
        self.closed = True
        if self._reader is not None and self._reader is not gevent.getcurrent():
            self._reader.kill(block=False)
        ws, self._ws = self._ws, None
        self.connected = False
        if ws is not None:
            try:
                ws.send_close(1000)
                ws.shutdown()
            except Exception:  # already gone: nothing to tell the server
                pass

    def differences(self, truth: Seats, limit: int = 5) -> list[str]:
        """Seats where this watcher and `truth` disagree, as `label: mine != truth`."""
        labels = sorted(set(self.seats) | set(truth))
        wrong = [
            f"{label}: {self.seats.get(label)} != {truth.get(label)}"
            for label in labels
            if self.seats.get(label) != truth.get(label)
        ]
        return wrong[:limit] + ([f"... {len(wrong) - limit} more"] if len(wrong) > limit else [])

    # ---- the connection ----

    def _connect(self) -> None:
        # websocket-client checks a text frame's UTF-8 byte by byte in pure Python unless
        # told not to; Locust's own CPU is the limit of a 1,000-user run, and orjson checks
        # the same bytes in C when it parses the frame
        ws = websocket.create_connection(
            self.url, timeout=CONNECT_TIMEOUT, skip_utf8_validation=True
        )
        frame: dict[str, Any] = {"type": "subscribe", "show_id": self.show_id}
        # an empty offset (Redis was unreachable when the map was read) asks for a snapshot
        if self.offset:
            frame["offset"] = self.offset
        self._want_snapshot = not self.offset
        ws.send(orjson.dumps(frame).decode())
        ws.settimeout(PING_AFTER)
        self._ws = ws
        self.connected = True
        self._last_heard = time.monotonic()

    def _read(self) -> None:
        while not self.closed:
            ws = self._ws
            if ws is None:
                return
            try:
                opcode, data = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                if time.monotonic() - self._last_heard > SILENCE_LIMIT:
                    self._dropped(None, "silent")
                else:
                    self._send({"type": "ping"})
                continue
            except (websocket.WebSocketException, OSError) as exc:
                if not self.closed:
                    self._dropped(None, repr(exc))
                continue
            self._last_heard = time.monotonic()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                self._dropped(code, data[2:].decode(errors="replace"))
                continue
            self._on_frame(data)

    def _send(self, frame: dict[str, Any]) -> None:
        try:
            if self._ws is not None:
                self._ws.send(orjson.dumps(frame).decode())
        except (websocket.WebSocketException, OSError) as exc:
            self._dropped(None, repr(exc))

    def _dropped(self, code: int | None, reason: str) -> None:
        """Reconnect with backoff and resume from the last offset, until closed."""
        dropped = time.perf_counter()
        self.connected = False
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self._ws.shutdown()
            self._ws = None
        if self.closed:
            return
        name = f"{self.role} drop {code if code is not None else 'abnormal'}"
        if code in EXPECTED_CLOSES:
            self._report(name, dropped)
        else:
            self._report(name, dropped, ConnectionError(f"closed {code}: {reason[:200]}"))
        attempt = 0
        while not self.closed:
            gevent.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)] * random.uniform(0.5, 1.0))
            if self.closed:
                return
            try:
                self._connect()
            except Exception as exc:
                self._report(f"{self.role} reconnect", dropped, exc)
                attempt += 1
                continue
            self.reconnects += 1
            self._report(f"{self.role} reconnect", dropped)
            return

    # ---- frames ----

    def _on_frame(self, data: bytes | str) -> None:
        frame = orjson.loads(data)
        self.frames += 1
        kind = frame.get("type")
        if kind == "seats":
            seats = self.seats  # the hottest loop of a Locust process: one lookup per change
            for change in frame["changes"]:
                label, version = change["label"], change["version"]
                known = seats.get(label)
                # a version no newer than what the watcher has is ignored
                if known is None or version > known[1]:
                    seats[label] = (change["status"], version)
            self.offset = frame["offset"]
            ts = frame.get("ts")
            if ts is not None:
                self._fire("seats", max(0.0, now_ms() - ts), len(data))
        elif kind == "snapshot":
            self.seats = seats_of(frame["seats"])
            self.offset = frame["offset"]
            if self._want_snapshot:
                self._want_snapshot = False
            else:  # the server could not replay from our offset
                self.resyncs += 1
                self._fire(f"{self.role} resync", 0.0, len(data))
        elif kind == "show":
            self.offset = frame["offset"]
            mark = TITLE_MARK.search(frame.get("title") or "")
            if mark:
                self._fire("show", max(0.0, now_ms() - int(mark.group(1))), len(data))
        elif kind == "announcement":
            self.offset = frame["offset"]
            mark = ANNOUNCEMENT.match(frame["message"])
            if mark:
                self._fire("announcement", max(0.0, now_ms() - int(mark.group(1))), len(data))
        elif kind == "error":
            self._fire(
                f"error {frame.get('code')}",
                0.0,
                len(data),
                RuntimeError(f"error frame: {frame.get('message')}"),
            )

    def _report(self, name: str, started: float, exc: BaseException | None = None) -> None:
        self._fire(name, (time.perf_counter() - started) * 1000.0, 0, exc)

    def _fire(self, name: str, ms: float, length: int, exc: BaseException | None = None) -> None:
        self.events.request.fire(
            request_type="WS",
            name=name,
            response_time=ms,
            response_length=length,
            exception=exc,
            context={},
        )
