-- Enricher and DLQ control data: versioned per-district privacy policies, the durable record of
-- erasures every replay must respect, and which dead letters were replayed.

-- +goose Up
CREATE TABLE control.policies (
    tenant_id  text NOT NULL REFERENCES control.tenants (id),
    version    int NOT NULL CHECK (version > 0),
    template   text NOT NULL,
    document   jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

-- One row per applied erase command (control topic). No foreign key: an erased district's tenant row
-- may go, its erasure must stay.
CREATE TABLE control.erasures (
    command_id  uuid PRIMARY KEY,
    tenant_id   text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('student', 'district')),
    internal_id uuid,
    issued_at   timestamptz NOT NULL,
    issued_by   text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'student') = (internal_id IS NOT NULL))
);
CREATE INDEX erasures_tenant_id_idx ON control.erasures (tenant_id);

CREATE TABLE control.dlq_replays (
    dlq_topic     text NOT NULL,
    dlq_partition int NOT NULL,
    dlq_offset    bigint NOT NULL,
    tenant_id     text,
    replayed_at   timestamptz NOT NULL DEFAULT now(),
    replayed_by   text NOT NULL,
    PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
);

-- +goose Down
DROP TABLE control.dlq_replays;
DROP TABLE control.erasures;
DROP TABLE control.policies;
