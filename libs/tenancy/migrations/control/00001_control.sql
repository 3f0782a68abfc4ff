-- Control plane: districts (tenants), their API keys and the Kafka offsets that stores commit with their data.

-- +goose Up
CREATE TABLE control.tenants (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    status        text NOT NULL DEFAULT 'active',
    pseudonym_key bytea NOT NULL CHECK (length(pseudonym_key) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);

CREATE TABLE control.api_keys (
    id           text PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES control.tenants (id),
    source_id    text NOT NULL,
    verbs        text[] NOT NULL,
    secret_hash  bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_keys_tenant_id_idx ON control.api_keys (tenant_id);

CREATE TABLE control.consumer_offsets (
    consumer    text NOT NULL,
    topic       text NOT NULL,
    partition   int NOT NULL,
    next_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);

-- +goose Down
DROP TABLE control.consumer_offsets;
DROP TABLE control.api_keys;
DROP TABLE control.tenants;
