-- Mapping rules (libs/tenancy/mappings, format in libs/mapping): per district and source, the versions
-- of the YAML rules that map the source's own CSV or JSON exports into OneRoster records. The newest
-- version is the current one; older ones stay, so an upload names the version it was mapped with.

-- +goose Up
CREATE TABLE control.mapping_rules (
    tenant_id  text NOT NULL REFERENCES control.tenants (id),
    source_id  text NOT NULL,
    version    integer NOT NULL,
    rules      text NOT NULL,
    exports    text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL,
    PRIMARY KEY (tenant_id, source_id, version)
);

-- +goose Down
DROP TABLE control.mapping_rules;
