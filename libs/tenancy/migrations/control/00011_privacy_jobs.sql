-- Erasure (and later export) jobs and their verification log. A job is a list of steps, each run against
-- one store and recorded with what it found there before and after; every step is idempotent, so a job
-- whose runner died is resumed by the next runner from its first unfinished step.

-- +goose Up
CREATE TABLE control.privacy_jobs (
    id           uuid PRIMARY KEY,
    kind         text NOT NULL,
    tenant_id    text NOT NULL,
    reason       text NOT NULL DEFAULT '',
    requested_by text NOT NULL,
    status       text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed')),
    error        text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE UNIQUE INDEX privacy_jobs_one_running ON control.privacy_jobs (kind, tenant_id) WHERE status = 'running';

CREATE TABLE control.privacy_job_steps (
    job_id       uuid NOT NULL REFERENCES control.privacy_jobs (id),
    seq          integer NOT NULL,
    step         text NOT NULL,
    store        text NOT NULL,
    found_before bigint,
    found_after  bigint,
    detail       text NOT NULL DEFAULT '',
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    PRIMARY KEY (job_id, seq)
);

-- +goose Down
DROP TABLE control.privacy_job_steps;
DROP TABLE control.privacy_jobs;
