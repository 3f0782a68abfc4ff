-- Jobs about one student (an erasure, an access export) name it by its internal id, never by a SIS id: the
-- record of an erasure must not keep what it erased. One job per kind and subject runs at a time. A job an
-- API call queues waits for a runner (status 'queued'); params keeps what the request asked for.

-- +goose Up
ALTER TABLE control.privacy_jobs ADD COLUMN subject text NOT NULL DEFAULT '';
ALTER TABLE control.privacy_jobs ADD COLUMN params jsonb NOT NULL DEFAULT '{}';
ALTER TABLE control.privacy_jobs DROP CONSTRAINT privacy_jobs_status_check;
ALTER TABLE control.privacy_jobs ADD CONSTRAINT privacy_jobs_status_check
    CHECK (status IN ('queued', 'running', 'done', 'failed'));
DROP INDEX control.privacy_jobs_one_running;
CREATE UNIQUE INDEX privacy_jobs_one_running ON control.privacy_jobs (kind, tenant_id, subject)
    WHERE status IN ('queued', 'running');

-- +goose Down
DROP INDEX control.privacy_jobs_one_running;
CREATE UNIQUE INDEX privacy_jobs_one_running ON control.privacy_jobs (kind, tenant_id) WHERE status = 'running';
ALTER TABLE control.privacy_jobs DROP CONSTRAINT privacy_jobs_status_check;
ALTER TABLE control.privacy_jobs ADD CONSTRAINT privacy_jobs_status_check CHECK (status IN ('running', 'done', 'failed'));
ALTER TABLE control.privacy_jobs DROP COLUMN params;
ALTER TABLE control.privacy_jobs DROP COLUMN subject;
