-- xAPI statements the gateway took (POST and PUT /xapi/statements): their ids and a hash of their
-- content, so a statement sent again with the same id is recognised (the same content: nothing to do;
-- other content: 409 Conflict, as the xAPI statements resource says), and the statement itself, sealed
-- under its actor's data key (GET /xapi/statements?statementId= reads it back; erasing the person
-- shreds it). The statements travel on as the platform's events.

-- +goose Up
CREATE TABLE xapi_statements (
    statement_id uuid PRIMARY KEY,
    hash         bytea NOT NULL,
    statement    text NOT NULL,
    stored       timestamptz NOT NULL,
    source_id    text NOT NULL,
    stored_at    timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE xapi_statements;
