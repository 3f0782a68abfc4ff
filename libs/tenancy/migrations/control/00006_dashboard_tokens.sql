-- Dashboard tokens: bearer tokens of the query service, each for one district with a role and its scope.
-- Stored like API keys: only the SHA-256 of the secret. A school admin's token names its schools and a
-- teacher's token names the teacher's roster sourced_id (the classes come from roster_enrollments at
-- request time, so a teacher's classes follow the roster).

-- +goose Up
CREATE TABLE control.dashboard_tokens (
    id           text PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES control.tenants (id),
    role         text NOT NULL CHECK (role IN ('district_admin', 'school_admin', 'teacher')),
    school_ids   text[] NOT NULL DEFAULT '{}',
    teacher_id   text,
    label        text NOT NULL DEFAULT '',
    secret_hash  bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz,
    CONSTRAINT dashboard_tokens_school_scope CHECK ((role = 'school_admin') = (cardinality(school_ids) > 0)),
    CONSTRAINT dashboard_tokens_teacher_scope CHECK ((role = 'teacher') = (teacher_id IS NOT NULL))
);
CREATE INDEX dashboard_tokens_tenant_idx ON control.dashboard_tokens (tenant_id);

-- +goose Down
DROP TABLE control.dashboard_tokens;
