-- Parent tokens: a dashboard token of the role 'parent' reads the pages of the students it names, by their
-- roster sourced_ids (a parent's children), and nothing else of the district.

-- +goose Up
ALTER TABLE control.dashboard_tokens ADD COLUMN student_ids text[] NOT NULL DEFAULT '{}';
ALTER TABLE control.dashboard_tokens DROP CONSTRAINT dashboard_tokens_role_check;
ALTER TABLE control.dashboard_tokens ADD CONSTRAINT dashboard_tokens_role_check
    CHECK (role IN ('district_admin', 'school_admin', 'teacher', 'parent', 'billing'));
ALTER TABLE control.dashboard_tokens ADD CONSTRAINT dashboard_tokens_parent_scope
    CHECK ((role = 'parent') = (cardinality(student_ids) > 0));

-- +goose Down
DELETE FROM control.dashboard_tokens WHERE role = 'parent';
ALTER TABLE control.dashboard_tokens DROP CONSTRAINT dashboard_tokens_parent_scope;
ALTER TABLE control.dashboard_tokens DROP CONSTRAINT dashboard_tokens_role_check;
ALTER TABLE control.dashboard_tokens ADD CONSTRAINT dashboard_tokens_role_check
    CHECK (role IN ('district_admin', 'school_admin', 'teacher', 'billing'));
ALTER TABLE control.dashboard_tokens DROP COLUMN student_ids;
