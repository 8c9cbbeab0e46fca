-- What a box office needs of its seats (issue 15).
--
-- BLOCKED: off sale (a sound desk, a broken seat). RESERVED: kept for a channel (press,
-- vip, box office), which `channel` names; a RESERVED seat can be held only with a token
-- whose `channels` claim lists it. A channel seat keeps its channel while it is held or
-- booked, so releasing, expiring or cancelling gives it back to its channel, not to
-- general sale; only an admin returns it (status AVAILABLE).
ALTER TABLE seats DROP CONSTRAINT seats_status_check;
ALTER TABLE seats ADD CONSTRAINT seats_status_check
    CHECK (status IN ('AVAILABLE', 'HELD', 'BOOKED', 'BLOCKED', 'RESERVED'));
ALTER TABLE seats ADD COLUMN channel text;
ALTER TABLE seats ADD CONSTRAINT seats_channel_check CHECK (CASE status
    WHEN 'RESERVED' THEN channel IS NOT NULL
    WHEN 'AVAILABLE' THEN channel IS NULL
    WHEN 'BLOCKED' THEN channel IS NULL
    ELSE true END);

-- Best available: a seat's place in the show's order of quality (1 = best). Written when
-- the show is created (app/domain.py's seat_ranks: rows nearest the stage, then seats
-- nearest the centre, a section's own quality first); existing shows get that order here.
ALTER TABLE seats ADD COLUMN rank integer NOT NULL DEFAULT 0;
UPDATE seats s SET rank = r.rank
FROM (
    SELECT show_id, label,
           row_number() OVER (PARTITION BY show_id ORDER BY y, abs(x - centre), x, label) AS rank
    FROM (SELECT show_id, label, x, y,
                 (min(x) OVER (PARTITION BY show_id) + max(x) OVER (PARTITION BY show_id)) / 2
                     AS centre
          FROM seats) c
) r
WHERE (s.show_id, s.label) = (r.show_id, r.label);

-- The no-lone-seat rule: `enforce` refuses a claim that would strand one free seat.
ALTER TABLE shard_shows
    ADD COLUMN single_seat_rule text NOT NULL DEFAULT 'off'
        CHECK (single_seat_rule IN ('off', 'enforce'));

-- The audit trail: one row per seat write (a hold, release, expiry, confirm, booking,
-- cancel or admin change), written in the same statement as the seats it names, with
-- each seat's status before and after (from_status, to_status: in the order of `seats`).
-- One row per transaction rather than per seat: the hold path pays one small insert.
CREATE TABLE seat_audit (
    show_id      bigint      NOT NULL,
    id           bigserial   NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    action       text        NOT NULL,
    by_user      text,
    seats        text[]      NOT NULL,
    from_status  text[]      NOT NULL,
    to_status    text[]      NOT NULL,
    hold_id      text,
    booking_id   text,
    request_id   text,
    PRIMARY KEY (show_id, id)
);
