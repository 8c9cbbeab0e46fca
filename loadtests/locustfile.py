"""A swarm of customers for Locust.

    .venv/bin/locust -f loadtests/locustfile.py --headless -u 200 -r 50 -t 60s \\
        --host http://127.0.0.1:4000

Each simulated customer gets a guest token (POST /auth/guest) when it starts, then keeps
doing what people at a box office do: list the shows, open one show's seat map, hold 1-4
random available seats, and then either release the hold, confirm it (with an
Idempotency-Key), or walk away and let it expire.

What counts as a failure: anything but the expected answer of each request. For a hold,
201 and 409 (`seats_unavailable`: someone else was faster, normal contention) are both
fine; for a confirm, 201 and 409 (`hold_expired`) are fine. Every 5xx, every 429, every
401/404/422 is a failure. The run's exit code is non-zero when anything failed
(Locust's default `--exit-code-on-error 1`).

Every simulated user comes from the same IP: run the server with MODEX_RATE_LIMIT_IP=off
(as behind a load balancer that forwards the real client IPs) or the per-IP limit answers
429 to the whole swarm.

Knobs (environment): LOCUST_SHOW_IDS=1,2 restricts the swarm to these shows;
LOCUST_CONFIRM_PCT (30), LOCUST_RELEASE_PCT (50): what happens to a hold (the rest expire).
"""

from __future__ import annotations

import os
import random
import uuid
from typing import Any

from locust import between, events, task
from locust.contrib.fasthttp import FastHttpUser

CONFIRM_PCT = int(os.environ.get("LOCUST_CONFIRM_PCT", "30"))
RELEASE_PCT = int(os.environ.get("LOCUST_RELEASE_PCT", "50"))
ONLY_SHOWS = {int(x) for x in os.environ.get("LOCUST_SHOW_IDS", "").split(",") if x.strip()}

# outcomes worth seeing at the end besides Locust's own table
OUTCOMES: dict[str, int] = {}


def outcome(name: str) -> None:
    OUTCOMES[name] = OUTCOMES.get(name, 0) + 1


@events.quitting.add_listener
def _print_outcomes(environment: Any, **_: Any) -> None:
    if OUTCOMES:
        print("outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(OUTCOMES.items())))


class Customer(FastHttpUser):
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.token = ""
        self.shows: list[int] = []
        with self.client.post("/auth/guest", name="/auth/guest", catch_response=True) as r:
            if r.status_code != 201:
                r.failure(f"guest token: {r.status_code} {r.text[:200]}")
                return
            self.token = r.json()["token"]
        self.auth = {"Authorization": f"Bearer {self.token}"}

    # ---- steps ----

    def list_shows(self) -> None:
        with self.client.get("/shows", name="/shows", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code} {r.text[:200]}")
                return
            shows = r.json()["shows"]
        self.shows = [
            s["id"]
            for s in shows
            if s["status"] == "ON_SALE"
            and (s.get("seats_available") is None or s["seats_available"] > 0)
            and (not ONLY_SHOWS or s["id"] in ONLY_SHOWS)
        ]

    def seat_map(self, show_id: int) -> list[str] | None:
        with self.client.get(
            f"/shows/{show_id}/seats", name="/shows/[id]/seats", catch_response=True
        ) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code} {r.text[:200]}")
                return None
            return [s["label"] for s in r.json()["seats"] if s["status"] == "AVAILABLE"]

    def hold(self, show_id: int, seats: list[str]) -> str | None:
        with self.client.post(
            f"/shows/{show_id}/holds",
            json={"seats": seats},
            headers=self.auth,
            name="/shows/[id]/holds",
            catch_response=True,
        ) as r:
            if r.status_code == 201:
                outcome("hold_created")
                return str(r.json()["hold_id"])
            if r.status_code == 409 and r.json().get("error") == "seats_unavailable":
                outcome("hold_conflict_409")
                r.success()  # someone else got there first: normal
                return None
            r.failure(f"{r.status_code} {r.text[:200]}")
            return None

    def release(self, hold_id: str) -> None:
        with self.client.delete(
            f"/holds/{hold_id}", headers=self.auth, name="/holds/[id]", catch_response=True
        ) as r:
            if r.status_code == 204:
                outcome("released")
            else:
                r.failure(f"{r.status_code} {r.text[:200]}")

    def confirm(self, hold_id: str) -> None:
        headers = {**self.auth, "Idempotency-Key": str(uuid.uuid4())}
        with self.client.post(
            f"/holds/{hold_id}/confirm",
            headers=headers,
            name="/holds/[id]/confirm",
            catch_response=True,
        ) as r:
            if r.status_code == 201:
                outcome("confirmed")
            elif r.status_code == 409:
                outcome("confirm_expired_409")
                r.success()  # the hold lapsed before the customer paid: normal
            else:
                r.failure(f"{r.status_code} {r.text[:200]}")

    # ---- the journey ----

    @task(10)
    def buy(self) -> None:
        if not self.token:
            return
        if not self.shows or random.random() < 0.2:
            self.list_shows()
        if not self.shows:
            return
        show_id = random.choice(self.shows)
        available = self.seat_map(show_id)
        if not available:
            return
        seats = random.sample(available, min(len(available), random.randint(1, 4)))
        hold_id = self.hold(show_id, seats)
        if hold_id is None:
            return
        roll = random.randint(1, 100)
        if roll <= CONFIRM_PCT:
            self.confirm(hold_id)
        elif roll <= CONFIRM_PCT + RELEASE_PCT:
            self.release(hold_id)
        else:
            outcome("left_to_expire")

    @task(2)
    def browse(self) -> None:
        self.list_shows()
