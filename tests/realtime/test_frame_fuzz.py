"""Fuzzed WebSocket frames against a real server (issue 12): over the frame schema (every
field with Unicode digits and letters, NUL, huge numbers, deep nesting, wrong types) and
over raw text and bytes. Every frame is answered (an error frame or a valid frame) and the
socket stays usable (a ping after it gets its pong), or the socket closes with a proper
close code; once the sockets are gone the server's watcher count is back where it was and
its memory has not grown with them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.realtime.apply import check_schema
from tests.support import Cluster, ServerProcess, auth, metric, wait_until_blocking

# error codes a bad frame may get ("internal" is a bug: it is not among them)
CLIENT_ERRORS = {
    "bad_json",
    "invalid_frame",
    "unknown_type",
    "frame_too_large",
    "unknown_show",
    "not_subscribed",
    "too_many_subscriptions",
    "unavailable",
}
# invalid UTF-8 in a text frame, a message over the server's 64 KiB limit
CLOSE_CODES = {1007, 1009}
MEMORY_BOUND = 64 * 1024 * 1024  # generous: a leak per socket would pass it many times over


class RealShow:
    """Stands for the fuzz show's id in generated frames (so subscribes really subscribe)."""

    def __repr__(self) -> str:
        return "REAL_SHOW"


REAL_SHOW = RealShow()

# digits and letters of every script (², ٣, 𝟘, Ⅻ, ...), control characters (NUL), spaces
characters = st.characters(
    categories=["Nd", "No", "Nl", "Lu", "Ll", "Lo", "Lm", "Cc", "Zs", "Po"]
) | st.sampled_from("0123456789:e-\x00")
texts = st.text(characters, max_size=24)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**53, 2**53 + 1, 2**63, 2**64, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),  # NaN and Infinity are no JSON
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=12,
)
show_ids = st.one_of(st.just(REAL_SHOW), numbers, texts, json_values)
counts = st.integers(min_value=-1, max_value=10**40).map(str)
offsets = st.one_of(
    texts,
    # "e:²", "e:٣", "\x00:1"; EPOCH becomes the show's real epoch (a resume reaches history)
    st.builds("{}:{}".format, texts | st.just("EPOCH"), texts | counts),
    json_values,
)
# frames a client could mean: a subscribe to the real show with any offset, unsubscribes
meant_frames = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("subscribe"), "show_id": st.just(REAL_SHOW), "offset": offsets},
        optional={"encoding": st.sampled_from(["rle", None])},
    ),
    st.fixed_dictionaries({"type": st.just("unsubscribe"), "show_id": show_ids}),
)
# frames of any shape
any_frames = st.builds(
    lambda extra, fields: {**extra, **fields},
    st.dictionaries(texts, json_values, max_size=2),  # unknown fields
    st.fixed_dictionaries(
        {"type": st.sampled_from(["subscribe", "unsubscribe", "ping"]) | texts | json_values},
        optional={
            "show_id": show_ids,
            "offset": offsets,
            "encoding": st.sampled_from(["rle", None]) | texts | json_values,
        },
    ),
)


SHAPES = {
    # a field nested n deep, before "type" (skipped while the decoder seeks the tag) or after
    "deep before type": lambda n: '{"x":' + "[" * n + "]" * n + ',"type":"ping"}',
    "deep after type": lambda n: '{"type":"ping","x":' + "[" * n + "]" * n + "}",
    "unclosed arrays": lambda n: "[" * n,
    "nested objects": lambda n: '{"a":' * n + "1" + "}" * n,
    "long number": lambda n: '{"type":"subscribe","show_id":' + "9" * n + "}",
    "long frame": lambda n: '{"type":"ping","x":"' + "x" * (n * 10) + '"}',  # to 80 KiB
}


@dataclass(frozen=True)
class Shaped:
    """A big message by name and size (hypothesis prints this, not 80 KiB of text)."""

    shape: str
    size: int

    def render(self) -> str:
        return SHAPES[self.shape](self.size)


raw_messages = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=300),
    st.builds(Shaped, st.sampled_from(sorted(SHAPES)), st.integers(min_value=1, max_value=8200)),
)


