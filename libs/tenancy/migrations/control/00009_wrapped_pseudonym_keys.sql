-- A district's pseudonym key moves into the key hierarchy (libs/keyring, ADR 0010): wrapped by the master
-- key beside the district's lookup secret. The plaintext column becomes nullable: the enricher wraps a
-- district's key the first time it loads the district and then clears the plaintext. Keys are only
-- wrapped at run time, since the master keys never reach the database.

-- +goose Up
ALTER TABLE control.district_keys ADD COLUMN wrapped_pseudonym bytea;
ALTER TABLE control.tenants ALTER COLUMN pseudonym_key DROP NOT NULL;

-- +goose Down
ALTER TABLE control.district_keys DROP COLUMN wrapped_pseudonym;
