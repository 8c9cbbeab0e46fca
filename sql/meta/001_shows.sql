-- Metadata database: the show directory (show -> shard) and the show list.
CREATE TABLE shows (
    id            bigserial PRIMARY KEY,
    title         text        NOT NULL,
    venue         text        NOT NULL,
    starts_at     timestamptz NOT NULL,
    status        text        NOT NULL CHECK (status IN ('SCHEDULED', 'ON_SALE', 'CANCELLED', 'ENDED')),
    hold_seconds  integer     NOT NULL CHECK (hold_seconds BETWEEN 5 AND 3600),
    shard         integer     NOT NULL CHECK (shard >= 0),
    seats_total   integer     NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shows_by_start ON shows (starts_at, id);
CREATE INDEX shows_by_shard ON shows (shard) WHERE status IN ('SCHEDULED', 'ON_SALE');
