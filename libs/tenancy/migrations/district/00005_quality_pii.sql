-- Personal data the enricher found where none is expected: per day (UTC, of the batch that found it),
-- source, free-text field (privacy.FreeTextFields) and kind (libs/pii: ssn, email, phone), the number of
-- records that held it, whatever the district's free-text rule then did (flag, mask, drop, reject). The
-- enricher adds a batch's counts in one statement per district; the quality report reads them (check
-- "pii"). The rows name no person: erasing a student leaves them; erasing the district drops them with
-- its schema. Not a roster_* table: the sink neither writes nor rebuilds it.

-- +goose Up
CREATE TABLE quality_pii_daily (
    day       date   NOT NULL,
    source_id text   NOT NULL,
    field     text   NOT NULL,
    kind      text   NOT NULL,
    records   bigint NOT NULL,
    PRIMARY KEY (day, source_id, field, kind)
);

-- +goose Down
DROP TABLE quality_pii_daily;
