"""The app's lifespan-owned resources, in one object on app.state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from app.admission import WaitingRooms
from app.booking_queue import BookingQueue
from app.config import Settings
from app.holds import BoxOffice
from app.ops.limits import RateLimits
from app.seatmap import SeatMaps
from app.shards import ShardRouter
from app.shows import ShowCatalog

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

    from app.realtime.service import Realtime


@dataclass
class Services:
    settings: Settings
    router: ShardRouter
    redis: aioredis.Redis
    box_office: BoxOffice
    catalog: ShowCatalog
    limits: RateLimits
    realtime: Realtime
    seat_maps: SeatMaps
    waiting_rooms: WaitingRooms
    booking_queue: BookingQueue


def services(conn: HTTPConnection) -> Services:
    found: Services = conn.app.state.services
    return found
