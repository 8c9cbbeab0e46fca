"""What the booking core hands to the realtime layer after a commit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Committed:
    """Seat changes committed together with their outbox row on one shard."""

    show_id: int
    shard: int
    outbox_id: int
    changes: list[dict[str, Any]]  # [{"label": "A1", "status": "HELD", "version": 7}]
    committed_at: float
