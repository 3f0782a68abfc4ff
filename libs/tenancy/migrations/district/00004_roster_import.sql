-- The roster import step's state in the district schema (libs/tenancy/rosters; the gateway writes it before
-- anything reaches raw, ctl approves and rejects held uploads). Only the import step writes these tables;
-- a sink rebuild leaves them alone. They are named import_*, apart from the sink's roster_* tables.
--
-- * import_ledger: what the district's sources have sent, one row per (source, entity, sourcedId):
--   active (false once a record with status tobedeleted, or a bulk file without it, deactivated it),
--   the content hash of the last record sent (its payload without dateLastModified: an unchanged record
--   is not sent again), person (the SIS id of the person a user-ish record is about; a tombstone must
--   name it) and the upload that last set the row. Bulk files are diffed against it; references are
--   checked against it across sources.
-- * import_sources: per source, the ledger's version (one more for each upload applied; a held upload
--   remembers the version it was compared with and can be approved only while the ledger is unchanged)
--   and how often the source is expected to send (freshness, in the quality report).
-- * import_uploads and import_upload_files: every upload and, per file (a CSV file, a JSON collection or
--   a mapped export), rows received, accepted, rejected, held for references, and of the accepted ones
--   how many were new, changed, unchanged and deactivated.
-- * import_upload_records: the records of a held upload, encoded and sealed as they would go to raw,
--   with the ledger row each sets; produced in seq order if the upload is approved, deleted when it is
--   decided.
-- * import_held_refs: records held because an entity they reference (user, class, course, org,
--   academic session) is not known yet; released when it arrives, expired with a finding after a bound.
-- * import_settings: the district's thresholds (one row; defaults when it is missing).

-- +goose Up
CREATE TABLE import_ledger (
    source_id   text NOT NULL,
    entity      text NOT NULL,
    sourced_id  text NOT NULL,
    active      boolean NOT NULL,
    hash        bytea,
    person      text,
    upload_id   uuid,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_id, entity, sourced_id)
);
CREATE INDEX import_ledger_entity_idx ON import_ledger (entity, sourced_id);
CREATE INDEX import_ledger_person_idx ON import_ledger (person) WHERE person IS NOT NULL;

CREATE TABLE import_sources (
    source_id      text PRIMARY KEY,
    version        bigint NOT NULL DEFAULT 0,
    expected_every interval
);

CREATE TABLE import_uploads (
    id             uuid PRIMARY KEY,
    source_id      text NOT NULL,
    kind           text NOT NULL,
    received_at    timestamptz NOT NULL,
    status         text NOT NULL,
    reason         text,
    ledger_version bigint NOT NULL,
    decided_at     timestamptz,
    decided_by     text,
    findings       jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX import_uploads_received_idx ON import_uploads (received_at);
CREATE INDEX import_uploads_held_idx ON import_uploads (status) WHERE status = 'held';

CREATE TABLE import_upload_files (
    upload_id   uuid NOT NULL REFERENCES import_uploads (id) ON DELETE CASCADE,
    file        text NOT NULL,
    entity      text NOT NULL,
    mode        text NOT NULL,
    received    integer NOT NULL,
    accepted    integer NOT NULL,
    rejected    integer NOT NULL,
    held        integer NOT NULL,
    added       integer NOT NULL,
    changed     integer NOT NULL,
    unchanged   integer NOT NULL,
    deactivated integer NOT NULL,
    ledger_active integer NOT NULL,
    PRIMARY KEY (upload_id, file)
);

CREATE TABLE import_upload_records (
    upload_id  uuid NOT NULL REFERENCES import_uploads (id) ON DELETE CASCADE,
    seq        integer NOT NULL,
    entity     text NOT NULL,
    sourced_id text NOT NULL,
    active     boolean NOT NULL,
    hash       bytea,
    person     text,
    missing    text[],
    key        bytea NOT NULL,
    value      bytea NOT NULL,
    PRIMARY KEY (upload_id, seq)
);
CREATE INDEX import_upload_records_person_idx ON import_upload_records (person) WHERE person IS NOT NULL;

CREATE TABLE import_held_refs (
    upload_id   uuid NOT NULL,
    seq         integer NOT NULL,
    source_id   text NOT NULL,
    entity      text NOT NULL,
    sourced_id  text NOT NULL,
    hash        bytea,
    person      text,
    missing     text[] NOT NULL,
    key         bytea NOT NULL,
    value       bytea NOT NULL,
    held_at     timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    status      text NOT NULL DEFAULT 'open',
    decided_at  timestamptz,
    PRIMARY KEY (upload_id, seq)
);
CREATE INDEX import_held_refs_open_idx ON import_held_refs (held_at) WHERE status = 'open';
CREATE INDEX import_held_refs_person_idx ON import_held_refs (person) WHERE person IS NOT NULL;

CREATE TABLE import_settings (
    id                 boolean PRIMARY KEY DEFAULT true CHECK (id),
    max_deleted_pct    double precision NOT NULL DEFAULT 10,
    max_changed_pct    double precision NOT NULL DEFAULT 75,
    min_ledger_rows    integer NOT NULL DEFAULT 10,
    hold_refs_for      interval NOT NULL DEFAULT '7 days'
);

-- Districts rostered before the ledger existed: what the sink holds is known (to no source in
-- particular: source ''), so references to it are satisfied, and the first upload that sends a record
-- claims its row for its source.
INSERT INTO import_ledger (source_id, entity, sourced_id, active, person)
          SELECT '', 'orgs', sourced_id, true, NULL FROM roster_orgs
UNION ALL SELECT '', 'academicSessions', sourced_id, true, NULL FROM roster_academic_sessions
UNION ALL SELECT '', 'courses', sourced_id, true, NULL FROM roster_courses
UNION ALL SELECT '', 'classes', sourced_id, true, NULL FROM roster_classes
UNION ALL SELECT '', 'users', sourced_id, true, sourced_id FROM roster_users
UNION ALL SELECT '', 'enrollments', sourced_id, true, user_sourced_id FROM roster_enrollments
UNION ALL SELECT '', 'demographics', sourced_id, true, sourced_id FROM roster_demographics
UNION ALL SELECT '', 'lineItems', sourced_id, true, NULL FROM roster_line_items
UNION ALL SELECT '', 'results', sourced_id, true, student_sourced_id FROM roster_results;

-- +goose Down
DROP TABLE import_settings;
DROP TABLE import_held_refs;
DROP TABLE import_upload_records;
DROP TABLE import_upload_files;
DROP TABLE import_uploads;
DROP TABLE import_sources;
DROP TABLE import_ledger;
