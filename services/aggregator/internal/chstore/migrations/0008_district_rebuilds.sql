-- district_rebuilds: the ClickHouse rebuilds of a district (ctl rebuild --store clickhouse; see
-- rebuild.go). A rebuild stages the district's rows, replayed from the archive and the topic, in a table
-- of its own (staging), then puts a marker (store.clickhouse_rebuild, event_id = rebuild_id) on each of the
-- district's partitions of enriched and sets state 'ready' once the staging holds every record before the
-- markers. The aggregator swaps the district's rows of a partition when it reaches the partition's
-- marker, in order with its inserts; a marker whose rebuild is not ready within a bound is abandoned.
-- ReplacingMergeTree keeps the highest version of a rebuild: read it with ORDER BY version DESC LIMIT 1.
CREATE TABLE IF NOT EXISTS district_rebuilds
(
    rebuild_id  String,
    tenant_id   String,
    staging     String,
    state       String,
    version     UInt64,
    created_at  DateTime('UTC'),
    written_at  DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY tuple()
ORDER BY rebuild_id;
