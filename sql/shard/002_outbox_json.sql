-- The outbox holds each change as the JSON text it is published as: `json` keeps the text
-- as written, where `jsonb` parsed it into binary form on insert and printed it back on
-- read, for nothing (measured ~10% of a hold's PostgreSQL CPU).
ALTER TABLE outbox ALTER COLUMN changes TYPE json USING changes::json;
