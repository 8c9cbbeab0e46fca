"""What an admin reads about a show's sales: the audit trail of its seats and the sales
report. Both are read on the show's shard; the audit rows are written by the seat
transactions themselves (sql/shard/functions/seat_transactions.sql, seat_audit)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from app import wire
from app.seatmap import SEAT_STATUS_NOW
from app.shards import ShardRouter

AUDIT_LIMIT = 1000  # seat writes read per query, newest first
# a customer's changes: those they made, and the expiry of their holds (made by no one)
AUDIT_OF_SHOW = """
SELECT at, action, by_user, seats, from_status, to_status, hold_id, booking_id, request_id
FROM seat_audit
WHERE show_id = $1
  AND ($2::text IS NULL OR $2 = ANY(seats))
  AND ($3::text IS NULL OR by_user = $3
       OR (action = 'expire' AND string_to_array(hold_id, ' ') && ARRAY(
               SELECT h.id FROM holds h WHERE h.show_id = $1 AND h.user_id = $3)))
ORDER BY id DESC
LIMIT $4
"""

# a lapsed hold reads as given back (to its channel, for a channel seat), as everywhere
SEATS_BY_KIND = f"""
SELECT category, channel, {SEAT_STATUS_NOW} AS status,
       count(*) AS seats, sum(price_cents)::bigint AS cents
FROM seats WHERE show_id = $1
GROUP BY 1, 2, 3
"""
BOOKINGS_AND_HOLDS = """
SELECT (SELECT count(*) FROM bookings WHERE show_id = $1 AND status = 'CONFIRMED') AS bookings,
       count(*) AS holds, coalesce(sum(cardinality(seats)), 0) AS held
FROM holds WHERE show_id = $1 AND status = 'ACTIVE' AND expires_at > now()
"""
SOLD_PER_MINUTE = """
SELECT date_trunc('minute', created_at) AS minute, sum(cardinality(seats))::int AS seats
FROM bookings WHERE show_id = $1 AND status = 'CONFIRMED'
GROUP BY 1 ORDER BY 1
"""
STATUSES = ("AVAILABLE", "HELD", "BOOKED", "BLOCKED", "RESERVED")


class ShowReports:
    def __init__(self, router: ShardRouter) -> None:
        self.router = router

    async def audit(self, show_id: int, query: wire.AuditQuery) -> wire.AuditTrail:
        """Each seat's changes, newest first: one entry per seat of each write."""
        _, shard = await self.router.for_show(show_id)
        async with shard.connection("audit") as conn:
            rows = await conn.fetch(AUDIT_OF_SHOW, show_id, query.seat, query.user, AUDIT_LIMIT)
        changes = [
            wire.AuditEntry(
                seat=seat,
                at=row["at"],
                action=row["action"],
                from_=was,
                to=now,
                by=row["by_user"],
                hold_id=row["hold_id"],
                booking_id=row["booking_id"],
                request_id=row["request_id"],
            )
            for row in rows
            for seat, was, now in zip(
                row["seats"], row["from_status"], row["to_status"], strict=True
            )
            if query.seat is None or seat == query.seat
        ]
        return wire.AuditTrail(show_id, changes)

    async def report(self, show_id: int) -> wire.SalesReport:
        info, shard = await self.router.for_show(show_id)
        async with shard.connection("report") as conn:
            kinds = await conn.fetch(SEATS_BY_KIND, show_id)
            totals = await conn.fetchrow(BOOKINGS_AND_HOLDS, show_id)
            minutes = await conn.fetch(SOLD_PER_MINUTE, show_id)
        by_status = dict.fromkeys(STATUSES, 0)
        categories: dict[str, wire.CategoryLine] = {}
        channels: dict[str, wire.ChannelLine] = {}
        for row in kinds:
            status, seats, cents = row["status"], row["seats"], row["cents"]
            by_status[status] += seats
            line = categories.setdefault(row["category"], wire.CategoryLine(row["category"]))
            line.seats += seats
            setattr(line, status.lower(), getattr(line, status.lower()) + seats)
            if status == "BOOKED":
                line.revenue_cents += cents
            if row["channel"] is not None:
                kept = channels.setdefault(row["channel"], wire.ChannelLine(row["channel"]))
                kept.seats += seats
                if status in ("RESERVED", "HELD", "BOOKED"):
                    setattr(kept, status.lower(), getattr(kept, status.lower()) + seats)
        sold = 0
        sell_through = []
        for row in minutes:
            sold += row["seats"]
            sell_through.append(wire.MinuteSales(row["minute"], row["seats"], sold))
        return wire.SalesReport(
            show_id=show_id,
            at=datetime.now(UTC),
            seats_total=info.seats_total,
            by_status=by_status,
            by_category=sorted(categories.values(), key=lambda c: c.category),
            by_channel=sorted(channels.values(), key=lambda c: c.channel),
            bookings=totals["bookings"],
            revenue_cents=sum(c.revenue_cents for c in categories.values()),
            holds_live=totals["holds"],
            seats_held_live=totals["held"],
            sell_through=sell_through,
        )


def report_csv(report: wire.SalesReport) -> str:
    """The report as one CSV table a spreadsheet opens: a row per figure."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["section", "key", "status", "seats", "revenue_cents", "cumulative_seats"])
    for status, seats in report.by_status.items():
        writer.writerow(["status", "", status, seats, "", ""])
    for c in report.by_category:
        for status in STATUSES:
            writer.writerow(["category", c.category, status, getattr(c, status.lower()), "", ""])
        writer.writerow(["category", c.category, "ALL", c.seats, c.revenue_cents, ""])
    for ch in report.by_channel:
        for status in ("RESERVED", "HELD", "BOOKED"):
            writer.writerow(["channel", ch.channel, status, getattr(ch, status.lower()), "", ""])
    writer.writerow(["bookings", "", "CONFIRMED", report.bookings, report.revenue_cents, ""])
    writer.writerow(["holds_live", str(report.holds_live), "HELD", report.seats_held_live, "", ""])
    for m in report.sell_through:
        writer.writerow(["sell_through", m.minute.isoformat(), "BOOKED", m.seats, "", m.total])
    return out.getvalue()
