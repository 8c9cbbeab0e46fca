-- Seats one customer may have in live holds and confirmed bookings of a show, together
-- (checked by the claim transactions in functions/seat_transactions.sql).
ALTER TABLE shard_shows
    ADD COLUMN max_seats_per_customer integer NOT NULL DEFAULT 10
        CHECK (max_seats_per_customer BETWEEN 1 AND 10000);
-- A customer's live holds of a show, for that count: only live holds are indexed, so the
-- index stays the size of what is held right now.
CREATE INDEX holds_live_by_user ON holds (show_id, user_id) WHERE status = 'ACTIVE';
