-- Every seat transaction as one function, so a request costs one round trip to its shard.
--
-- The rules every function keeps:
--   * a claim (hold, one-step book) checks the seats without locking, then takes them with
--     one conditional UPDATE (write_seats with p_claim) that locks exactly the seats named,
--     in label order (the primary key's order, which is how the UPDATE reaches them), and
--     writes them only if they are still free; if a racing claim won a seat in between,
--     it raises serialization_failure and the caller retries, and the retry's check
--     reports the seat as taken. Checking first keeps refusals free of writes; not locking
--     before the UPDATE spares a second pass and a WAL record per seat;
--   * every later write (extend, confirm, cancel, expire) locks its seats with
--     lock_seats(): exactly the seats named, in label order; release writes only the seats
--     its hold still owns, guarded in the UPDATE itself; so two transactions never wait on
--     each other in a cycle, and there is never a show-wide lock;
--   * a seat is written only if it is free (a claim) or still owned by the hold or
--     booking doing the writing (a late confirm never takes a seat that was resold);
--   * every seat write is one statement (app/seat_sql.py's seat_write), which bumps each
--     seat's version and writes the outbox row that the realtime layer publishes after
--     commit; write_seats() runs it, and hold_seats(), release_hold() and set_seats() have
--     it put in place (see hold_seats());
--   * an expired hold is as good as released: a HELD seat whose held_until has passed
--     is free at once (seat_status_now(), which the seat maps read too).
--   * a customer has at most the show's max_seats_per_customer seats in live holds and
--     confirmed bookings together (customer_seats' count); a claim first takes the
--     customer's lock on the show (customer_lock()), so one customer's claims on a show
--     take turns and two at once cannot both pass; nothing else takes that lock.
--   * what a show's status allows is show_allows(), and every function asks it.
--   * a seat is free to claim as seat_free() says: AVAILABLE, a lapsed hold, or RESERVED
--     for a channel the caller's token lists; BLOCKED seats are never claimed. A channel
--     seat keeps its channel while held or booked: giving it back makes it RESERVED again.
--   * with the show's single_seat_rule `enforce`, a claim that would strand one free
--     seat is refused (stranded_seats()), read in the claim's transaction.
--   * every seat write adds a seat_audit row in the same statement (who, from, to, the
--     hold or booking, the request id).
--   * a batch of requests (seat_batch(), at the end) locks every row it will write first,
--     with SKIP LOCKED, and hands back whatever it could not lock: it does not wait for
--     a row lock, so it is never part of a wait cycle either.
-- Each function answers with an `outcome` (app/outcomes.py's Outcome) the caller maps to a
-- response, and the columns that outcome names (detail: seats; show_status; seat_limit);
-- a refusal changes nothing. `moved` means an admin moved the show to another shard (its
-- shard_shows row stays here as a tombstone): the caller routes again.

-- This file is a template: each name in double braces is a statement or expression several
-- functions share, written once in app/seat_sql.py and put in place when the file is applied
-- (app/migrate.py), so a rule is said once and the hot path still makes no nested call.
-- It is applied again whenever its rendered text changes, so it first drops every
-- function it defines (and those it once defined).
DROP FUNCTION IF EXISTS lock_seats, not_here, lock_own_hold, write_seats, check_claim,
    claim_seats, hold_seats, extend_hold, release_hold, confirm_hold, book_seats,
    cancel_booking, expire_holds, seat_batch, show_allows, customer_lock, row_lock,
    free_status, seat_status_now, seat_free, stranded_seats, best_seats, set_seats;

-- What a show's status allows: the one place it is said.
--   status      hold, extend, book, confirm    cancel a booking    release a hold
--   SCHEDULED   no                             yes                 yes
--   ON_SALE     yes                            yes                 yes
--   CANCELLED   no                             yes                 yes
--   ENDED       no                             no                  yes
-- Nothing is sold unless the show is on sale. A booking can be cancelled until the show
-- has happened; of a cancelled show too, where cancelling is how a customer gives the
-- booking back (a refund is the seller's business; refusing would leave the customer a
-- booking for a show that will not happen). Admins keep the same rule: after ENDED a
-- booking is a record of who came. Releasing a hold is always allowed (it only gives
-- seats back), and expiry always runs, so neither asks.
-- (An SQL function of one expression: PostgreSQL inlines it where it is called.)
CREATE FUNCTION show_allows(p_status text, p_action text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_action IN ('hold', 'extend', 'book', 'confirm') THEN p_status = 'ON_SALE'
        WHEN p_action = 'cancel' THEN p_status IN ('SCHEDULED', 'ON_SALE', 'CANCELLED')
    END
$$;

-- The key of one customer's advisory lock on one show, taken by every claim for the
-- seat limit (a transaction-scoped lock: released at commit). Another pair may share a
-- key (a 64-bit hash): they then take turns too, which costs nothing but a wait.
CREATE FUNCTION customer_lock(p_show bigint, p_user text) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended(p_user, p_show)
$$;

-- The key of the advisory lock on one row of seats of one show: the claims that must not
-- together strand a seat in a row (single_seat_rule enforce, best available) take turns.
CREATE FUNCTION row_lock(p_show bigint, p_row text) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended('row ' || p_row, p_show)
$$;

-- What a free seat is: a seat kept for a channel is RESERVED, any other AVAILABLE.
CREATE FUNCTION free_status(p_channel text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_channel IS NULL THEN 'AVAILABLE' ELSE 'RESERVED' END
$$;

-- What a seat is right now: a lapsed hold is free at once (an expired hold is as good as
-- released), the sweeper only catches the row up. Every reader of seats (the seat maps,
-- the counts, the sales report: app/seatmap.py, app/reports.py) and every claim go by it.
-- (Each of these is one SQL expression: PostgreSQL inlines it where it is called.)
CREATE FUNCTION seat_status_now(p_status text, p_until timestamptz, p_channel text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_status = 'HELD' AND p_until <= now() THEN free_status(p_channel)
                ELSE p_status END
$$;

-- Whether a seat can be claimed now by a caller whose token lists p_channels: free now
-- (AVAILABLE, or RESERVED for one of the caller's channels), never BLOCKED.
CREATE FUNCTION seat_free(p_status text, p_until timestamptz, p_channel text, p_channels text[])
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT seat_status_now(p_status, p_until, p_channel) IN ('AVAILABLE', 'RESERVED')
           AND (p_channel IS NULL OR coalesce(p_channel = ANY(p_channels), false))
$$;

-- The seats a claim of p_labels would strand: a free seat left alone between the claim and
-- a taken seat, another seat of the claim or the row's end. Spared: a run of free seats the
-- claim takes all but one of (any claim of that many seats there leaves one). Seats are
-- neighbours when they share a row and their numbers follow. A claim takes at most 10
-- seats, so a run it could take all but one of is within 11 seats of each of its seats:
-- the seats within 12 of the claim are enough to decide. (Asked only for shows that
-- enforce the rule: tests/test_single_seat.py checks it against a reference.)
CREATE FUNCTION stranded_seats(p_show bigint, p_labels text[], p_channels text[])
RETURNS text[] LANGUAGE sql STABLE AS $$
    WITH picked AS (
        SELECT rtrim(l, '0123456789') AS seat_row, substring(l FROM '[0-9]+$')::int AS num
        FROM unnest(p_labels) AS l
    ),
    near AS (
        SELECT DISTINCT p.seat_row, p.num + d AS num
        FROM picked p, generate_series(-12, 12) AS d
        WHERE p.num + d >= 0
    ),
    seen AS (  -- `end`: no such seat (past the row's end, or number 0)
        SELECT n.seat_row, n.num,
               CASE WHEN n.seat_row || n.num = ANY(p_labels) THEN 'pick'
                    WHEN s.label IS NULL THEN 'end'
                    WHEN seat_free(s.status, s.held_until, s.channel, p_channels) THEN 'free'
                    ELSE 'taken' END AS state
        FROM near n LEFT JOIN seats s ON s.show_id = p_show AND s.label = n.seat_row || n.num
    ),
    open AS (
        SELECT seat_row, num, state,
               num - row_number() OVER (PARTITION BY seat_row ORDER BY num) AS run
        FROM seen WHERE state IN ('pick', 'free')
    ),
    spared AS (
        SELECT o.seat_row, o.run FROM open o
        GROUP BY o.seat_row, o.run
        HAVING count(*) - count(*) FILTER (WHERE o.state = 'pick') = 1
           -- both ends seen (not the window's edge): the run is no longer than this
           AND EXISTS (SELECT 1 FROM seen s WHERE s.seat_row = o.seat_row AND s.num = min(o.num) - 1)
           AND EXISTS (SELECT 1 FROM seen s WHERE s.seat_row = o.seat_row AND s.num = max(o.num) + 1)
    )
    SELECT coalesce(array_agg(o.seat_row || o.num ORDER BY o.seat_row, o.num), '{}')
    FROM open o
    JOIN seen l ON l.seat_row = o.seat_row AND l.num = o.num - 1 AND l.state <> 'free'
    JOIN seen r ON r.seat_row = o.seat_row AND r.num = o.num + 1 AND r.state <> 'free'
    WHERE o.state = 'free' AND 'pick' IN (l.state, r.state)
      AND NOT EXISTS (SELECT 1 FROM spared sp WHERE (sp.seat_row, sp.run) = (o.seat_row, o.run))
$$;

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

-- Writes the named seats, their outbox row and their audit row, skipping seats that are
-- not free to the caller (p_channels) when p_claim (and then raising if any was skipped:
-- see the rules above). AVAILABLE gives a channel seat back to its channel (RESERVED).
-- p_from: the seats' status before (a claim's: AVAILABLE or RESERVED); p_was_hold and
-- p_was_booking: the hold or booking a seat leaves, for the audit. No outbox or audit
-- row when nothing was written. (Its statement is the one every seat write runs: see
-- app/seat_sql.py.)
CREATE FUNCTION write_seats(
    p_show bigint, p_labels text[], p_status text, p_hold text, p_until timestamptz,
    p_booking text, p_claim boolean DEFAULT false, p_channels text[] DEFAULT '{}',
    p_action text DEFAULT NULL, p_by text DEFAULT NULL, p_request text DEFAULT NULL,
    p_from text DEFAULT NULL, p_was_hold text DEFAULT NULL, p_was_booking text DEFAULT NULL,
    OUT event_id bigint, OUT event text
) LANGUAGE plpgsql AS $$
DECLARE
    v_written int;
BEGIN
    {{write_named_seats}};
    IF p_claim AND coalesce(v_written, 0) < cardinality(p_labels) THEN
        RAISE EXCEPTION 'another customer took one of these seats a moment ago'
            USING ERRCODE = 'serialization_failure';
    END IF;
END $$;

-- Whether the requested seats can all be claimed now by this customer, read without
-- locking the seats (the claim's UPDATE re-checks each seat under its lock), under the
-- customer's lock (held until commit, so the count stays true until the claim is written).
-- outcome: ok | no_show | moved | not_on_sale (show_status) | unknown (detail: the seats)
--          | taken (detail) | channel (detail: seats kept for a channel the caller's
--          token does not list) | seat_limit (seat_limit) | single_seat (detail: the seats
--          it strands)
CREATE FUNCTION check_claim(
    p_show bigint, p_labels text[], p_user text, p_action text, p_channels text[] DEFAULT '{}',
    OUT outcome text, OUT detail text[], OUT show_status text, OUT seat_limit int,
    OUT hold_seconds int
) LANGUAGE plpgsql AS $$
DECLARE
    v_show_status text;
    v_limit int;
    v_rule text;
    v_found int;
    v_taken text[];
    v_kept text[];
    v_mine bigint;
    v_stranded text[];
BEGIN
    -- before any read, so the count below sees every claim of this customer that committed
    PERFORM pg_advisory_xact_lock(customer_lock(p_show, p_user));
    SELECT s.status, s.hold_seconds, s.max_seats_per_customer, s.single_seat_rule
    INTO v_show_status, hold_seconds, v_limit, v_rule
    FROM shard_shows s WHERE s.show_id = p_show;
    {{lock_claim_rows}}
    {{refuse_missing_show}}
    IF NOT show_allows(v_show_status, p_action) THEN
        outcome := 'not_on_sale';
        show_status := v_show_status;
        RETURN;
    END IF;
    SELECT count(*),
           array_agg(label ORDER BY label) FILTER (
               WHERE NOT seat_free(status, held_until, NULL, '{}')),
           array_agg(label ORDER BY label) FILTER (
               WHERE seat_free(status, held_until, NULL, '{}')
                 AND NOT seat_free(status, held_until, channel, p_channels))
    INTO v_found, v_taken, v_kept
    FROM seats WHERE show_id = p_show AND label = ANY(p_labels);
    -- the customer's seats: in live holds and in confirmed bookings (a confirmed hold
    -- counts once, as its booking; a lapsed one not at all)
    SELECT {{customer_seats}} INTO v_mine;
    IF v_found < cardinality(p_labels) THEN
        outcome := 'unknown';
        detail := ARRAY(
            SELECT l FROM unnest(p_labels) AS l
            WHERE NOT EXISTS (SELECT 1 FROM seats s WHERE s.show_id = p_show AND s.label = l)
            ORDER BY l);
    ELSIF v_taken IS NOT NULL THEN
        outcome := 'taken';
        detail := v_taken;
    ELSIF v_kept IS NOT NULL THEN
        outcome := 'channel';
        detail := v_kept;
    ELSIF v_mine + cardinality(p_labels) > v_limit THEN
        outcome := 'seat_limit';
        seat_limit := v_limit;
    ELSIF cardinality(v_stranded) > 0 THEN
        outcome := 'single_seat';
        detail := v_stranded;
    ELSE
        outcome := 'ok';
    END IF;
END $$;

-- outcome: held | (check_claim's refusals)
-- The hot path, so written out in full: calling check_claim() and write_seats() from here
-- cost PostgreSQL as much CPU as everything else the hold does (about 65 us per nested
-- call, measured with pgbench). What they share with it is put in place from the same
-- text (app/seat_sql.py); book_seats() is the same claim through those functions.
CREATE FUNCTION hold_seats(
    p_show bigint, p_labels text[], p_hold text, p_user text, p_channels text[] DEFAULT '{}',
    p_request text DEFAULT NULL,
    OUT outcome text, OUT detail text[], OUT show_status text, OUT seat_limit int,
    OUT hold_until timestamptz, OUT event_id bigint, OUT event text
) LANGUAGE plpgsql AS $$
DECLARE
    v_show_status text;
    v_seconds int;
    v_limit int;
    v_rule text;
    v_open boolean;
    v_found int;
    v_mine bigint;
    v_written int;
    v_stranded text[];
BEGIN
    -- check_claim()'s look, written out: the customer's lock first, then the show, the
    -- seats and the customer's seats
    PERFORM pg_advisory_xact_lock(customer_lock(p_show, p_user));
    SELECT s.status, s.hold_seconds, s.max_seats_per_customer, s.single_seat_rule,
           coalesce(show_allows(s.status, 'hold'), false)
    INTO v_show_status, v_seconds, v_limit, v_rule, v_open
    FROM shard_shows s WHERE s.show_id = p_show;
    {{lock_claim_rows}}
    IF v_open THEN
        SELECT count(*), array_agg(label ORDER BY label) FILTER (
                   WHERE NOT seat_free(status, held_until, channel, p_channels)),
               {{customer_seats}}
        INTO v_found, detail, v_mine
        FROM seats WHERE show_id = p_show AND label = ANY(p_labels);
    END IF;
    IF NOT coalesce(v_open, false) OR v_found < cardinality(p_labels) OR detail IS NOT NULL
       OR v_mine + cardinality(p_labels) > v_limit
       OR cardinality(v_stranded) > 0
    THEN
        -- a refusal: check_claim says which (each statement sees the latest commits, so
        -- its look may find the seats free by now: then start again)
        SELECT c.outcome, c.detail, c.show_status, c.seat_limit
        INTO outcome, detail, show_status, seat_limit
        FROM check_claim(p_show, p_labels, p_user, 'hold', p_channels) c;
        IF outcome = 'ok' THEN
            RAISE EXCEPTION 'these seats changed while this hold was being checked'
                USING ERRCODE = 'serialization_failure';
        END IF;
        RETURN;
    END IF;
    hold_until := now() + make_interval(secs => v_seconds);
    INSERT INTO holds (show_id, id, user_id, seats, expires_at)
    VALUES (p_show, p_hold, p_user, p_labels, hold_until);
    -- write_seats(p_show, p_labels, 'HELD', p_hold, hold_until, NULL, p_claim => true, ...):
    {{write_held_seats}};
    IF coalesce(v_written, 0) < cardinality(p_labels) THEN
        RAISE EXCEPTION 'another customer took one of these seats a moment ago'
            USING ERRCODE = 'serialization_failure';
    END IF;
    outcome := 'held';
END $$;

-- outcome: extended (detail: the seats) | not_found | expired | not_on_sale (show_status)
--          | limit
CREATE FUNCTION extend_hold(
    p_show bigint, p_hold text, p_user text, p_max_extensions int,
    OUT outcome text, OUT detail text[], OUT show_status text, OUT hold_until timestamptz,
    OUT extensions_used int
) LANGUAGE plpgsql AS $$
DECLARE
    h holds;
    v_show_status text;
    v_seconds int;
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
    SELECT s.status, s.hold_seconds INTO v_show_status, v_seconds
    FROM shard_shows s WHERE s.show_id = p_show;
    IF NOT show_allows(v_show_status, 'extend') THEN
        outcome := 'not_on_sale';
        show_status := v_show_status;
        RETURN;
    END IF;
    IF h.extensions >= p_max_extensions THEN
        outcome := 'limit';
        RETURN;
    END IF;
    PERFORM 1 FROM lock_seats(p_show, h.seats);
    -- the show's hold length on top of what is left (extending at 0:27 of 0:30 gives
    -- 0:57, not 0:30 again); the number of extensions caps the total
    hold_until := greatest(h.expires_at, now()) + make_interval(secs => v_seconds);
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
-- The seats are written only where this hold still owns them (once lapsed, a seat may have
-- gone to the next customer).
CREATE FUNCTION release_hold(
    p_show bigint, p_hold text, p_user text, p_request text DEFAULT NULL,
    OUT outcome text, OUT event_id bigint, OUT event text
) LANGUAGE plpgsql AS $$
DECLARE
    v_seats text[];
    v_written int;
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
    -- write_seats()' statement with an owner guard, put in place for the reason given at
    -- hold_seats()
    {{write_released_seats}};
    outcome := 'released';
END $$;

-- outcome: confirmed | earlier (a retry: the booking made before) | not_found | expired |
--          key_reused | not_on_sale (show_status)
CREATE FUNCTION confirm_hold(
    p_show bigint, p_hold text, p_user text, p_booking text, p_key text,
    p_request text DEFAULT NULL,
    OUT outcome text, OUT show_status text, OUT booking text, OUT event_id bigint,
    OUT event text
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
    {{earlier_confirm}}
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
    IF NOT show_allows(v_show_status, 'confirm') THEN
        outcome := 'not_on_sale';
        show_status := v_show_status;
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
    FROM write_seats(p_show, h.seats, 'BOOKED', NULL, NULL, p_booking, p_action => 'confirm',
                     p_by => p_user, p_request => p_request, p_from => 'HELD',
                     p_was_hold => p_hold) w;
    outcome := 'confirmed';
    booking := row_to_json(b)::text;
END $$;

-- The seed's one-step booking.
-- outcome: booked | earlier (a retry: the booking made before) | key_reused (the key made
--          a booking of other seats, or a confirm) | (check_claim's refusals)
CREATE FUNCTION book_seats(
    p_show bigint, p_labels text[], p_user text, p_booking text, p_key text,
    p_channels text[] DEFAULT '{}', p_request text DEFAULT NULL,
    OUT outcome text, OUT detail text[], OUT show_status text, OUT seat_limit int,
    OUT booking text, OUT event_id bigint, OUT event text
) LANGUAGE plpgsql AS $$
DECLARE
    b bookings;
BEGIN
    {{earlier_book}}
    SELECT c.outcome, c.detail, c.show_status, c.seat_limit
    INTO outcome, detail, show_status, seat_limit
    FROM check_claim(p_show, p_labels, p_user, 'book', p_channels) c;
    IF outcome <> 'ok' THEN
        RETURN;
    END IF;
    INSERT INTO bookings (show_id, id, user_id, hold_id, seats, status, idempotency_key)
    VALUES (p_show, p_booking, p_user, NULL, p_labels, 'CONFIRMED', p_key)
    RETURNING * INTO b;
    SELECT w.event_id, w.event INTO event_id, event
    FROM write_seats(p_show, p_labels, 'BOOKED', NULL, NULL, p_booking, p_claim => true,
                     p_channels => p_channels, p_action => 'book', p_by => p_user,
                     p_request => p_request) w;
    outcome := 'booked';
    booking := row_to_json(b)::text;
END $$;

-- outcome: cancelled | not_found | not_cancellable (booking_status) |
--          show_ended (show_status, which allows no cancel: see show_allows)
CREATE FUNCTION cancel_booking(
    p_show bigint, p_booking text, p_user text, p_admin boolean, p_request text DEFAULT NULL,
    OUT outcome text, OUT show_status text, OUT booking_status text, OUT booking text,
    OUT event_id bigint, OUT event text
) LANGUAGE plpgsql AS $$
DECLARE
    b bookings;
    v_owned text[] := '{}';
    r seats;
    v_show_status text;
BEGIN
    SELECT * INTO b FROM bookings WHERE show_id = p_show AND id = p_booking FOR UPDATE;
    IF NOT FOUND OR (b.user_id <> p_user AND NOT p_admin) THEN
        outcome := not_here(p_show);
        RETURN;
    END IF;
    SELECT s.status INTO v_show_status FROM shard_shows s WHERE s.show_id = p_show;
    IF NOT show_allows(v_show_status, 'cancel') THEN
        outcome := 'show_ended';
        show_status := v_show_status;
        RETURN;
    END IF;
    IF b.status <> 'CONFIRMED' THEN
        outcome := 'not_cancellable';
        booking_status := b.status;
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
        FROM write_seats(p_show, v_owned, 'AVAILABLE', NULL, NULL, NULL, p_action => 'cancel',
                         p_by => p_user, p_request => p_request, p_from => 'BOOKED',
                         p_was_booking => p_booking) w;
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
            FROM write_seats(g.show_id, v_owned, 'AVAILABLE', NULL, NULL, NULL,
                             p_action => 'expire', p_from => 'HELD',
                             p_was_hold => array_to_string(g.hold_ids, ' ')) w;
        END IF;
        RETURN NEXT;
    END LOOP;
END $$;

-- Holds, releases, confirms and one-step bookings that reach a shard together, in one
-- transaction: one round trip and one commit for the lot (app/batches.py gathers them).
-- Each runs as hold_seats(), release_hold(), confirm_hold() or book_seats() would alone, in
-- the order given, so each is still all or nothing and a later one sees what an earlier
-- one did.
--
-- A batch does not wait for row locks, so it is never part of a deadlock, and one
-- customer's contended seat never holds up the others: it first locks the holds being
-- released or confirmed, then every seat its requests need (each in key order), all with
-- SKIP LOCKED, and for each claim (hold, book) the customer's lock on the show, with
-- pg_try_advisory_xact_lock. A request whose locks are not all in hand answers `busy`, and
-- the caller tries it in the next batch, then alone, where it waits its turn or gets its
-- refusal; except a claim with a seat that is taken or unknown, which the function refuses
-- without a seat lock. The functions then find every lock they take already held.
--
-- Request i (1..n): p_kinds[i] 'hold' | 'release' | 'confirm' | 'book', p_shows[i],
-- p_ids[i] (the hold id; none for a book), p_users[i]; a claim's seats are
-- p_labels[p_label_ends[i-1] + 1 .. p_label_ends[i]]; the new booking id and the
-- Idempotency-Key of a confirm or book are p_bookings[i] and p_keys[i].
-- One row per request, in order: outcome (the function's, or busy), detail, show_status,
-- seat_limit, hold_until (holds), booking (confirms, books), event_id, event.
CREATE FUNCTION seat_batch(
    p_kinds text[], p_shows bigint[], p_ids text[], p_users text[], p_labels text[],
    p_label_ends int[], p_bookings text[], p_keys text[], p_requests text[] DEFAULT NULL,
    OUT outcome text, OUT detail text[], OUT show_status text, OUT seat_limit int,
    OUT hold_until timestamptz, OUT booking text, OUT event_id bigint, OUT event text
) RETURNS SETOF record LANGUAGE plpgsql
-- should a seat that looked taken be freed and locked again between the check and the
-- claim, the claim would wait: not for long, and then the batch fails and each runs alone
SET lock_timeout = '100ms'
AS $$
DECLARE
    v_ready boolean[];
    v_first int := 1;
BEGIN
    -- (the CTEs are read lazily, but a row seen in `own` or `taken` is a row locked)
    WITH requests AS MATERIALIZED (
        SELECT r.i::int AS i, r.kind, r.show_id, r.id, r.user_id
        FROM unnest(p_kinds, p_shows, p_ids, p_users) WITH ORDINALITY
             AS r(kind, show_id, id, user_id, i)
    ),
    own AS MATERIALIZED (
        SELECT h.show_id, h.id, h.user_id, h.status, h.seats FROM holds h
        WHERE (h.show_id, h.id, h.user_id) IN (
                  SELECT r.show_id, r.id, r.user_id FROM requests r
                  WHERE r.kind IN ('release', 'confirm'))
        ORDER BY h.show_id, h.id
        FOR UPDATE SKIP LOCKED
    ),
    needs AS MATERIALIZED (
        SELECT r.i, r.show_id, l.label
        FROM requests r,
             unnest(p_labels[coalesce(p_label_ends[r.i - 1], 0) + 1 : p_label_ends[r.i]])
             AS l(label)
        WHERE r.kind IN ('hold', 'book')
        UNION ALL
        SELECT r.i, r.show_id, unnest(o.seats)
        FROM requests r JOIN own o ON (o.show_id, o.id, o.user_id) = (r.show_id, r.id, r.user_id)
        WHERE r.kind IN ('release', 'confirm') AND o.status = 'ACTIVE'
    ),
    taken AS MATERIALIZED (
        SELECT s.show_id, s.label FROM seats s
        WHERE (s.show_id, s.label) IN (SELECT n.show_id, n.label FROM needs n)
        ORDER BY s.show_id, s.label
        FOR UPDATE SKIP LOCKED
    )
    SELECT array_agg(
               CASE WHEN r.kind IN ('hold', 'book') THEN
                   -- the customer's lock first (CASE keeps the order: a claim marked ready
                   -- holds it), then the seats: a seat locked elsewhere stops a claim only
                   -- while it looks free: with a seat taken (or unknown), the function
                   -- refuses without a lock
                   CASE WHEN pg_try_advisory_xact_lock(customer_lock(r.show_id, r.user_id))
                   THEN NOT EXISTS (
                       SELECT 1 FROM needs n JOIN seats s USING (show_id, label)
                       WHERE n.i = r.i
                         AND seat_free(s.status, s.held_until, s.channel, '{}')
                         AND NOT EXISTS (
                             SELECT 1 FROM taken t WHERE (t.show_id, t.label) = (n.show_id, n.label)))
                   ELSE false END
               ELSE
                   EXISTS (SELECT 1 FROM own o
                           WHERE (o.show_id, o.id, o.user_id) = (r.show_id, r.id, r.user_id))
                   AND NOT EXISTS (
                       SELECT 1 FROM needs n
                       WHERE n.i = r.i AND NOT EXISTS (
                           SELECT 1 FROM taken t WHERE (t.show_id, t.label) = (n.show_id, n.label)))
               END
               ORDER BY r.i)
    INTO v_ready
    FROM requests r;

    FOR i IN 1 .. cardinality(p_kinds) LOOP
        outcome := 'busy';
        detail := NULL;
        show_status := NULL;
        seat_limit := NULL;
        hold_until := NULL;
        booking := NULL;
        event_id := NULL;
        event := NULL;
        IF NOT v_ready[i] THEN
            NULL;
        ELSIF p_kinds[i] = 'hold' THEN
            SELECT f.outcome, f.detail, f.show_status, f.seat_limit, f.hold_until, f.event_id,
                   f.event
            INTO outcome, detail, show_status, seat_limit, hold_until, event_id, event
            FROM hold_seats(p_shows[i], p_labels[v_first : p_label_ends[i]], p_ids[i],
                            p_users[i], '{}', p_requests[i]) f;
        ELSIF p_kinds[i] = 'release' THEN
            SELECT f.outcome, f.event_id, f.event INTO outcome, event_id, event
            FROM release_hold(p_shows[i], p_ids[i], p_users[i], p_requests[i]) f;
        ELSIF p_kinds[i] = 'confirm' THEN
            SELECT f.outcome, f.show_status, f.booking, f.event_id, f.event
            INTO outcome, show_status, booking, event_id, event
            FROM confirm_hold(p_shows[i], p_ids[i], p_users[i], p_bookings[i], p_keys[i],
                              p_requests[i]) f;
        ELSE
            SELECT f.outcome, f.detail, f.show_status, f.seat_limit, f.booking, f.event_id,
                   f.event
            INTO outcome, detail, show_status, seat_limit, booking, event_id, event
            FROM book_seats(p_shows[i], p_labels[v_first : p_label_ends[i]], p_users[i],
                            p_bookings[i], p_keys[i], p_request => p_requests[i]) f;
        END IF;
        v_first := p_label_ends[i] + 1;
        RETURN NEXT;
    END LOOP;
END $$;

-- Best available: holds p_count seats side by side in one row (of p_category, if given),
-- best first by the seats' rank, never leaving one seat alone in a run when another block
-- avoids it. Callers at once never wait on each other: a row is tried only while no other
-- best-available claim is choosing in it (pg_try_advisory_xact_lock: the row's choices
-- take turns, so two cannot together strand a seat, and each reads the row afresh under
-- it), and a block's seats are locked with SKIP LOCKED; a row or seat in use is passed
-- over. With p_allow_split and no block of p_count, the best blocks of fewer seats,
-- largest first.
-- outcome: held (detail: the seats) | no_adjacent_seats | no_show | moved | not_on_sale
--          (show_status) | seat_limit (seat_limit); raises serialization_failure when each
--          block it found was in use (the caller retries).
CREATE FUNCTION best_seats(
    p_show bigint, p_count int, p_category text, p_allow_split boolean, p_hold text,
    p_user text, p_channels text[] DEFAULT '{}', p_request text DEFAULT NULL,
    OUT outcome text, OUT detail text[], OUT show_status text, OUT seat_limit int,
    OUT hold_until timestamptz, OUT event_id bigint, OUT event text
) LANGUAGE plpgsql AS $$
DECLARE
    v_show_status text;
    v_seconds int;
    v_limit int;
    v_mine bigint;
    v_chosen text[] := '{}';
    v_want int := p_count;
    v_size int := p_count;
    v_got text[];
    v_in_use boolean;
    v_done boolean;
    c record;
BEGIN
    PERFORM pg_advisory_xact_lock(customer_lock(p_show, p_user));
    SELECT s.status, s.hold_seconds, s.max_seats_per_customer
    INTO v_show_status, v_seconds, v_limit
    FROM shard_shows s WHERE s.show_id = p_show;
    {{refuse_missing_show}}
    IF NOT show_allows(v_show_status, 'hold') THEN
        outcome := 'not_on_sale';
        show_status := v_show_status;
        RETURN;
    END IF;
    SELECT {{customer_seats}} INTO v_mine;
    IF v_mine + p_count > v_limit THEN
        outcome := 'seat_limit';
        seat_limit := v_limit;
        RETURN;
    END IF;
    WHILE v_want > 0 LOOP
        v_in_use := false;
        v_done := false;
        -- each row's best block of v_size free seats, the rows' blocks best first
        FOR c IN
            WITH free AS (
                SELECT label, rank, rtrim(label, '0123456789') AS seat_row,
                       substring(label FROM '[0-9]+$')::int AS num
                FROM seats
                WHERE show_id = p_show AND seat_free(status, held_until, channel, p_channels)
                  AND (p_category IS NULL OR category = p_category)
                  AND label <> ALL(v_chosen)
            ),
            runs AS (
                SELECT f.*, f.num - row_number() OVER (PARTITION BY f.seat_row ORDER BY f.num) AS run
                FROM free f
            ),
            sized AS (
                SELECT r.*, count(*) OVER w AS run_len, r.num - min(r.num) OVER w AS before,
                       max(r.num) OVER w - r.num AS after
                FROM runs r WINDOW w AS (PARTITION BY r.seat_row, r.run)
            ),
            blocks AS (
                SELECT s.seat_row, s.num, s.run_len, s.before, s.after - (v_size - 1) AS after,
                       array_agg(s.label) OVER b AS labels, sum(s.rank) OVER b AS score,
                       count(*) OVER b AS n
                FROM sized s
                WINDOW b AS (PARTITION BY s.seat_row, s.run ORDER BY s.num
                             ROWS BETWEEN CURRENT ROW AND v_size - 1 FOLLOWING)
            ),
            best_of_row AS (
                SELECT DISTINCT ON (k.seat_row) k.seat_row, k.labels, k.score,
                       -- one seat left on a side, where the run has room to avoid it
                       ((k.before = 1 OR k.after = 1) AND k.run_len <> v_size + 1) AS lone
                FROM blocks k WHERE k.n = v_size
                ORDER BY k.seat_row, 4, k.score, k.num
            )
            SELECT * FROM best_of_row ORDER BY lone, score, seat_row
        LOOP
            IF NOT pg_try_advisory_xact_lock(row_lock(p_show, c.seat_row)) THEN
                v_in_use := true;
                CONTINUE;
            END IF;
            SELECT array_agg(l.label ORDER BY l.label) INTO v_got FROM (
                SELECT label FROM seats
                WHERE show_id = p_show AND label = ANY(c.labels)
                  AND seat_free(status, held_until, channel, p_channels)
                ORDER BY label
                FOR UPDATE SKIP LOCKED) l;
            -- a seat taken or being taken, or (read afresh under the row's lock) a block
            -- that would now strand a seat: another block, or another try
            IF coalesce(cardinality(v_got), 0) < v_size
               OR (v_size = p_count
                   AND cardinality(stranded_seats(p_show, v_chosen || v_got, p_channels)) > 0)
            THEN
                v_in_use := true;
                CONTINUE;
            END IF;
            v_chosen := v_chosen || v_got;
            v_want := v_want - v_size;
            v_size := least(v_size, v_want);
            v_done := true;
            EXIT;
        END LOOP;
        IF NOT v_done THEN
            IF v_in_use THEN
                RAISE EXCEPTION 'the best seats are being taken by others right now'
                    USING ERRCODE = 'serialization_failure';
            END IF;
            IF p_allow_split AND v_size > 1 THEN
                v_size := v_size - 1;
                CONTINUE;
            END IF;
            outcome := 'no_adjacent_seats';
            RETURN;
        END IF;
    END LOOP;
    v_chosen := ARRAY(SELECT l FROM unnest(v_chosen) AS l ORDER BY l);
    hold_until := now() + make_interval(secs => v_seconds);
    INSERT INTO holds (show_id, id, user_id, seats, expires_at)
    VALUES (p_show, p_hold, p_user, v_chosen, hold_until);
    SELECT w.event_id, w.event INTO event_id, event
    FROM write_seats(p_show, v_chosen, 'HELD', p_hold, hold_until, NULL, p_claim => true,
                     p_channels => p_channels, p_action => 'hold', p_by => p_user,
                     p_request => p_request) w;
    outcome := 'held';
    detail := v_chosen;
END $$;

-- An admin takes seats off sale (BLOCKED), keeps them for a channel (RESERVED, p_channel)
-- or gives them back to general sale (AVAILABLE). p_labels NULL (with AVAILABLE and a
-- channel): every seat of the channel. A seat held (live) or booked cannot be blocked or
-- reserved (outcome taken names them; nothing changes); given back to general sale, it
-- keeps its status and loses its channel, so it is sold generally once free.
-- outcome: changed (event: the seats changed) | no_show | moved | unknown | taken
CREATE FUNCTION set_seats(
    p_show bigint, p_labels text[], p_status text, p_channel text, p_by text, p_request text,
    OUT outcome text, OUT detail text[], OUT event_id bigint, OUT event text
) LANGUAGE plpgsql AS $$
DECLARE
    v_show_status text;
    v_labels text[] := p_labels;
    v_found text[];
    v_old text[];
    v_channel text := CASE WHEN p_status = 'RESERVED' THEN p_channel END;
    v_written int;
BEGIN
    SELECT s.status INTO v_show_status FROM shard_shows s WHERE s.show_id = p_show;
    {{refuse_missing_show}}
    IF v_labels IS NULL THEN
        v_labels := ARRAY(SELECT label FROM seats WHERE show_id = p_show AND channel = p_channel);
    END IF;
    SELECT array_agg(l.label ORDER BY l.label), array_agg(l.status ORDER BY l.label),
           array_agg(l.label ORDER BY l.label) FILTER (
               WHERE seat_status_now(l.status, l.held_until, l.channel) IN ('HELD', 'BOOKED'))
    INTO v_found, v_old, detail
    FROM lock_seats(p_show, v_labels) l;
    IF coalesce(cardinality(v_found), 0) < cardinality(v_labels) THEN
        outcome := 'unknown';
        detail := ARRAY(SELECT l FROM unnest(v_labels) AS l WHERE l <> ALL(coalesce(v_found, '{}'))
                        ORDER BY l);
        RETURN;
    END IF;
    IF detail IS NOT NULL THEN
        IF p_status <> 'AVAILABLE' THEN
            outcome := 'taken';
            RETURN;
        END IF;
        UPDATE seats SET channel = NULL WHERE show_id = p_show AND label = ANY(detail);
    END IF;
    {{write_admin_seats}};
    outcome := 'changed';
    detail := NULL;
END $$;
