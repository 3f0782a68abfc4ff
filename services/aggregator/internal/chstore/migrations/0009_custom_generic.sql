-- Custom and generic events (enriched_event v4, ADR 0018). custom_name is a custom event's name;
-- generic_* are a Caliper event's or xAPI statement's fields kept by a generic event. prop_keys and
-- prop_values hold, as two parallel arrays (18.16 has no Map), a custom event's properties or a generic
-- event's extensions, sorted by key: prop_values[indexOf(prop_keys, 'step')]. Every column is empty on
-- other types and on rows written before this migration.
ALTER TABLE events ADD COLUMN custom_name String DEFAULT '' AFTER percent_complete;
ALTER TABLE events ADD COLUMN generic_standard String DEFAULT '' AFTER custom_name;
ALTER TABLE events ADD COLUMN generic_type String DEFAULT '' AFTER generic_standard;
ALTER TABLE events ADD COLUMN generic_action String DEFAULT '' AFTER generic_type;
ALTER TABLE events ADD COLUMN generic_object_id String DEFAULT '' AFTER generic_action;
ALTER TABLE events ADD COLUMN generic_object_type String DEFAULT '' AFTER generic_object_id;
ALTER TABLE events ADD COLUMN generic_statement_id String DEFAULT '' AFTER generic_object_type;
ALTER TABLE events ADD COLUMN prop_keys Array(String) AFTER generic_statement_id;
ALTER TABLE events ADD COLUMN prop_values Array(String) AFTER prop_keys;
