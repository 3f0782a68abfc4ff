-- Dedup of client retries across partitions (ADR 0007). hot_changed_at is when a district's hot_shards
-- last changed: while a district is hot, or changed within the enricher's dedup window, its records may
-- arrive on a partition other than the one earlier copies arrived on, so the enricher claims their ids
-- here instead of trusting the per-partition set alone.
--
-- dedup_claims holds one row per claimed (tenant, event id): the raw partition and offset of the record
-- that claimed it (-1/-1 for ids copied from the changelog when a district switched), so the same record
-- processed again after an aborted transaction finds its own claim and passes. Rows expire with the window.
-- dedup_backfills records, per district and switch, that the ids the district had before the switch were
-- copied into dedup_claims.

-- +goose Up
ALTER TABLE control.tenants ADD COLUMN hot_changed_at timestamptz;

CREATE TABLE control.dedup_claims (
    tenant_id     text NOT NULL,
    event_id      text NOT NULL,
    raw_partition integer NOT NULL,
    raw_offset    bigint NOT NULL,
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX dedup_claims_expires_at_idx ON control.dedup_claims (expires_at);

CREATE TABLE control.dedup_backfills (
    tenant_id  text NOT NULL,
    changed_at timestamptz NOT NULL,
    entries    bigint NOT NULL,
    done_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, changed_at)
);

-- +goose Down
DROP TABLE control.dedup_backfills;
DROP TABLE control.dedup_claims;
ALTER TABLE control.tenants DROP COLUMN hot_changed_at;
