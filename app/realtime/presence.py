"""Presence: how many people watch a show across the cluster. This instance reports its own
counts (kiosks are not counted) and hands the cluster's total to its LIVE watchers
whenever it changes, one encoding per show."""

from __future__ import annotations

from collections.abc import Mapping

from app.realtime.channel import ShowChannel
from app.realtime.frames import Outgoing, Presence, encoder
from app.realtime.subscription import Send, Subscription, SubscriptionState


class PresenceCounts:
    def __init__(self, channels: Mapping[int, ShowChannel], send: Send) -> None:
        self._channels = channels
        self._send = send
        self._reported: set[int] = set()  # shows whose presence this instance reported

    def local_counts(self) -> list[tuple[int, int]]:
        """This instance's watcher count per show, including shows it just stopped
        watching (reported once as 0 so the cluster count drops at once)."""
        counts = {
            show_id: sum(sub.counted for sub in channel.subs)
            for show_id, channel in self._channels.items()
        }
        for show_id in self._reported - counts.keys():
            counts[show_id] = 0
        self._reported = {show_id for show_id, count in counts.items() if count}
        return list(counts.items())

    def update(self, totals: dict[int, int]) -> None:
        """The cluster's totals: each LIVE watcher gets its show's when it changed."""
        for show_id, total in totals.items():
            channel = self._channels.get(show_id)
            if channel is None:
                continue
            channel.presence = total
            out: Outgoing | None = None
            # a copy: a sink that raises is unwatched, which takes it out of channel.subs
            for sub in list(channel.subs):
                if sub.state is SubscriptionState.LIVE and sub.presence_sent != total:
                    if out is None:
                        out = _presence_frame(show_id, total)
                    self._send_total(sub, total, out)

    def greet(self, channel: ShowChannel, sub: Subscription) -> None:
        """A watcher that just went LIVE gets the last total, if there is one yet."""
        if channel.presence >= 0:
            self._send_total(sub, channel.presence, _presence_frame(sub.show_id, channel.presence))

    def _send_total(self, sub: Subscription, total: int, out: Outgoing) -> None:
        sub.presence_sent = total
        self._send(sub, out)


def _presence_frame(show_id: int, total: int) -> Outgoing:
    return Outgoing(encoder.encode(Presence(show_id=show_id, watchers=total)).decode())
