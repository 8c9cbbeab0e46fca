-- Idempotency-Key on POST /admin/shows: the key, the show it made and a hash of the request,
-- so a retried create (a double click, a lost answer) makes one show. Inserted in the same
-- transaction as the show's directory row.
CREATE TABLE show_create_keys (
    key         text        PRIMARY KEY,
    show_id     bigint      NOT NULL REFERENCES shows (id) ON DELETE CASCADE,
    request     text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
