"""The seat-map suite for Locust: watchers, buyers, kiosks and admins over HTTP and /ws.

    locust -f loadtests/locustfile.py --headless -u 1000 -r 100 -t 2m \\
        --hosts http://127.0.0.1:4001,http://127.0.0.1:4002 --processes 2

loadtests/README.md ("Locust suite") has the server to start, the shapes (steady, ramp,
on-sale spike), the web UI and distributed commands, and what every option does.

Users (pick them with --class-picker in the web UI, or name them: `... Watcher Buyer`):
- Watcher (weight 70): opens a show's map over HTTP, subscribes over /ws from the map's
  offset, stays --watch-seconds, leaves, comes back; resumes by offset when dropped.
  Every seat change frame is a `WS seats` request whose time is commit-to-receive.
- Buyer (25): lists shows, opens a map, holds 1-4 seats it believes free (--race-pct of
  holds go for the first free seats, so buyers race on purpose), sometimes extends, then
  confirms with an Idempotency-Key, releases, or walks away. A 409 from a race or an
  expiry is a success under its own name (`... (409 seats_unavailable)`), not a failure.
  A customer who bought leaves; the next one gets a guest token of its own.
- Kiosk (4): one long-lived watcher per venue display that never leaves; its reconnects
  and resyncs show as `WS kiosk reconnect` / `WS kiosk resync`.
- Admin (1): now and then changes the show's title or broadcasts; both carry their send
  time, so watchers report `WS show` / `WS announcement` delivery times.

When the run ends the invariants are judged (locust_run.py) and a broken one makes the
exit code 3; any failed request makes it 1 (Locust's --exit-code-on-error).
"""

from __future__ import annotations

import random
import re
import uuid
from typing import Any

import gevent
import orjson
from locust import between, constant, task
from locust.contrib.fasthttp import FastHttpUser, ResponseContextManager
from locust.env import Environment
from locust.runners import STATE_RUNNING, STATE_SPAWNING
from locust_live import LiveMap, now_ms, seats_of
from locust_run import admin_token, http_hosts, option, run_of, show_ids, span, ws_hosts

TITLE_MARK = re.compile(r" \[locust \d{13}\]$")


def renamed(response: ResponseContextManager, outcome: str) -> None:
    """An expected refusal: a success, counted under a name of its own."""
    response.request_meta["name"] += f" ({outcome})"
    response.success()


def fail(response: ResponseContextManager) -> None:
    response.failure(f"{response.status_code} {(response.text or '')[:200]}")


def error_code(response: ResponseContextManager) -> str:
    try:
        return str(orjson.loads(response.content or b"{}").get("error", ""))
    except orjson.JSONDecodeError:
        return ""


class SeatMapUser(FastHttpUser):
    """A user on one of the servers (--hosts, taken in turn, as a load balancer would)."""

    abstract = True

    def __init__(self, environment: Environment) -> None:
        self.suite = run_of(environment)
        self.number = next(self.suite.user_number)
        hosts = http_hosts(environment)
        self.host = hosts[self.number % len(hosts)]
        self.ws_url = ws_hosts(environment)[self.number % len(ws_hosts(environment))]
        super().__init__(environment)

    def shows(self) -> list[int]:
        """The run's shows; empty until the master has set them up."""
        found = show_ids(self.environment)
        if not found:
            gevent.sleep(1.0)
        return found

    def read_map(self, show_id: int) -> dict[str, Any] | None:
        with self.client.get(
            f"/shows/{show_id}/seats", name="/shows/[id]/seats", catch_response=True
        ) as r:
            if r.status_code != 200:
                fail(r)
                return None
            body: dict[str, Any] = orjson.loads(r.content or b"{}")
            return body

    def open_live(self, show_id: int, role: str, token: str = "") -> LiveMap | None:
        """The map over HTTP, then live from its offset over /ws (as the pages do)."""
        body = self.read_map(show_id)
        if body is None:
            return None
        live = LiveMap(
            self.environment.events,
            self.ws_url,
            show_id,
            role,
            seats_of(body["seats"]),
            body["offset"],
            token or None,
        )
        try:
            live.open()
        except Exception:
            return None  # reported as a failed `WS <role> connect`
        self.suite.live_maps.append(live)
        return live


