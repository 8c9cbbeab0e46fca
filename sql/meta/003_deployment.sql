-- This deployment's id: random, written once, read by every instance at start-up. It names
-- the deployment's keys and channels in a Redis that other deployments may share
-- (app/realtime/keys.py; MODEX_REDIS_PREFIX overrides it). The one row is the table's
-- whole content: `one` admits a single value.
CREATE TABLE deployment (
    one         boolean     PRIMARY KEY DEFAULT true CHECK (one),
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO deployment DEFAULT VALUES;
