"""The statements the seat transactions share, written once.

sql/shard/functions/seat_transactions.sql is a template: each `{{name}}` in it is one of
the FRAGMENTS below, put in place when the file is applied (app/migrate.py). PL/pgSQL
could share a statement by calling a function instead, but a nested call costs the hold
about 65 us (measured with pgbench, see hold_seats()), so each function gets the text and
runs the statement as if it were written out there. Rules that are one expression
(seat_free(), seat_status_now(), show_allows()) stay SQL functions in the file: PostgreSQL
inlines those where they are called.
"""

from __future__ import annotations

import re
from pathlib import Path

# `{{name}}`: SQL has its own uses for `$` (parameters, dollar quoting), `%` and `@`
PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")


def seat_write(
    *,
    set_: str,
    where: str,
    was: str,
    action: str,
    by: str,
    hold: str = "NULL",
    booking: str = "NULL",
    source: str = "",
) -> str:
    """The one statement that writes seats: the seats (`set_`, with the version bumped) where
    `where` holds, their audit row (`was`: a seat's status before, per seat) and their
    outbox row, which the realtime layer publishes after commit; no audit or outbox row when
    nothing was written. Into the function's event_id and event, and v_written (how many
    seats were written). Every function that writes seats declares p_show and p_request."""
    return f"""WITH changed AS (
        UPDATE seats s
        SET {set_}, version = s.version + 1{source}
        WHERE s.show_id = p_show AND {where}
        RETURNING s.label, s.status, s.version, {was} AS was
    ),
    audited AS (
        INSERT INTO seat_audit (show_id, action, by_user, seats, from_status, to_status,
                                hold_id, booking_id, request_id)
        SELECT p_show, {action}, {by}, array_agg(c.label ORDER BY c.label),
               array_agg(c.was ORDER BY c.label), array_agg(c.status ORDER BY c.label),
               {hold}, {booking}, p_request
        FROM changed c
        HAVING count(*) > 0
    )
    INSERT INTO outbox (show_id, changes)
    SELECT p_show, json_agg(json_build_object('label', c.label, 'status', c.status,
                                              'version', c.version) ORDER BY c.label)
    FROM changed c
    HAVING count(*) > 0
    RETURNING id, changes::text, json_array_length(changes) INTO event_id, event, v_written"""


def earlier_booking(same_request: str) -> str:
    """A retry under an Idempotency-Key the customer used before: the booking it made
    (outcome earlier) if `same_request` holds of it (b), else key_reused."""
    return f"""IF p_key IS NOT NULL THEN
        SELECT * INTO b FROM bookings
        WHERE show_id = p_show AND user_id = p_user AND idempotency_key = p_key;
        IF FOUND THEN
            outcome := CASE WHEN {same_request} THEN 'earlier' ELSE 'key_reused' END;
            booking := row_to_json(b)::text;
            RETURN;
        END IF;
    END IF;"""


FRAGMENTS = {
    # write_seats(): any status; a claim writes only seats free to the caller
    "write_named_seats": seat_write(
        set_="""status = CASE WHEN p_status = 'AVAILABLE' THEN free_status(s.channel)
                          ELSE p_status END,
            hold_id = p_hold, held_until = p_until, booking_id = p_booking""",
        where="""s.label = ANY(p_labels)
          AND (NOT p_claim OR seat_free(s.status, s.held_until, s.channel, p_channels))""",
        was="coalesce(p_from, free_status(s.channel))",
        action="coalesce(p_action, lower(p_status))",
        by="p_by",
        hold="coalesce(p_hold, p_was_hold)",
        booking="coalesce(p_booking, p_was_booking)",
    ),
    # hold_seats(): write_seats(p_show, p_labels, 'HELD', p_hold, hold_until, NULL,
    # p_claim => true, ...)
    "write_held_seats": seat_write(
        set_="status = 'HELD', hold_id = p_hold, held_until = hold_until, booking_id = NULL",
        where="""s.label = ANY(p_labels)
          AND seat_free(s.status, s.held_until, s.channel, p_channels)""",
        was="free_status(s.channel)",
        action="'hold'",
        by="p_user",
        hold="p_hold",
    ),
    # release_hold(): only the seats the hold still owns (once lapsed, a seat may have gone
    # to the next customer)
    "write_released_seats": seat_write(
        set_="status = free_status(s.channel), hold_id = NULL, held_until = NULL",
        where="s.label = ANY(v_seats) AND s.hold_id = p_hold",
        was="'HELD'::text",
        action="'release'",
        by="p_user",
        hold="p_hold",
    ),
    # set_seats(): the seats locked (v_found, their statuses before in v_old) but those
    # held or booked (detail), where the status or channel changes
    "write_admin_seats": seat_write(
        set_="status = p_status, channel = v_channel, hold_id = NULL, held_until = NULL",
        source="\n        FROM unnest(v_found, v_old) AS o(label, status)",
        where="""s.label = o.label
          AND o.label <> ALL(coalesce(detail, '{}'))
          AND (s.status, s.channel) IS DISTINCT FROM (p_status, v_channel)""",
        was="o.status",
        action="'admin'",
        by="p_by",
    ),
    "earlier_confirm": earlier_booking("b.hold_id IS NOT DISTINCT FROM p_hold"),
    "earlier_book": earlier_booking(
        "b.hold_id IS NULL AND b.seats @> p_labels AND b.seats <@ p_labels"
    ),
    # after reading the show's row (v_show_status): none here, or moved to another shard
    # (its row stays here as a tombstone)
    "refuse_missing_show": """IF NOT FOUND THEN
        outcome := 'no_show';
        RETURN;
    END IF;
    IF v_show_status = 'MOVED' THEN
        outcome := 'moved';
        RETURN;
    END IF;""",
    # how many seats the customer has: in live holds and in confirmed bookings (a confirmed
    # hold counts once, as its booking; a lapsed one not at all). An expression with
    # subqueries: an SQL function of it would not be inlined
    "customer_seats": """(SELECT coalesce(sum(cardinality(h.seats)), 0) FROM holds h
            WHERE h.show_id = p_show AND h.user_id = p_user AND h.status = 'ACTIVE'
              AND h.expires_at > now())
         + (SELECT coalesce(sum(cardinality(b.seats)), 0) FROM bookings b
            WHERE b.show_id = p_show AND b.user_id = p_user AND b.status = 'CONFIRMED')""",
    # a claim on a show with single_seat_rule `enforce`: no lone seats. The claim's rows are
    # taken in turn (best_seats() takes the same locks), so two claims in one row cannot
    # each leave a seat the other strands; the statements after these see whatever the
    # row's last claim committed
    "lock_claim_rows": """IF v_rule = 'enforce' THEN
        PERFORM pg_advisory_xact_lock(row_lock(p_show, r.seat_row))
        FROM (SELECT DISTINCT rtrim(l, '0123456789') AS seat_row
              FROM unnest(p_labels) AS l ORDER BY 1) r;
        -- a query of its own, after the locks: an expression in IF reads an older snapshot
        SELECT stranded_seats(p_show, p_labels, p_channels) INTO v_stranded;
    END IF;""",
}


def render(path: Path) -> str:
    """A function file as it is applied: its placeholders filled in (KeyError: a name
    FRAGMENTS does not have)."""
    return PLACEHOLDER.sub(lambda found: FRAGMENTS[found[1]], path.read_text())
