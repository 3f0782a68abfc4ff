-- Moving a district to another PostgreSQL instance (ctl tenant move, ADR 0028).
--
-- district_offsets, on the instance a district moved to: the offset of each partition below which the
-- district's records are already in the copied state. The sink skips a record of the district below it
-- there, as it skips any record below the instance's own offset (consumer_offsets), so the records the
-- copy holds are never applied twice when this instance's offset of the partition was behind the old one.
--
-- district_moves, on the control instance: the last move of each district, from where to where, whether
-- the placement was switched, and whether the old copy (schema moved_<id> on from_instance) was dropped.

-- +goose Up
CREATE TABLE control.district_offsets (
    consumer    text   NOT NULL,
    tenant_id   text   NOT NULL,
    topic       text   NOT NULL,
    partition   int    NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (consumer, topic, partition, tenant_id)
);

CREATE TABLE control.district_moves (
    tenant_id     text PRIMARY KEY,
    from_instance text NOT NULL,
    to_instance   text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    switched_at   timestamptz,
    dropped_at    timestamptz
);

-- +goose Down
DROP TABLE control.district_moves;
DROP TABLE control.district_offsets;
