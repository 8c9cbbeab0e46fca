-- Every seat transaction as one function, so a request costs one round trip to its shard.
--
-- The rules every function keeps:
--   * seats are locked with lock_seats(): exactly the seats named, in label order, so two
--     transactions never wait on each other in a cycle; never a show-wide lock;
--   * a seat is written only while locked, and only if it is still owned by the hold or
--     booking doing the writing (a late confirm never takes a seat that was resold);
--   * every seat write goes through write_seats(), which bumps each seat's version and
--     writes the outbox row that the realtime layer publishes after commit;
--   * an expired hold is as good as released: a HELD seat whose held_until has passed
--     counts as free.
-- Each function answers with an `outcome` the caller maps to a response; a refusal
-- changes nothing. `moved` means an admin moved the show to another shard (its
-- shard_shows row stays here as a tombstone): the caller routes again.

-- This file is applied again whenever it changes (app/migrate.py), so it first drops every
-- function it defines.
DROP FUNCTION IF EXISTS lock_seats, not_here, lock_own_hold, write_seats, claim_seats,
    hold_seats, extend_hold, release_hold, confirm_hold, book_seats, cancel_booking,
    expire_holds;

-- (PL/pgSQL rather than SQL functions: PL/pgSQL keeps its plans for the session, a SQL
-- function called from another function is planned again on every call.)
CREATE FUNCTION lock_seats(p_show bigint, p_labels text[])
RETURNS SETOF seats LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
        SELECT * FROM seats
        WHERE show_id = p_show AND label = ANY(p_labels)
        ORDER BY label
        FOR UPDATE;
END $$;

-- The outcome for a hold or booking this shard does not have: `moved` if the show moved
-- away (the caller routes again), else `not_found`.
CREATE FUNCTION not_here(p_show bigint) RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN EXISTS (SELECT 1 FROM shard_shows WHERE show_id = p_show AND status = 'MOVED')
                THEN 'moved' ELSE 'not_found' END
$$;

-- The caller's own hold, locked; all NULL when there is none (someone else's is none too).
CREATE FUNCTION lock_own_hold(p_show bigint, p_hold text, p_user text)
RETURNS holds LANGUAGE plpgsql AS $$
DECLARE
    h holds;
BEGIN
    SELECT * INTO h FROM holds WHERE show_id = p_show AND id = p_hold FOR UPDATE;
    IF FOUND AND h.user_id = p_user THEN
        RETURN h;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION write_seats(
    p_show bigint, p_labels text[], p_status text, p_hold text, p_until timestamptz,
    p_booking text, OUT event_id bigint, OUT event text
) LANGUAGE plpgsql AS $$
BEGIN
    WITH changed AS (
        UPDATE seats
        SET status = p_status, hold_id = p_hold, held_until = p_until, booking_id = p_booking,
            version = version + 1
        WHERE show_id = p_show AND label = ANY(p_labels)
        RETURNING label, status, version
    )
    INSERT INTO outbox (show_id, changes)
    SELECT p_show, jsonb_agg(jsonb_build_object('label', c.label, 'status', c.status,
                                                'version', c.version) ORDER BY c.label)
    FROM changed c
    RETURNING id, changes::text INTO event_id, event;
END $$;

