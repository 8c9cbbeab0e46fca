"""The tests' watchers apply frames with tests/realtime/apply.py; the verify_action tests
with the browser's own store (static/js/live.js, under Node). Both must do the same with
every kind of frame, including the awkward ones: a change at the version the client has,
an older one, a seat the layout does not have, compact snapshots."""

from __future__ import annotations

import json
from typing import Any

from tests.realtime.apply import SHOW_FIELDS, ShowState, apply, check_schema
from tests.realtime.live_store import LiveStore

LAYOUT = [{"label": f"A{n}", "status": "AVAILABLE", "version": 1} for n in range(1, 5)]


def frame(**fields: Any) -> dict[str, Any]:
    """A frame as the server sends it (checked against the published frame types)."""
    return check_schema(json.dumps({"show_id": 7, **fields}))


def seat(label: str, status: str, version: int) -> dict[str, Any]:
    return {"label": label, "status": status, "version": version}


FRAMES = [
    frame(
        type="snapshot",
        offset="e:1",
        seats=[
            seat("A1", "AVAILABLE", 1),
            seat("A2", "HELD", 2),
            seat("A3", "BOOKED", 3),
            seat("A4", "BLOCKED", 2),
        ],
    ),
    frame(
        type="seats",
        offset="e:2",
        changes=[
            seat("A1", "HELD", 2),  # newer: applied
            seat("A2", "AVAILABLE", 1),  # older than what the client has: ignored
            seat("A3", "AVAILABLE", 3),  # the same version: applied
            seat("Z9", "HELD", 4),  # not in the layout: ignored
        ],
    ),
    frame(type="presence", watchers=3),
    frame(type="show", offset="e:3", title="Renamed", status="ON_SALE"),
    frame(type="announcement", offset="e:4", message="Doors at 19:00"),
    frame(type="seats", offset="e:5", changes=[seat("A4", "RESERVED", 3)]),
]
RLE_SNAPSHOT = frame(
    type="snapshot", offset="e:6", encoding="rle", count=4, status="A1H2B1", version="5,6*2,7"
)


def python_model(frames: list[dict[str, Any]]) -> ShowState:
    state = ShowState([s["label"] for s in LAYOUT])
    for each in frames:
        apply(state, each)
    return state


async def test_the_tests_apply_frames_as_live_js_does() -> None:
    async with LiveStore() as store:
        for frames in (FRAMES, [RLE_SNAPSHOT, *FRAMES[1:]], [*FRAMES, RLE_SNAPSHOT]):
            browser = await store.state(LAYOUT, frames)
            model = python_model(frames)
            assert model.seats == browser.seats, frames
            assert {k: model.show.get(k) for k in SHOW_FIELDS} == {
                k: browser.show.get(k) for k in SHOW_FIELDS
            }
