-- Fleet: the PostgreSQL instances that hold district schemas, and the instance each district lives on.
--
-- No connection URL or password is stored here. An instance names the environment variable (url_env)
-- that holds its URL in every process that talks to it (the sink, ctl); deployments fill it from their
-- secret store. The instance 'main' (url_env NULL) is the database that holds this control schema.
--
-- Every instance carries a control schema of its own, for its consumer_offsets: the sink keeps the
-- offsets of the state it writes in the same database, so they commit in the same transaction. Only the
-- control database's tenants, keys, instances and placements are ever read; the other instances' copies
-- stay empty.
--
-- A district is placed once, when it is created, and stays on its instance (moving one is a rebuild on
-- the new instance, not an update of this table).

-- +goose Up
CREATE TABLE control.instances (
    name       text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    url_env    text UNIQUE CHECK (url_env ~ '^[A-Z_][A-Z0-9_]{0,127}$'),
    is_default boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT instances_main_is_control CHECK ((name = 'main') = (url_env IS NULL))
);
-- At most one default instance, where new districts go unless told otherwise.
CREATE UNIQUE INDEX instances_one_default_idx ON control.instances (is_default) WHERE is_default;
INSERT INTO control.instances (name, is_default) VALUES ('main', true);

CREATE TABLE control.placements (
    tenant_id text PRIMARY KEY REFERENCES control.tenants (id),
    instance  text NOT NULL REFERENCES control.instances (name),
    placed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX placements_instance_idx ON control.placements (instance);
INSERT INTO control.placements (tenant_id, instance) SELECT id, 'main' FROM control.tenants;

-- +goose Down
DROP TABLE control.placements;
DROP TABLE control.instances;