class Watcher(SeatMapUser):
    weight = 70
    wait_time = between(1, 5)

    @task
    def watch(self) -> None:
        shows = self.shows()
        if not shows:
            return
        live = self.open_live(random.choice(shows), "watcher")
        if live is None:
            return
        self.live = live
        gevent.sleep(random.uniform(*span(option(self.environment, "watch_seconds"))))
        self.leave()

    live: LiveMap | None = None

    def leave(self) -> None:
        if self.live is not None:
            self.live.close()
            self.suite.live_maps.remove(self.live)
            self.live = None

    def on_stop(self) -> None:
        # stopped while the run goes on (fewer users): it leaves; stopped by the end of the
        # run: it stays open for the final check
        if self.environment.runner is not None and self.environment.runner.state in (
            STATE_SPAWNING,
            STATE_RUNNING,
        ):
            self.leave()


class Kiosk(SeatMapUser):
    weight = 4
    wait_time = constant(0)

    live: LiveMap | None = None

    @task
    def display(self) -> None:
        if self.live is None:
            shows = self.shows()
            if not shows:
                return
            show_id = shows[self.number % len(shows)]
            self.live = self.open_live(show_id, "kiosk", option(self.environment, "kiosk_token"))
            if self.live is None:
                gevent.sleep(random.uniform(1, 2))
                return
        # it never leaves; its reader greenlet keeps the map and reconnects when dropped
        gevent.sleep(60)


