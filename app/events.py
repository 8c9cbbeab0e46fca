"""What the booking core hands to the realtime layer after a commit."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Committed:
    """Seat changes committed together with their outbox row on one shard."""

    show_id: int
    shard: int
    outbox_id: int
    # the outbox row's JSON text: [{"label": "A1", "status": "HELD", "version": 7}, ...]
    changes_json: str
    committed_at: float
