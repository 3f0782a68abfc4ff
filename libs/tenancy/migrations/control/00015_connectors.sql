-- Connectors (libs/tenancy/connectors, run by services/connector): per district and source, a system
-- the platform pulls from (a OneRoster 1.2 REST provider) or a drop where files are left for it.
--
-- connector_sources: how to reach the source (kind, base URL, token URL, OAuth client id and its secret),
-- the gateway API key the connector sends the source's rosters with (and its id, revoked with the source), and the secret that signs the
-- source's webhooks; every secret sealed by a master key (master_key_id, as in control.district_webhooks:
-- the district's own keys are shredded by its erasure) and never stored in plain form. The schedule
-- (delta_every, full_every), the delta cursor (the newest dateLastModified the last sync saw) and the
-- sync status: when the last attempt and success were, how many attempts failed in a row and why.
-- connector_drops: every file of a drop that was sent, by name and etag, written before the file is
-- moved, so that a crash between sending and moving does not send it twice.

-- +goose Up
CREATE TABLE control.connector_sources (
    tenant_id            text NOT NULL REFERENCES control.tenants (id),
    source_id            text NOT NULL,
    kind                 text NOT NULL CHECK (kind IN ('oneroster-rest', 'file-drop')),
    base_url             text NOT NULL DEFAULT '',
    token_url            text NOT NULL DEFAULT '',
    client_id            text NOT NULL DEFAULT '',
    master_key_id        text NOT NULL,
    sealed_secret        bytea,
    api_key_id           text NOT NULL,
    sealed_api_key       bytea NOT NULL,
    sealed_webhook_key   bytea NOT NULL,
    delta_every          interval NOT NULL,
    full_every           interval NOT NULL,
    cursor               timestamptz,
    last_full_at         timestamptz,
    last_attempt_at      timestamptz,
    last_success_at      timestamptz,
    failures             integer NOT NULL DEFAULT 0,
    status               text NOT NULL DEFAULT 'new',
    last_error           text NOT NULL DEFAULT '',
    created_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, source_id)
);

CREATE TABLE control.connector_drops (
    tenant_id  text NOT NULL,
    source_id  text NOT NULL,
    name       text NOT NULL,
    etag       text NOT NULL,
    outcome    text NOT NULL,
    report     text NOT NULL,
    sent_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, source_id, name, etag),
    FOREIGN KEY (tenant_id, source_id) REFERENCES control.connector_sources (tenant_id, source_id) ON DELETE CASCADE
);

-- +goose Down
DROP TABLE control.connector_drops;
DROP TABLE control.connector_sources;
