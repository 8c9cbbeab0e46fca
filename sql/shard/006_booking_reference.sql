-- A booking's reference: 8 characters a person can read out at a counter and type back,
-- from an alphabet without look-alikes (no 0/O, 1/I). Drawn from gen_random_uuid()'s
-- random bytes (8 of its 16, none of the version or variant bits; 32 divides 256, so
-- every character is equally likely): 32^8 ≈ 10^12 references.
CREATE FUNCTION booking_reference() RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT string_agg(substr('ABCDEFGHJKLMNPQRSTUVWXYZ23456789', get_byte(r.b, i) % 32 + 1, 1),
                      '' ORDER BY i)
    FROM (SELECT uuid_send(gen_random_uuid()) AS b) r, unnest(ARRAY[0, 1, 2, 3, 4, 5, 9, 10]) AS i
$$;

-- Set by the column default in the INSERT that makes the booking (the confirm or one-step
-- book on the show's shard), so it commits with the booking; existing bookings get one now.
-- Unique per show (the index carries show_id, as every shard index may on Citus); a
-- collision is a unique violation the caller retries like any lost race. Led by the
-- reference, the same index finds a booking by its reference alone (the box office).
ALTER TABLE bookings ADD COLUMN reference text NOT NULL DEFAULT booking_reference();
CREATE UNIQUE INDEX bookings_by_reference ON bookings (reference, show_id);
