"""What a client does with frames, for the tests' watchers: the same rules as the browser's
seat store (static/js/live.js), which the verify_action tests run itself; test_live_store.py
fails when the two drift apart."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from app.realtime.frames import LiveFrame, RleSnapshot, Snapshot, rle_decode

SHOW_FIELDS = ("title", "status", "starts_at")

_live = msgspec.json.Decoder(LiveFrame)
_snapshot = msgspec.json.Decoder(Snapshot)
_rle_snapshot = msgspec.json.Decoder(RleSnapshot)


def check_schema(text: str | bytes) -> dict[str, Any]:
    """Decode a server frame against the published frame types (fails on any deviation)
    and return it as a plain dict."""
    frame: dict[str, Any] = msgspec.json.decode(text)
    if frame.get("type") == "snapshot":
        (_rle_snapshot if "encoding" in frame else _snapshot).decode(text)
    else:
        _live.decode(text)
    return frame


@dataclass
class ShowState:
    """A client's picture of one show."""

    order: list[str]  # labels in map order, from GET /shows/{id}/seats (for compact snapshots)
    seats: dict[str, tuple[str, int]] = field(default_factory=dict)  # label -> status, version
    show: dict[str, Any] = field(default_factory=dict)
    offset: str | None = None
    watchers: int | None = None
    announcements: list[str] = field(default_factory=list)
    has_snapshot: bool = False
    labels: frozenset[str] = field(init=False)  # the layout's seats: no others are kept

    def __post_init__(self) -> None:
        self.labels = frozenset(self.order)

    def copy(self) -> ShowState:
        return ShowState(
            list(self.order),
            dict(self.seats),
            dict(self.show),
            self.offset,
            self.watchers,
            list(self.announcements),
            self.has_snapshot,
        )


def apply(state: ShowState, frame: dict[str, Any]) -> None:
    kind = frame["type"]
    if kind == "snapshot":
        if frame.get("encoding") == "rle":
            pairs = rle_decode(frame["status"], frame["version"])
            assert len(pairs) == frame["count"] == len(state.order)
            state.seats = dict(zip(state.order, pairs, strict=True))
        else:
            state.seats = {s["label"]: (s["status"], s["version"]) for s in frame["seats"]}
        state.offset = frame["offset"]
        state.has_snapshot = True
    elif kind == "seats":
        for change in frame["changes"]:
            if change["label"] not in state.labels:
                continue  # a seat the layout does not have
            known = state.seats.get(change["label"])
            # a version older than what the client has is ignored
            if known is None or change["version"] >= known[1]:
                state.seats[change["label"]] = (change["status"], change["version"])
        state.offset = frame["offset"]
    elif kind == "show":
        state.show.update({k: frame[k] for k in SHOW_FIELDS if k in frame})
        state.offset = frame["offset"]
    elif kind == "announcement":
        state.announcements.append(frame["message"])
        state.offset = frame["offset"]
    elif kind == "presence":
        state.watchers = frame["watchers"]


def apply_all(state: ShowState, frames: list[dict[str, Any]]) -> ShowState:
    result = state.copy()
    for frame in frames:
        apply(result, frame)
    return result


def diff(got: dict[str, Any], want: dict[str, Any]) -> str:
    lines = []
    for key in sorted(set(got) | set(want)):
        if got.get(key) != want.get(key):
            lines.append(f"  {key}: client has {got.get(key)!r}, server has {want.get(key)!r}")
    return "\n".join(lines)
