-- The key hierarchy that encrypts identifying fields (libs/keyring, ADR 0010). Every key here is stored
-- wrapped: district secrets and KEKs by a master key that never enters the database (master_key_id names
-- it), data keys by their district's KEK. Deleting a person's subject_keys row shreds every copy of their
-- encrypted fields; deleting a district's rows shreds the district.
--
-- district_keys: one row per district, its lookup secret (an HMAC key that turns a SIS id into
-- subject_ref, so this table never names a person) and its current KEK version.
-- district_keks: each KEK version; a data key's KEK cannot be deleted while the data key refers to it.
-- subject_keys: one data key per person of a district; key_id travels in every ciphertext.

-- +goose Up
CREATE TABLE control.district_keys (
    tenant_id      text PRIMARY KEY,
    master_key_id  text NOT NULL,
    wrapped_lookup bytea NOT NULL,
    kek_version    integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE control.district_keks (
    tenant_id     text NOT NULL REFERENCES control.district_keys (tenant_id),
    version       integer NOT NULL,
    master_key_id text NOT NULL,
    wrapped       bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE control.subject_keys (
    key_id      uuid PRIMARY KEY,
    tenant_id   text NOT NULL,
    subject_ref bytea NOT NULL,
    kek_version integer NOT NULL,
    wrapped     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, subject_ref),
    FOREIGN KEY (tenant_id, kek_version) REFERENCES control.district_keks (tenant_id, version)
);
CREATE INDEX subject_keys_kek ON control.subject_keys (tenant_id, kek_version);

-- +goose Down
DROP TABLE control.subject_keys;
DROP TABLE control.district_keks;
DROP TABLE control.district_keys;