-- Lock the requested seats and say whether they can all be taken now.
-- outcome: ok | no_show | moved | not_on_sale (detail: the show's status) | unknown | taken
CREATE FUNCTION claim_seats(
    p_show bigint, p_labels text[], OUT outcome text, OUT detail text[], OUT hold_seconds int
) LANGUAGE plpgsql AS $$
DECLARE
    v_show_status text;
    v_found int := 0;
    v_taken text[] := '{}';
    r seats;
BEGIN
    SELECT s.status, s.hold_seconds INTO v_show_status, hold_seconds
    FROM shard_shows s WHERE s.show_id = p_show;
    IF NOT FOUND THEN
        outcome := 'no_show';
        RETURN;
    END IF;
    IF v_show_status = 'MOVED' THEN
        outcome := 'moved';
        RETURN;
    END IF;
    IF v_show_status <> 'ON_SALE' THEN
        outcome := 'not_on_sale';
        detail := ARRAY[v_show_status];
        RETURN;
    END IF;
    FOR r IN SELECT * FROM lock_seats(p_show, p_labels) LOOP
        v_found := v_found + 1;
        IF r.status = 'BOOKED' OR (r.status = 'HELD' AND r.held_until > now()) THEN
            v_taken := v_taken || r.label;
        END IF;
    END LOOP;
    IF v_found < cardinality(p_labels) THEN
        outcome := 'unknown';
        detail := ARRAY(
            SELECT l FROM unnest(p_labels) AS l
            WHERE NOT EXISTS (SELECT 1 FROM seats s WHERE s.show_id = p_show AND s.label = l)
            ORDER BY l);
    ELSIF cardinality(v_taken) > 0 THEN
        outcome := 'taken';
        detail := v_taken;
    ELSE
        outcome := 'ok';
    END IF;
END $$;

-- outcome: held | (claim_seats' refusals)
CREATE FUNCTION hold_seats(
    p_show bigint, p_labels text[], p_hold text, p_user text,
    OUT outcome text, OUT detail text[], OUT hold_until timestamptz,
    OUT event_id bigint, OUT event text
) LANGUAGE plpgsql AS $$
DECLARE
    v_seconds int;
BEGIN
    SELECT c.outcome, c.detail, c.hold_seconds INTO outcome, detail, v_seconds
    FROM claim_seats(p_show, p_labels) c;
    IF outcome <> 'ok' THEN
        RETURN;
    END IF;
    hold_until := now() + make_interval(secs => v_seconds);
    INSERT INTO holds (show_id, id, user_id, seats, expires_at)
    VALUES (p_show, p_hold, p_user, p_labels, hold_until);
    SELECT w.event_id, w.event INTO event_id, event
    FROM write_seats(p_show, p_labels, 'HELD', p_hold, hold_until, NULL) w;
    outcome := 'held';
END $$;

-- outcome: extended | not_found | expired | limit
CREATE FUNCTION extend_hold(
    p_show bigint, p_hold text, p_user text, p_max_extensions int,
    OUT outcome text, OUT detail text[], OUT hold_until timestamptz, OUT extensions_used int
) LANGUAGE plpgsql AS $$
DECLARE
    h holds;
BEGIN
    h := lock_own_hold(p_show, p_hold, p_user);
    IF h.id IS NULL THEN
        outcome := not_here(p_show);
        RETURN;
    END IF;
    IF h.status <> 'ACTIVE' OR h.expires_at <= now() THEN
        outcome := 'expired';
        RETURN;
    END IF;
    IF h.extensions >= p_max_extensions THEN
        outcome := 'limit';
        RETURN;
    END IF;
    PERFORM 1 FROM lock_seats(p_show, h.seats);
    hold_until := now() + make_interval(
        secs => (SELECT s.hold_seconds FROM shard_shows s WHERE s.show_id = p_show));
    UPDATE holds SET expires_at = hold_until, extensions = h.extensions + 1
    WHERE show_id = p_show AND id = p_hold;
    UPDATE seats SET held_until = hold_until
    WHERE show_id = p_show AND label = ANY(h.seats) AND hold_id = p_hold;
    outcome := 'extended';
    detail := h.seats;
    extensions_used := h.extensions + 1;
END $$;

-- outcome: released | not_found | not_active
-- A released hold is deleted rather than marked: release is how most holds end, and a
-- delete adds nothing to the holds indexes where a status change adds a new entry to each.
CREATE FUNCTION release_hold(
    p_show bigint, p_hold text, p_user text, OUT outcome text, OUT event_id bigint, OUT event text
) LANGUAGE plpgsql AS $$
DECLARE
    v_seats text[];
    v_owned text[] := '{}';
    r seats;
BEGIN
    DELETE FROM holds
    WHERE show_id = p_show AND id = p_hold AND user_id = p_user AND status = 'ACTIVE'
    RETURNING seats INTO v_seats;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM holds
                   WHERE show_id = p_show AND id = p_hold AND user_id = p_user) THEN
            outcome := 'not_active';
        ELSE
            outcome := not_here(p_show);
        END IF;
        RETURN;
    END IF;
    FOR r IN SELECT * FROM lock_seats(p_show, v_seats) LOOP
        IF r.hold_id = p_hold THEN
            v_owned := v_owned || r.label;
        END IF;
    END LOOP;
    IF cardinality(v_owned) > 0 THEN
        SELECT w.event_id, w.event INTO event_id, event
        FROM write_seats(p_show, v_owned, 'AVAILABLE', NULL, NULL, NULL) w;
    END IF;
    outcome := 'released';
END $$;

-- outcome: confirmed | earlier (a retry: the booking made before) | not_found | expired |
--          key_reused | not_on_sale (booking: the show's status)
CREATE FUNCTION confirm_hold(
    p_show bigint, p_hold text, p_user text, p_booking text, p_key text,
    OUT outcome text, OUT booking text, OUT event_id bigint, OUT event text
) LANGUAGE plpgsql AS $$
DECLARE
    h holds;
    b bookings;
    r seats;
    v_show_status text;
BEGIN
    h := lock_own_hold(p_show, p_hold, p_user);
    IF h.id IS NULL THEN
        outcome := not_here(p_show);
        RETURN;
    END IF;
    IF p_key IS NOT NULL THEN
        SELECT * INTO b FROM bookings
        WHERE show_id = p_show AND user_id = p_user AND idempotency_key = p_key;
        IF FOUND THEN
            outcome := CASE WHEN b.hold_id IS NOT DISTINCT FROM p_hold
                            THEN 'earlier' ELSE 'key_reused' END;
            booking := row_to_json(b)::text;
            RETURN;
        END IF;
    END IF;
    IF h.status = 'CONFIRMED' THEN
        SELECT * INTO b FROM bookings WHERE show_id = p_show AND hold_id = p_hold;
        outcome := 'earlier';
        booking := row_to_json(b)::text;
        RETURN;
    END IF;
    IF h.status <> 'ACTIVE' OR h.expires_at <= now() THEN
        outcome := 'expired';
        RETURN;
    END IF;
    -- a show taken off sale (cancelled, ended) sells nothing more, held or not
    SELECT s.status INTO v_show_status FROM shard_shows s WHERE s.show_id = p_show;
    IF v_show_status <> 'ON_SALE' THEN
        outcome := 'not_on_sale';
        booking := v_show_status;
        RETURN;
    END IF;
    FOR r IN SELECT * FROM lock_seats(p_show, h.seats) LOOP
        IF r.hold_id IS DISTINCT FROM p_hold THEN
            outcome := 'expired';
            RETURN;
        END IF;
    END LOOP;
    INSERT INTO bookings (show_id, id, user_id, hold_id, seats, status, idempotency_key)
    VALUES (p_show, p_booking, p_user, p_hold, h.seats, 'CONFIRMED', p_key)
    RETURNING * INTO b;
    UPDATE holds SET status = 'CONFIRMED' WHERE show_id = p_show AND id = p_hold;
    SELECT w.event_id, w.event INTO event_id, event
    FROM write_seats(p_show, h.seats, 'BOOKED', NULL, NULL, p_booking) w;
    outcome := 'confirmed';
    booking := row_to_json(b)::text;
END $$;

-- The seed's one-step booking. outcome: booked | earlier | (claim_seats' refusals)
CREATE FUNCTION book_seats(
    p_show bigint, p_labels text[], p_user text, p_booking text, p_key text,
    OUT outcome text, OUT detail text[], OUT booking text, OUT event_id bigint, OUT event text
) LANGUAGE plpgsql AS $$
DECLARE
    b bookings;
BEGIN
    IF p_key IS NOT NULL THEN
        SELECT * INTO b FROM bookings
        WHERE show_id = p_show AND user_id = p_user AND idempotency_key = p_key;
        IF FOUND THEN
            outcome := 'earlier';
            booking := row_to_json(b)::text;
            RETURN;
        END IF;
    END IF;
    SELECT c.outcome, c.detail INTO outcome, detail FROM claim_seats(p_show, p_labels) c;
    IF outcome <> 'ok' THEN
        RETURN;
    END IF;
    INSERT INTO bookings (show_id, id, user_id, hold_id, seats, status, idempotency_key)
    VALUES (p_show, p_booking, p_user, NULL, p_labels, 'CONFIRMED', p_key)
    RETURNING * INTO b;
    SELECT w.event_id, w.event INTO event_id, event
    FROM write_seats(p_show, p_labels, 'BOOKED', NULL, NULL, p_booking) w;
    outcome := 'booked';
    booking := row_to_json(b)::text;
END $$;

-- outcome: cancelled | not_found | not_cancellable (detail: the booking's status)
CREATE FUNCTION cancel_booking(
    p_show bigint, p_booking text, p_user text, p_admin boolean,
    OUT outcome text, OUT detail text[], OUT booking text, OUT event_id bigint, OUT event text
) LANGUAGE plpgsql AS $$
DECLARE
    b bookings;
    v_owned text[] := '{}';
    r seats;
BEGIN
    SELECT * INTO b FROM bookings WHERE show_id = p_show AND id = p_booking FOR UPDATE;
    IF NOT FOUND OR (b.user_id <> p_user AND NOT p_admin) THEN
        outcome := not_here(p_show);
        RETURN;
    END IF;
    IF b.status <> 'CONFIRMED' THEN
        outcome := 'not_cancellable';
        detail := ARRAY[b.status];
        RETURN;
    END IF;
    FOR r IN SELECT * FROM lock_seats(p_show, b.seats) LOOP
        IF r.booking_id = p_booking THEN
            v_owned := v_owned || r.label;
        END IF;
    END LOOP;
    UPDATE bookings SET status = 'CANCELLED', updated_at = now()
    WHERE show_id = p_show AND id = p_booking
    RETURNING * INTO b;
    IF cardinality(v_owned) > 0 THEN
        SELECT w.event_id, w.event INTO event_id, event
        FROM write_seats(p_show, v_owned, 'AVAILABLE', NULL, NULL, NULL) w;
    END IF;
    outcome := 'cancelled';
    booking := row_to_json(b)::text;
END $$;

-- The sweeper: release up to p_limit lapsed holds. SKIP LOCKED lets every server sweep at
-- once without two taking the same hold; each show's seats are locked in one label-ordered
-- call, like every other writer. One row per show that changed.
CREATE FUNCTION expire_holds(p_limit int)
RETURNS TABLE (expired_show bigint, expired_holds int, event_id bigint, event text)
LANGUAGE plpgsql AS $$
DECLARE
    g record;
    v_owned text[];
    r seats;
BEGIN
    FOR g IN
        WITH lapsed AS (
            SELECT h.show_id, h.id, h.seats FROM holds h
            WHERE h.status = 'ACTIVE' AND h.expires_at <= now()
            ORDER BY h.expires_at
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        )
        SELECT l.show_id, array_agg(DISTINCT l.id) AS hold_ids,
               array_agg(DISTINCT s) AS labels
        FROM lapsed l, unnest(l.seats) AS s
        GROUP BY l.show_id
        ORDER BY l.show_id
    LOOP
        v_owned := '{}';
        FOR r IN SELECT * FROM lock_seats(g.show_id, g.labels) LOOP
            IF r.hold_id = ANY(g.hold_ids) THEN
                v_owned := v_owned || r.label;
            END IF;
        END LOOP;
        UPDATE holds h SET status = 'EXPIRED'
        WHERE h.show_id = g.show_id AND h.id = ANY(g.hold_ids);
        expired_show := g.show_id;
        expired_holds := cardinality(g.hold_ids);
        event_id := NULL;
        event := NULL;
        IF cardinality(v_owned) > 0 THEN
            SELECT w.event_id, w.event INTO event_id, event
            FROM write_seats(g.show_id, v_owned, 'AVAILABLE', NULL, NULL, NULL) w;
        END IF;
        RETURN NEXT;
    END LOOP;
END $$;
