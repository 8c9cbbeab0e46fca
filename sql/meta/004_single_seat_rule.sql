-- The no-lone-seat rule (`off` or `enforce`); the shard's copy (shard_shows) is what the
-- claim transactions check.
ALTER TABLE shows
    ADD COLUMN single_seat_rule text NOT NULL DEFAULT 'off'
        CHECK (single_seat_rule IN ('off', 'enforce'));
