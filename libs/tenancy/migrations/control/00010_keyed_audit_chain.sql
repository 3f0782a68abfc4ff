-- The audit chain is keyed (ADR 0010): each new entry's hash is an HMAC-SHA256 under the audit key, which
-- is stored wrapped by the master key (libs/keyring), so someone who can write the table cannot compute
-- a valid entry. Entries written before keep their SHA-256 chain (keyed = false); an unkeyed entry after
-- a keyed one is a break.

-- +goose Up
ALTER TABLE control.audit_log ADD COLUMN keyed boolean NOT NULL DEFAULT false;

CREATE TABLE control.audit_key (
    one           boolean PRIMARY KEY DEFAULT true CHECK (one),
    master_key_id text NOT NULL,
    wrapped       bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE control.audit_key;
ALTER TABLE control.audit_log DROP COLUMN keyed;
