"""Builds the Starlette app: routes, middleware and the lifespan that owns every resource."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from app.admission import WaitingRooms
from app.booking_queue import BookingQueue
from app.config import Settings
from app.events import Committed
from app.holds import SWEEP_BATCH, BoxOffice
from app.http.api import api_routes
from app.http.errors import EXCEPTION_HANDLERS
from app.http.headers import SecurityHeaders
from app.http.pages import with_preloads
from app.ops.limits import RateLimits
from app.ops.logs import configure_logging
from app.ops.metrics import worker_exiting, worker_starting
from app.ops.observe import ObserveRequests
from app.paths import project_dir
from app.realtime.broker_cluster import connect_redis
from app.realtime.keys import deployment_keys
from app.realtime.service import Realtime
from app.seatmap import SeatMaps
from app.services import Services
from app.shards import ShardRouter
from app.shows import ShowCatalog

log = logging.getLogger("app")

# A request allocates a few hundred container objects, so at CPython's default (700) the
# collector ran on almost every request and its older generations walked the whole heap.
# Not much higher: what survives the young generation is scanned again in the middle one,
# and at 20,000 a burst of thousands of WebSocket connections made those passes ~100 ms.
GC_YOUNG_THRESHOLD = 5_000


def tune_garbage_collector() -> None:
    """Called once the app is up: what is alive now (modules, app, pools) lives as long as
    the process, so gc.freeze() takes it out of every later collection."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


async def sweep_expired_holds(box_office: BoxOffice, interval: float) -> None:
    """Releases lapsed holds in the database (reads already treat them as free)."""
    while True:
        for shard in box_office.router.shards:
            try:
                while await box_office.release_expired_holds(shard) >= SWEEP_BATCH:
                    pass  # a full batch: there may be more
            except Exception:
                log.exception("sweeper failed", extra={"shard": shard.index})
        await asyncio.sleep(interval)


async def reconcile_shows(catalog: ShowCatalog, interval: float) -> None:
    """Repairs what a crash between writing the directory and a shard left behind."""
    while True:
        try:
            await catalog.reconcile()
        except Exception:
            log.exception("reconciling shows failed")
        await asyncio.sleep(interval)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    settings = Settings.from_env()
    worker_starting()
    router = await ShardRouter.connect(settings)
    keys = await deployment_keys(router.meta, settings.redis_prefix, settings.redis_url)
    redis = connect_redis(settings.redis_url, health_check_interval=10)
    realtime = Realtime(settings, router, redis, keys)
    seat_maps = SeatMaps(router, realtime.position)

    def seats_committed(change: Committed) -> None:
        seat_maps.changed(change.show_id)  # this server's next map read sees it at once
        realtime.seats_committed(change)

    catalog = ShowCatalog(router, redis, settings.default_hold_seconds, keys)
    box_office = BoxOffice(
        router, seats_committed, settings.max_hold_extensions, settings.seat_batch
    )
    app.state.services = Services(
        settings=settings,
        router=router,
        redis=redis,
        box_office=box_office,
        catalog=catalog,
        limits=RateLimits(
            settings.rate_limit_user, settings.rate_limit_ip, settings.guest_tokens_per_ip
        ),
        realtime=realtime,
        seat_maps=seat_maps,
        waiting_rooms=WaitingRooms(
            redis,
            keys,
            router,
            settings.jwt_secret,
            realtime.instance_id,
            settings.admission_seconds,
            realtime.customers,
        ),
        booking_queue=BookingQueue(
            redis,
            keys,
            box_office,
            realtime.instance_id,
            realtime.customers,
            claim_idle=settings.booking_claim_idle,
            max_attempts=settings.booking_max_attempts,
            fault_delay=settings.booking_fault_delay,
        ),
    )
    app.router.routes.extend(realtime.routes())
    await realtime.start()
    # 0: this server leaves the sweeping to the others (reads treat lapsed holds as free)
    sweeper = (
        asyncio.create_task(sweep_expired_holds(box_office, settings.sweep_interval))
        if settings.sweep_interval > 0
        else None
    )
    reconciler = (
        asyncio.create_task(reconcile_shows(catalog, settings.reconcile_interval))
        if settings.reconcile_interval > 0
        else None
    )
    # every instance admits (one at a time, by lease) and consumes queued bookings
    waiting_rooms = asyncio.create_task(app.state.services.waiting_rooms.run())
    booking_queue = asyncio.create_task(app.state.services.booking_queue.run())
    tune_garbage_collector()
    log.info("server ready", extra={"shards": len(router.shards)})
    try:
        yield
    finally:
        await app.state.services.booking_queue.stop()
        for task in (sweeper, reconciler, waiting_rooms, booking_queue):
            if task is not None:
                task.cancel()
        await realtime.stop()
        await redis.aclose()
        await router.close()
        worker_exiting()


def page(name: str) -> Route:
    path = {
        "index": "/",
        "map": "/map/{show_id}",
        "kiosk": "/kiosk/{show_id}",
        "admin": "/admin",
        "me": "/me",
        "queue": "/queue/{show_id}",
    }[name]
    static = project_dir("static")
    html = with_preloads((static / f"{name}.html").read_text(), static)

    async def serve(request: Request) -> Response:
        return HTMLResponse(html, headers={"Cache-Control": "no-cache"})

    return Route(path, serve, methods=["GET"], name=f"page_{name}")


def create_app() -> Starlette:
    configure_logging()
    routes = [
        *api_routes(),
        page("index"),
        page("map"),
        page("kiosk"),
        page("admin"),
        page("me"),
        page("queue"),
        Mount("/static", StaticFiles(directory=project_dir("static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.add_middleware(SecurityHeaders, framers=Settings.from_env().frame_ancestors)
    app.add_middleware(ObserveRequests)
    return app
