-- The enricher's state in the district schema: identity lifecycle columns, and the roster context it
-- joins to events (enricher_*: only the enricher writes them, from raw, before any policy applies; the
-- sink's roster_* tables are the district's roster state as enriched). Rows are upserted idempotently: a
-- record applies only when its date_last_modified is not older than the stored row's, and status
-- 'tobedeleted' stays as a tombstone (ignored by joins) so that replaying an older record cannot bring a
-- deleted entity back.

-- +goose Up
ALTER TABLE students
    ADD COLUMN erased_at   timestamptz,
    ADD COLUMN merged_into uuid;

CREATE TABLE enricher_users (
    source_id          text NOT NULL,
    sourced_id         text NOT NULL,
    internal_id        uuid NOT NULL,
    status             text NOT NULL,
    date_last_modified timestamptz NOT NULL,
    is_student         boolean NOT NULL,
    birth_date         date,
    grades             text[] NOT NULL DEFAULT '{}',
    consent            text,
    PRIMARY KEY (source_id, sourced_id)
);
CREATE INDEX enricher_users_internal_id_idx ON enricher_users (internal_id);

CREATE TABLE enricher_demographics (
    source_id          text NOT NULL,
    sourced_id         text NOT NULL,
    internal_id        uuid NOT NULL,
    status             text NOT NULL,
    date_last_modified timestamptz NOT NULL,
    birth_date         date,
    PRIMARY KEY (source_id, sourced_id)
);
CREATE INDEX enricher_demographics_internal_id_idx ON enricher_demographics (internal_id);

CREATE TABLE enricher_enrollments (
    sourced_id         text PRIMARY KEY,
    status             text NOT NULL,
    date_last_modified timestamptz NOT NULL,
    class_sourced_id   text NOT NULL,
    school_sourced_id  text NOT NULL,
    internal_id        uuid NOT NULL,
    role               text NOT NULL,
    is_primary         boolean,
    begin_date         date,
    end_date           date
);
CREATE INDEX enricher_enrollments_internal_id_idx ON enricher_enrollments (internal_id);

CREATE TABLE enricher_classes (
    sourced_id         text PRIMARY KEY,
    status             text NOT NULL,
    date_last_modified timestamptz NOT NULL,
    school_sourced_id  text NOT NULL,
    course_sourced_id  text NOT NULL,
    grades             text[] NOT NULL DEFAULT '{}',
    term_sourced_ids   text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE enricher_courses (
    sourced_id         text PRIMARY KEY,
    status             text NOT NULL,
    date_last_modified timestamptz NOT NULL,
    org_sourced_id     text NOT NULL,
    grades             text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE enricher_sessions (
    sourced_id         text PRIMARY KEY,
    status             text NOT NULL,
    date_last_modified timestamptz NOT NULL,
    type               text NOT NULL,
    start_date         date NOT NULL,
    end_date           date NOT NULL,
    school_year        text NOT NULL,
    parent_sourced_id  text
);

CREATE TABLE enricher_line_items (
    sourced_id         text PRIMARY KEY,
    status             text NOT NULL,
    date_last_modified timestamptz NOT NULL,
    class_sourced_id   text NOT NULL,
    due_at             timestamptz NOT NULL
);

-- +goose Down
DROP TABLE enricher_line_items;
DROP TABLE enricher_sessions;
DROP TABLE enricher_courses;
DROP TABLE enricher_classes;
DROP TABLE enricher_enrollments;
DROP TABLE enricher_demographics;
DROP TABLE enricher_users;
ALTER TABLE students DROP COLUMN merged_into, DROP COLUMN erased_at;
