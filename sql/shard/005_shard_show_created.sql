-- When a show's rows were written on its shard: the reconciler leaves a show younger than a
-- few minutes alone (its directory row may still be on the way) and removes older rows that
-- no directory entry names.
ALTER TABLE shard_shows ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
