-- The roster import's quality gate (ADR 0016): an upload is held, like the safety hold, when more of its
-- rows are rejected, more of its records wait for references, or it has more data-quality findings per
-- row than the district allows (NULL: the findings check is off). Each file's findings are counted with
-- the upload, and a mapped CSV file's export and header, so the quality report can tell when an export's
-- columns changed (schema drift).

-- +goose Up
ALTER TABLE import_settings
    ADD COLUMN max_rejected_pct  double precision NOT NULL DEFAULT 5,
    ADD COLUMN max_held_refs_pct double precision NOT NULL DEFAULT 5,
    ADD COLUMN max_findings_pct  double precision,
    ADD COLUMN min_upload_rows   integer NOT NULL DEFAULT 10;
ALTER TABLE import_upload_files
    ADD COLUMN findings integer NOT NULL DEFAULT 0,
    ADD COLUMN export   text,
    ADD COLUMN columns  text[];

-- +goose Down
ALTER TABLE import_upload_files DROP COLUMN findings, DROP COLUMN export, DROP COLUMN columns;
ALTER TABLE import_settings
    DROP COLUMN max_rejected_pct,
    DROP COLUMN max_held_refs_pct,
    DROP COLUMN max_findings_pct,
    DROP COLUMN min_upload_rows;
