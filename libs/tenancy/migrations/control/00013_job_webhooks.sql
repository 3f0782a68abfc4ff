-- Completion webhooks (libs/tenancy/webhooks): a district may name one URL that is told, by a signed POST,
-- when one of its privacy jobs finishes.
--
-- district_webhooks: the URL and the signing secret, stored sealed by a master key (master_key_id names
-- it, as in control.district_keys) and never in plain form. The district's own keys do not seal it: the
-- district's erasure shreds them before the job that reports the erasure finishes.
-- webhook_deliveries: one row per finished job whose district has a webhook: the body (the same on every
-- attempt), the number of attempts and what the last one got, when it was delivered, and when the next
-- attempt is due (NULL once delivered or given up), so that a delivery outlives the process sending it.
-- Removing a district's webhook removes its deliveries.

-- +goose Up
CREATE TABLE control.district_webhooks (
    tenant_id     text PRIMARY KEY REFERENCES control.tenants (id),
    url           text NOT NULL,
    master_key_id text NOT NULL,
    sealed_secret bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE control.webhook_deliveries (
    job_id          uuid PRIMARY KEY REFERENCES control.privacy_jobs (id),
    tenant_id       text NOT NULL REFERENCES control.district_webhooks (tenant_id) ON DELETE CASCADE,
    body            bytea NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    last_status     integer,
    last_error      text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    next_attempt_at timestamptz DEFAULT now()
);
CREATE INDEX webhook_deliveries_undelivered ON control.webhook_deliveries (tenant_id, created_at)
    WHERE delivered_at IS NULL;

-- +goose Down
DROP TABLE control.webhook_deliveries;
DROP TABLE control.district_webhooks;