@pytest.fixture(scope="module")
def fuzz_server(cluster: Cluster, log_dir: Path) -> Iterator[ServerProcess]:
    """A server of these tests' own, so its watcher count and memory are theirs alone."""
    server = ServerProcess(cluster, log_dir).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fuzz_show(fuzz_server: ServerProcess) -> int:
    body = {
        "title": "Fuzzed",
        "venue": "Test venue",
        "starts_at": "2027-01-15T20:00:00Z",
        "rows": 5,
        "seats_per_row": 10,
    }
    response = httpx.post(
        f"{fuzz_server.url}/admin/shows", json=body, headers=auth("admin", "admin"), timeout=30
    )
    assert response.status_code == 201, response.text
    show_id: int = response.json()["id"]
    return show_id


def exchange(ws_url: str, message: str | bytes, *, as_text: bool | None = None) -> str:
    """Send one message then a ping on a fresh socket: "usable" when the pong comes back,
    "closed" when the server closed with a proper code; anything else fails."""
    with connect(ws_url, open_timeout=10, close_timeout=5, max_size=None) as ws:
        try:
            ws.send(message, text=as_text)
            ws.send('{"type":"ping"}')
            while True:
                frame = check_schema(ws.recv(timeout=10))
                if frame["type"] == "pong":
                    return "usable"
                if frame["type"] == "error":
                    assert frame["code"] in CLIENT_ERRORS, frame
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "closed without a close frame"
            assert closed.rcvd.code in CLOSE_CODES, closed.rcvd
            return "closed"


def watchers(server: ServerProcess) -> tuple[float, float]:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return metric(text, "ws_watchers"), metric(text, "ws_connections")


def rss(server: ServerProcess) -> int:
    assert server.proc is not None
    return int(psutil.Process(server.proc.pid).memory_info().rss)


def fuzz(examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def decorate(test: Callable[..., None]) -> Callable[..., None]:
        return settings(
            max_examples=examples,
            deadline=None,
            database=None,  # nothing written into the checkout
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )(test)

    return decorate


def settles(server: ServerProcess, before: tuple[float, float], within: float = 10.0) -> None:
    """The sockets are closed: the server's watcher and connection counts come back."""
    try:
        wait_until_blocking(lambda: watchers(server) == before, within)
    except AssertionError:
        now = watchers(server)
        raise AssertionError(f"watchers, connections: {now}, were {before}") from None


def test_fuzzed_frames_are_answered_and_leave_nothing_behind(
    fuzz_server: ServerProcess, fuzz_show: int
) -> None:
    url = fuzz_server.ws_url

    epoch = httpx.get(f"{fuzz_server.url}/shows/{fuzz_show}/seats").json()["offset"]
    epoch = epoch.rpartition(":")[0] or "e"

    @fuzz(examples=250)
    @given(frame=meant_frames | any_frames, ensure_ascii=st.booleans(), as_bytes=st.booleans())
    def schema(frame: dict[str, Any], ensure_ascii: bool, as_bytes: bool) -> None:
        if frame.get("show_id") is REAL_SHOW:
            frame["show_id"] = fuzz_show
        if isinstance(frame.get("offset"), str):
            frame["offset"] = frame["offset"].replace("EPOCH", epoch)
        text = json.dumps(frame, ensure_ascii=ensure_ascii, default=lambda _: fuzz_show)
        exchange(url, text.encode() if as_bytes else text)

    @fuzz(examples=150)
    @given(message=raw_messages, as_text=st.booleans())
    def raw(message: str | bytes | Shaped, as_text: bool) -> None:
        if isinstance(message, Shaped):
            message = message.render()
        # bytes sent as a text frame are mostly invalid UTF-8 (closed with 1007)
        exchange(url, message, as_text=as_text if isinstance(message, bytes) else None)

    exchange(url, json.dumps({"type": "subscribe", "show_id": fuzz_show}))  # warm up
    before, memory = watchers(fuzz_server), rss(fuzz_server)
    schema()
    raw()
    settles(fuzz_server, before)
    grown = rss(fuzz_server) - memory
    assert grown < MEMORY_BOUND, f"server RSS grew {grown / 2**20:.1f} MiB over the fuzzed sockets"


def test_the_issues_frame_is_answered_with_a_snapshot(
    fuzz_server: ServerProcess, fuzz_show: int
) -> None:
    """The frame of issue 12 item 1, through the same exchange."""
    before = watchers(fuzz_server)
    frame = {"type": "subscribe", "show_id": fuzz_show, "offset": "e:²"}
    assert exchange(fuzz_server.ws_url, json.dumps(frame)) == "usable"
    settles(fuzz_server, before)
