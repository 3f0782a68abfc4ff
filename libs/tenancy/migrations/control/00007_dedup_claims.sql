-- Dedup of client retries across partitions (ADR 0007). hot_changed_at is when a district's hot_shards
-- last changed: while a district is hot, or changed within the enricher's dedup window, its records may
-- arrive on a partition other than the one earlier copies arrived on, so the enricher claims their ids
-- here instead of trusting the per-partition set alone. dedup_epoch counts the changes, in commit order
-- (its one row is updated in the changing transaction): the enricher reads it before committing each
-- batch to learn whether any district switched since it chose how to judge the batch. A trigger keeps
-- both, whoever writes hot_shards.
--
-- dedup_claims holds one row per claimed (tenant, event id): the raw partition and offset of the record
-- that claimed it (-1/-1 for ids copied from the changelog when a district switched), so the same record
-- processed again after an aborted transaction finds its own claim and passes. Rows expire with the window.
-- dedup_backfills records, per district and switch, that the ids the district had before the switch were
-- copied into dedup_claims.

-- +goose Up
ALTER TABLE control.tenants ADD COLUMN hot_changed_at timestamptz;

CREATE TABLE control.dedup_epoch (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    n   bigint NOT NULL
);
INSERT INTO control.dedup_epoch (n) VALUES (0);

-- +goose StatementBegin
CREATE FUNCTION control.note_hot_switch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.hot_changed_at := now();
    UPDATE control.dedup_epoch SET n = n + 1;
    RETURN NEW;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER tenants_hot_switch BEFORE UPDATE OF hot_shards ON control.tenants
    FOR EACH ROW WHEN (OLD.hot_shards IS DISTINCT FROM NEW.hot_shards) EXECUTE FUNCTION control.note_hot_switch();

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
DROP TRIGGER tenants_hot_switch ON control.tenants;
DROP FUNCTION control.note_hot_switch();
DROP TABLE control.dedup_epoch;
ALTER TABLE control.tenants DROP COLUMN hot_changed_at;
