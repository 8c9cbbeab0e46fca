-- Shard database: every seat, hold and booking of the shows placed here.
-- Every table carries show_id first in its primary key and every query filters by it,
-- so the same schema can be distributed by show_id on Citus.

-- A copy of the fields the hold transaction needs, so it never crosses databases.
CREATE TABLE shard_shows (
    show_id       bigint  PRIMARY KEY,
    status        text    NOT NULL,
    hold_seconds  integer NOT NULL
);

CREATE TABLE seats (
    show_id      bigint  NOT NULL,
    label        text    NOT NULL,
    ord          integer NOT NULL,  -- position in the layout: the map's canonical seat order
    section      text    NOT NULL,
    category     text    NOT NULL,
    price_cents  integer NOT NULL,
    x            real    NOT NULL,
    y            real    NOT NULL,
    status       text    NOT NULL DEFAULT 'AVAILABLE' CHECK (status IN ('AVAILABLE', 'HELD', 'BOOKED')),
    version      bigint  NOT NULL DEFAULT 1,
    hold_id      text,
    held_until   timestamptz,
    booking_id   text,
    PRIMARY KEY (show_id, label),
    -- the invariant in the schema: a held seat names its hold, a booked seat its booking
    CHECK ((status = 'HELD') = (hold_id IS NOT NULL AND held_until IS NOT NULL)),
    CHECK ((status = 'BOOKED') = (booking_id IS NOT NULL))
)
-- room on each page, so a seat's change is a HOT update that touches no index
WITH (fillfactor = 70);
CREATE INDEX seats_in_map_order ON seats (show_id, ord);

CREATE TABLE holds (
    show_id     bigint      NOT NULL,
    id          text        NOT NULL,
    user_id     text        NOT NULL,
    seats       text[]      NOT NULL,
    status      text        NOT NULL DEFAULT 'ACTIVE'
                CHECK (status IN ('ACTIVE', 'RELEASED', 'EXPIRED', 'CONFIRMED')),
    expires_at  timestamptz NOT NULL,
    extensions  integer     NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (show_id, id)
);
-- the sweeper's queue: only live holds are indexed
CREATE INDEX holds_to_expire ON holds (expires_at) WHERE status = 'ACTIVE';

CREATE TABLE bookings (
    show_id          bigint      NOT NULL,
    id               text        NOT NULL,
    user_id          text        NOT NULL,
    hold_id          text,
    seats            text[]      NOT NULL,
    status           text        NOT NULL
                     CHECK (status IN ('PENDING', 'CONFIRMED', 'FAILED', 'CANCELLED')),
    idempotency_key  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (show_id, id)
);
CREATE UNIQUE INDEX bookings_one_per_hold ON bookings (show_id, hold_id) WHERE hold_id IS NOT NULL;
CREATE UNIQUE INDEX bookings_idempotency ON bookings (show_id, user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- GET /me/bookings asks every shard in parallel through this index
CREATE INDEX bookings_by_user ON bookings (user_id, created_at DESC);

-- Transactional outbox: written in the same transaction as the seat change, published to
-- Redis right after commit and deleted; rows left behind are relayed by any live instance.
CREATE TABLE outbox (
    show_id     bigint      NOT NULL,
    id          bigserial   NOT NULL,
    changes     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (show_id, id)
);
-- no index on created_at: rows live for milliseconds, so the relay's scan of this small
-- table is cheaper than maintaining an index on every seat change
