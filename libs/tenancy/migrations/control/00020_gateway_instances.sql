-- Live gateway instances: each running gateway writes its row every refresh (GATEWAY_TENANT_REFRESH) and
-- divides every district's rate limit by the instances seen within GATEWAY_INSTANCE_TTL, so a district's
-- limit holds across instances. A stopping gateway deletes its row; a crashed one's row stops counting
-- after the TTL and is deleted a day later.

-- +goose Up
CREATE TABLE control.gateway_instances (
    id         text PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE control.gateway_instances;
