-- EXPERIMENT, never for a real database: hold_seats() and release_hold() as in
-- sql/shard/functions/seat_transactions.sql but without the outbox row, so a hold publishes
-- nothing to Redis and leaves nothing to delete. Everything else on the hold path still
-- runs: auth, rate limits, routing, the availability check, the hold row, the seat writes
-- and their checks. The refusal paths are left out (the benchmark's seats are always free).
-- It measures what the transactional outbox and the realtime publish cost the hold path:
--   .venv/bin/python loadtests/bench_holds.py --seconds 15 --repeat 3 \
--       --apply-sql loadtests/variants/hold_without_outbox.sql
DROP FUNCTION hold_seats, release_hold;

CREATE FUNCTION hold_seats(
    p_show bigint, p_labels text[], p_hold text, p_user text,
    OUT outcome text, OUT detail text[], OUT hold_until timestamptz,
    OUT event_id bigint, OUT event text
) LANGUAGE plpgsql AS $$
DECLARE
    v_show_status text;
    v_seconds int;
    v_found int;
    v_written int;
BEGIN
    SELECT s.status, s.hold_seconds INTO v_show_status, v_seconds
    FROM shard_shows s WHERE s.show_id = p_show;
    SELECT count(*), array_agg(label ORDER BY label) FILTER (
               WHERE status = 'BOOKED' OR (status = 'HELD' AND held_until > now()))
    INTO v_found, detail
    FROM seats WHERE show_id = p_show AND label = ANY(p_labels);
    IF v_show_status IS DISTINCT FROM 'ON_SALE' OR v_found < cardinality(p_labels)
       OR detail IS NOT NULL THEN
        RAISE EXCEPTION 'this experiment only holds free seats of a show on sale';
    END IF;
    hold_until := now() + make_interval(secs => v_seconds);
    INSERT INTO holds (show_id, id, user_id, seats, expires_at)
    VALUES (p_show, p_hold, p_user, p_labels, hold_until);
    UPDATE seats
    SET status = 'HELD', hold_id = p_hold, held_until = hold_until, booking_id = NULL,
        version = version + 1
    WHERE show_id = p_show AND label = ANY(p_labels)
      AND (status = 'AVAILABLE' OR (status = 'HELD' AND held_until <= now()));
    GET DIAGNOSTICS v_written = ROW_COUNT;
    IF v_written < cardinality(p_labels) THEN
        RAISE EXCEPTION 'another customer took one of these seats a moment ago'
            USING ERRCODE = 'serialization_failure';
    END IF;
    outcome := 'held';
END $$;

CREATE FUNCTION release_hold(
    p_show bigint, p_hold text, p_user text, OUT outcome text, OUT event_id bigint, OUT event text
) LANGUAGE plpgsql AS $$
DECLARE
    v_seats text[];
BEGIN
    DELETE FROM holds
    WHERE show_id = p_show AND id = p_hold AND user_id = p_user AND status = 'ACTIVE'
    RETURNING seats INTO v_seats;
    IF NOT FOUND THEN
        outcome := 'not_found';
        RETURN;
    END IF;
    UPDATE seats
    SET status = 'AVAILABLE', hold_id = NULL, held_until = NULL, version = version + 1
    WHERE show_id = p_show AND label = ANY(v_seats) AND hold_id = p_hold;
    outcome := 'released';
END $$;
