-- District template: current state kept by the sink. Runs with search_path set to the district's schema,
-- so names here are unqualified.

-- +goose Up
CREATE TABLE students (
    internal_id uuid PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    match_key   text UNIQUE
);

CREATE TABLE student_identities (
    source_id   text NOT NULL,
    sis_id      text NOT NULL,
    internal_id uuid NOT NULL REFERENCES students (internal_id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_id, sis_id)
);
CREATE INDEX student_identities_internal_id_idx ON student_identities (internal_id);

CREATE TABLE student_activity (
    internal_id     uuid PRIMARY KEY,
    event_count     bigint NOT NULL,
    last_event_at   timestamptz NOT NULL,
    last_event_type text NOT NULL
);

CREATE TABLE attendance_daily (
    internal_id uuid NOT NULL,
    day         date NOT NULL,
    status      text NOT NULL,
    school_id   text,
    class_id    text,
    event_id    uuid NOT NULL,
    PRIMARY KEY (internal_id, day)
);

CREATE TABLE assessment_results_latest (
    internal_id   uuid NOT NULL,
    assessment_id text NOT NULL,
    score         double precision,
    max_score     double precision,
    occurred_at   timestamptz,
    event_id      uuid,
    PRIMARY KEY (internal_id, assessment_id)
);

CREATE TABLE submissions (
    internal_id   uuid NOT NULL,
    assignment_id text NOT NULL,
    submitted_at  timestamptz,
    late          boolean,
    score         double precision,
    event_id      uuid,
    PRIMARY KEY (internal_id, assignment_id)
);

-- +goose Down
DROP TABLE submissions;
DROP TABLE assessment_results_latest;
DROP TABLE attendance_daily;
DROP TABLE student_activity;
DROP TABLE student_identities;
DROP TABLE students;
