-- District rebuilds of ClickHouse in the cluster layout (rebuild.go, ADR 0026): the registry of the
-- single-server layout's migration 0008, replicated, read through a Distributed table of the same name.
-- A rebuild stages its rows in rebuild_<tenant>_local (created on every node by the rebuild, with a
-- Distributed rebuild_<tenant> over it) and the aggregator swaps them in at its markers.

CREATE TABLE IF NOT EXISTS {{.Database}}.district_rebuilds_local ON CLUSTER {{.Cluster}}
(
    rebuild_id  String,
    tenant_id   String,
    staging     String,
    state       String,
    version     UInt64,
    created_at  DateTime('UTC'),
    written_at  DateTime('UTC') DEFAULT now()
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{{.Database}}/district_rebuilds_local', '{replica}', version)
PARTITION BY tuple()
ORDER BY rebuild_id;

CREATE TABLE IF NOT EXISTS {{.Database}}.district_rebuilds ON CLUSTER {{.Cluster}} AS {{.Database}}.district_rebuilds_local
ENGINE = Distributed({{.Cluster}}, {{.Database}}, district_rebuilds_local, cityHash64(tenant_id));