class Buyer(SeatMapUser):
    weight = 25
    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.new_customer()

    def new_customer(self) -> None:
        self.auth: dict[str, str] = {}
        with self.client.post("/auth/guest", name="/auth/guest", catch_response=True) as r:
            if r.status_code != 201:
                r.failure(f"guest token: {r.status_code} {r.text[:200] if r.text else ''}")
                return
            self.auth = {"Authorization": f"Bearer {orjson.loads(r.content or b'{}')['token']}"}

    @task
    def buy(self) -> None:
        if not self.auth:
            self.new_customer()
            return
        shows = self.shows()
        if not shows:
            return
        if random.random() < 0.2:
            self.client.get("/shows", name="/shows")
        show_id = random.choice(shows)
        seat_map = self.read_map(show_id)
        if seat_map is None:
            return
        free = [s["label"] for s in seat_map["seats"] if s["status"] == "AVAILABLE"]
        if not free:
            return  # sold out: this customer only looks
        count = random.randint(1, min(4, len(free)))
        racing = random.randint(1, 100) <= option(self.environment, "race_pct")
        seats = free[:count] if racing else random.sample(free, count)
        hold_id = self.hold(show_id, seats)
        if hold_id is None:
            return
        gevent.sleep(random.uniform(0.5, 3.0))  # the customer looks at what they hold
        if random.randint(1, 100) <= option(self.environment, "extend_pct"):
            self.extend(hold_id)
        roll = random.randint(1, 100)
        confirm_pct = option(self.environment, "confirm_pct")
        if roll <= confirm_pct:
            self.confirm(show_id, hold_id, seats)
        elif roll <= confirm_pct + option(self.environment, "release_pct"):
            self.release(hold_id)
        # else: walks away, the hold lapses

    def hold(self, show_id: int, seats: list[str]) -> str | None:
        with self.client.post(
            f"/shows/{show_id}/holds",
            json={"seats": seats},
            headers=self.auth,
            name="/shows/[id]/holds",
            catch_response=True,
        ) as r:
            if r.status_code == 201:
                return str(orjson.loads(r.content or b"{}")["hold_id"])
            code = error_code(r)
            if r.status_code == 409 and code in ("seats_unavailable", "contention", "seat_limit"):
                renamed(r, f"409 {code}")
                if code == "seat_limit":
                    self.new_customer()
            else:
                fail(r)
            return None

    def extend(self, hold_id: str) -> None:
        with self.client.post(
            f"/holds/{hold_id}/extend",
            headers=self.auth,
            name="/holds/[id]/extend",
            catch_response=True,
        ) as r:
            if r.status_code == 409 and error_code(r) in ("hold_expired", "extend_limit_reached"):
                renamed(r, f"409 {error_code(r)}")
            elif r.status_code != 200:
                fail(r)

    def release(self, hold_id: str) -> None:
        with self.client.delete(
            f"/holds/{hold_id}", headers=self.auth, name="/holds/[id]", catch_response=True
        ) as r:
            if r.status_code != 204:
                fail(r)

    def confirm(self, show_id: int, hold_id: str, seats: list[str]) -> None:
        """Confirm with an Idempotency-Key. A lost answer (no response, a 5xx) is asked
        again with the same key, as a client would; now and then a repeat checks that the
        key names the same booking."""
        headers = {**self.auth, "Idempotency-Key": str(uuid.uuid4())}
        # a confirm cut off by the end of the run may have booked: the check knows its seats
        self.suite.in_flight[hold_id] = (show_id, seats)
        booking, lost = self.ask_confirm(show_id, hold_id, headers, "")
        if lost:
            booking, _ = self.ask_confirm(show_id, hold_id, headers, "retry")
        del self.suite.in_flight[hold_id]
        if booking is None:
            return
        if random.random() < 0.1:
            self.ask_confirm(show_id, hold_id, headers, "repeat", booking)
        self.new_customer()  # this customer is done; the next one arrives

    def ask_confirm(
        self,
        show_id: int,
        hold_id: str,
        headers: dict[str, str],
        attempt: str,
        expected: str | None = None,
    ) -> tuple[str | None, bool]:
        """(the booking id or None, whether the answer was lost)."""
        with self.client.post(
            f"/holds/{hold_id}/confirm",
            headers=headers,
            name="/holds/[id]/confirm" + (f" ({attempt})" if attempt else ""),
            catch_response=True,
        ) as r:
            if r.status_code in (200, 201):
                body = orjson.loads(r.content or b"{}")
                booking = str(body["id"])
                if expected is not None and booking != expected:
                    r.failure(f"the same Idempotency-Key named {booking}, not {expected}")
                self.suite.record_booking(show_id, body["seats"], booking)
                return booking, False
            if r.status_code == 409 and error_code(r) == "hold_expired":
                renamed(r, "409 hold_expired")
                return None, False
            fail(r)
            return None, not r.status_code or r.status_code >= 500


class Admin(SeatMapUser):
    weight = 1
    wait_time = between(5, 15)

    def on_start(self) -> None:
        self.auth = {"Authorization": f"Bearer {admin_token(self.environment)}"}

    @task
    def broadcast(self) -> None:
        shows = self.shows()
        if not shows:
            return
        with self.client.post(
            f"/admin/shows/{random.choice(shows)}/broadcast",
            json={"message": f"locust {int(now_ms())} from admin {self.number}"},
            headers=self.auth,
            name="/admin/shows/[id]/broadcast",
            catch_response=True,
        ) as r:
            if r.status_code != 202:
                fail(r)

    @task
    def change_show(self) -> None:
        shows = self.shows()
        if not shows:
            return
        show_id = random.choice(shows)
        with self.client.get(f"/shows/{show_id}", name="/shows/[id]", catch_response=True) as r:
            if r.status_code != 200:
                fail(r)
                return
            title = TITLE_MARK.sub("", orjson.loads(r.content or b"{}")["title"])[:170]
        with self.client.request(
            "PATCH",
            f"/admin/shows/{show_id}",
            json={"title": f"{title} [locust {int(now_ms())}]"},
            headers=self.auth,
            name="/admin/shows/[id]",
            catch_response=True,
        ) as r:
            if r.status_code != 200:
                fail(r)
