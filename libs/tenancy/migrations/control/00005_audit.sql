-- The audit log: append-only and hash-chained. Each entry's hash is SHA-256 over the previous entry's
-- hash and the entry's own fields (see tenancy.AppendAudit), so editing, removing or reordering an entry
-- breaks the chain from there on, which VerifyAudit reports. Triggers refuse UPDATE, DELETE and TRUNCATE;
-- a superuser who disables them is still caught by the chain, and removing the newest entries by
-- comparing with a head recorded elsewhere (ctl audit verify --head).

-- +goose Up
CREATE TABLE control.audit_log (
    seq       bigint PRIMARY KEY CHECK (seq > 0),
    at        timestamptz NOT NULL,
    actor     text NOT NULL,
    tenant_id text NOT NULL DEFAULT '',
    action    text NOT NULL,
    detail    text NOT NULL,
    prev_hash bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash      bytea NOT NULL CHECK (length(hash) = 32)
);
CREATE INDEX audit_log_tenant_idx ON control.audit_log (tenant_id, seq);

-- +goose StatementBegin
CREATE FUNCTION control.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'control.audit_log is append-only';
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON control.audit_log
    FOR EACH ROW EXECUTE FUNCTION control.audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON control.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION control.audit_log_append_only();

-- +goose Down
DROP TABLE control.audit_log;
DROP FUNCTION control.audit_log_append_only();
