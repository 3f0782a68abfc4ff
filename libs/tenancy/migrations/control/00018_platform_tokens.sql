-- Platform tokens: a dashboard token of the role 'billing' belongs to no district (tenant_id NULL). It
-- reads what spans districts for the vendor's own systems (the usage report, GET /v1/usage; ADR 0023)
-- and nothing of any one district's dashboards. Every district role keeps its district.

-- +goose Up
ALTER TABLE control.dashboard_tokens ALTER COLUMN tenant_id DROP NOT NULL;
ALTER TABLE control.dashboard_tokens DROP CONSTRAINT dashboard_tokens_role_check;
ALTER TABLE control.dashboard_tokens ADD CONSTRAINT dashboard_tokens_role_check
    CHECK (role IN ('district_admin', 'school_admin', 'teacher', 'billing'));
ALTER TABLE control.dashboard_tokens ADD CONSTRAINT dashboard_tokens_platform_scope
    CHECK ((role = 'billing') = (tenant_id IS NULL));

-- +goose Down
DELETE FROM control.dashboard_tokens WHERE tenant_id IS NULL;
ALTER TABLE control.dashboard_tokens DROP CONSTRAINT dashboard_tokens_platform_scope;
ALTER TABLE control.dashboard_tokens DROP CONSTRAINT dashboard_tokens_role_check;
ALTER TABLE control.dashboard_tokens ADD CONSTRAINT dashboard_tokens_role_check
    CHECK (role IN ('district_admin', 'school_admin', 'teacher'));
ALTER TABLE control.dashboard_tokens ALTER COLUMN tenant_id SET NOT NULL;
