-- District template: the OneRoster current state the sink keeps, and attendance ordered by event time.
-- Runs with search_path set to the district's schema, so names here are unqualified.
--
-- Contract for readers (the query service, exports, erasure). These names and columns are stable: new
-- columns may be added, none renamed or removed without a new table.
--
-- * Every roster_* table is keyed by the OneRoster sourced_id and has status (always 'active': records
--   with status 'tobedeleted' delete the row), date_last_modified (the source's dateLastModified; a
--   record older than the row is ignored, so replays and out-of-order deltas are safe) and metadata (the
--   OneRoster metadata extensions as a JSON object of strings).
-- * roster_users: one row per user, students and teachers alike. internal_id is the platform's stable
--   id of the user (the enriched actor of the user's roster record), NULL until known. enabled is
--   OneRoster enabledUser: a user with enabled = false is inactive (kept, not deleted). roles is a JSON
--   array of {role_type, role, org_sourced_id, begin_date, end_date}. Passwords are never stored.
-- * roster_enrollments: one row per enrollment of user_sourced_id in class_sourced_id at
--   school_sourced_id, with role (student, teacher, aide, ...), is_primary and begin/end dates.
--   "Classes of a teacher": WHERE user_sourced_id = $1 AND role = 'teacher' (indexed); "members of a
--   class": WHERE class_sourced_id = $1 (indexed). Join roster_users on sourced_id for internal_id.
-- * roster_deletions remembers deletions (entity, sourced_id, date_last_modified) so that a stale record
--   arriving after the delete cannot bring the row back. Readers never need it.

-- +goose Up
CREATE TABLE roster_orgs (
    sourced_id         text PRIMARY KEY,
    status             text NOT NULL,
    date_last_modified timestamptz NOT NULL,
    metadata           jsonb NOT NULL DEFAULT '{}',
    name               text NOT NULL,
    type               text NOT NULL,
    identifier         text,
    parent_sourced_id  text
);

CREATE TABLE roster_academic_sessions (
    sourced_id         text PRIMARY KEY,
    status             text NOT NULL,
    date_last_modified timestamptz NOT NULL,
    metadata           jsonb NOT NULL DEFAULT '{}',
    title              text NOT NULL,
    type               text NOT NULL,
    start_date         date NOT NULL,
    end_date           date NOT NULL,
    school_year        text NOT NULL,
    parent_sourced_id  text
);

CREATE TABLE roster_courses (
    sourced_id             text PRIMARY KEY,
    status                 text NOT NULL,
    date_last_modified     timestamptz NOT NULL,
    metadata               jsonb NOT NULL DEFAULT '{}',
    title                  text NOT NULL,
    school_year_sourced_id text,
    course_code            text,
    grades                 text[] NOT NULL DEFAULT '{}',
    subjects               text[] NOT NULL DEFAULT '{}',
    org_sourced_id         text NOT NULL
);

CREATE TABLE roster_classes (
    sourced_id         text PRIMARY KEY,
    status             text NOT NULL,
    date_last_modified timestamptz NOT NULL,
    metadata           jsonb NOT NULL DEFAULT '{}',
    title              text NOT NULL,
    class_code         text,
    class_type         text NOT NULL,
    location           text,
    grades             text[] NOT NULL DEFAULT '{}',
    subjects           text[] NOT NULL DEFAULT '{}',
    periods            text[] NOT NULL DEFAULT '{}',
    course_sourced_id  text NOT NULL,
    school_sourced_id  text NOT NULL,
    term_sourced_ids   text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX roster_classes_school_idx ON roster_classes (school_sourced_id);

CREATE TABLE roster_users (
    sourced_id             text PRIMARY KEY,
    status                 text NOT NULL,
    date_last_modified     timestamptz NOT NULL,
    metadata               jsonb NOT NULL DEFAULT '{}',
    internal_id            uuid,
    enabled                boolean NOT NULL,
    username               text,
    given_name             text NOT NULL,
    family_name            text NOT NULL,
    middle_name            text,
    preferred_first_name   text,
    preferred_last_name    text,
    pronouns               text,
    roles                  jsonb NOT NULL DEFAULT '[]',
    identifier             text,
    user_master_identifier text,
    email                  text,
    grades                 text[] NOT NULL DEFAULT '{}',
    org_sourced_ids        text[] NOT NULL DEFAULT '{}',
    agent_sourced_ids      text[] NOT NULL DEFAULT '{}',
    birth_date             date
);
CREATE INDEX roster_users_internal_id_idx ON roster_users (internal_id);

CREATE TABLE roster_enrollments (
    sourced_id         text PRIMARY KEY,
    status             text NOT NULL,
    date_last_modified timestamptz NOT NULL,
    metadata           jsonb NOT NULL DEFAULT '{}',
    class_sourced_id   text NOT NULL,
    school_sourced_id  text NOT NULL,
    user_sourced_id    text NOT NULL,
    role               text NOT NULL,
    is_primary         boolean,
    begin_date         date,
    end_date           date
);
CREATE INDEX roster_enrollments_user_idx ON roster_enrollments (user_sourced_id, role);
CREATE INDEX roster_enrollments_class_idx ON roster_enrollments (class_sourced_id);

CREATE TABLE roster_demographics (
    sourced_id                                text PRIMARY KEY,
    status                                    text NOT NULL,
    date_last_modified                        timestamptz NOT NULL,
    metadata                                  jsonb NOT NULL DEFAULT '{}',
    birth_date                                date,
    sex                                       text,
    american_indian_or_alaska_native          boolean,
    asian                                     boolean,
    black_or_african_american                 boolean,
    native_hawaiian_or_other_pacific_islander boolean,
    white                                     boolean,
    two_or_more_races                         boolean,
    hispanic_or_latino_ethnicity              boolean,
    country_of_birth_code                     text,
    state_of_birth_abbreviation               text,
    city_of_birth                             text,
    public_school_residence_status            text
);

CREATE TABLE roster_line_items (
    sourced_id                  text PRIMARY KEY,
    status                      text NOT NULL,
    date_last_modified          timestamptz NOT NULL,
    metadata                    jsonb NOT NULL DEFAULT '{}',
    title                       text NOT NULL,
    description                 text,
    assign_date                 timestamptz NOT NULL,
    due_date                    timestamptz NOT NULL,
    class_sourced_id            text NOT NULL,
    school_sourced_id           text,
    category_sourced_id         text,
    grading_period_sourced_id   text,
    academic_session_sourced_id text,
    score_scale_sourced_id      text,
    result_value_min            double precision,
    result_value_max            double precision
);
CREATE INDEX roster_line_items_class_idx ON roster_line_items (class_sourced_id);

CREATE TABLE roster_results (
    sourced_id             text PRIMARY KEY,
    status                 text NOT NULL,
    date_last_modified     timestamptz NOT NULL,
    metadata               jsonb NOT NULL DEFAULT '{}',
    line_item_sourced_id   text NOT NULL,
    student_sourced_id     text NOT NULL,
    class_sourced_id       text,
    score_scale_sourced_id text,
    score_status           text NOT NULL,
    score                  double precision,
    text_score             text,
    score_date             date NOT NULL,
    comment                text,
    in_progress            boolean,
    incomplete             boolean,
    late                   boolean,
    missing                boolean
);
CREATE INDEX roster_results_line_item_idx ON roster_results (line_item_sourced_id);
CREATE INDEX roster_results_student_idx ON roster_results (student_sourced_id);

CREATE TABLE roster_deletions (
    entity             text NOT NULL,
    sourced_id         text NOT NULL,
    date_last_modified timestamptz NOT NULL,
    PRIMARY KEY (entity, sourced_id)
);

-- The mark of a student's day is the one with the latest occurred_at (ties: the later record), not the
-- last to arrive. Rows from before this column have NULL and yield to any new mark.
ALTER TABLE attendance_daily ADD COLUMN occurred_at timestamptz;

-- +goose Down
ALTER TABLE attendance_daily DROP COLUMN occurred_at;
DROP TABLE roster_deletions;
DROP TABLE roster_results;
DROP TABLE roster_line_items;
DROP TABLE roster_demographics;
DROP TABLE roster_enrollments;
DROP TABLE roster_users;
DROP TABLE roster_classes;
DROP TABLE roster_courses;
DROP TABLE roster_academic_sessions;
DROP TABLE roster_orgs;
