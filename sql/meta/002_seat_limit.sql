-- Seats one customer may have in live holds and confirmed bookings of a show, together;
-- the shard's copy (shard_shows) is what the claim transactions check.
ALTER TABLE shows
    ADD COLUMN max_seats_per_customer integer NOT NULL DEFAULT 10
        CHECK (max_seats_per_customer BETWEEN 1 AND 10000);
