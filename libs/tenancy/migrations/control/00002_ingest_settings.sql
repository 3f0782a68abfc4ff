-- Ingestion settings of each district, read periodically by every gateway instance: its rate limit
-- (events per second and burst, enforced per instance; NULL means the gateway's configured default) and
-- hot_shards (0: the district's records are keyed by its id alone; N > 0: they spread over N sub-keys
-- tenant_id/shard, chosen by student).

-- +goose Up
ALTER TABLE control.tenants
    ADD COLUMN rate_limit_eps   integer CHECK (rate_limit_eps > 0),
    ADD COLUMN rate_limit_burst integer CHECK (rate_limit_burst > 0),
    ADD COLUMN hot_shards       integer NOT NULL DEFAULT 0 CHECK (hot_shards BETWEEN 0 AND 1024),
    ADD CONSTRAINT tenants_rate_limit_complete CHECK ((rate_limit_eps IS NULL) = (rate_limit_burst IS NULL));

-- +goose Down
ALTER TABLE control.tenants
    DROP CONSTRAINT tenants_rate_limit_complete,
    DROP COLUMN hot_shards,
    DROP COLUMN rate_limit_burst,
    DROP COLUMN rate_limit_eps;
