"""Extending a hold adds the show's hold length to what is left (issue 19, point 2)."""

from __future__ import annotations

from datetime import datetime

import httpx

from tests.support import auth, create_show


async def test_more_time_adds_the_hold_length_to_the_current_expiry(
    client: httpx.AsyncClient, user: str
) -> None:
    show = await create_show(client, hold_seconds=60)
    made = await client.post(
        f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth(user)
    )
    expiry = datetime.fromisoformat(made.json()["expires_at"])
    for _ in range(2):
        extended = await client.post(f"/holds/{made.json()['hold_id']}/extend", headers=auth(user))
        assert extended.status_code == 200, extended.text
        new_expiry = datetime.fromisoformat(extended.json()["expires_at"])
        # 60 s on top of what was left (before: reset to 60 s from now, which gained ~nothing)
        assert abs((new_expiry - expiry).total_seconds() - 60) < 1, (expiry, new_expiry)
        expiry = new_expiry
    # the number of extensions still caps the total
    refused = await client.post(f"/holds/{made.json()['hold_id']}/extend", headers=auth(user))
    assert refused.status_code == 409
