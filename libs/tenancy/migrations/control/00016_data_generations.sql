-- A district's data generation: a counter raised whenever a job may have removed or replaced the
-- district's analytics data (a step of an erasure or export job, or the job, finishing:
-- jobs.Store.FinishStep and Finish; a ClickHouse rebuild, ctl rebuild --store clickhouse). Caches of answers computed from that data (the query service's
-- summary cache, docs/adr/0021) key their entries by it, so a raised generation makes them recompute.

-- +goose Up
CREATE TABLE control.data_generations (
    tenant_id  text PRIMARY KEY,
    generation bigint NOT NULL DEFAULT 0,
    changed_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE control.data_generations;
