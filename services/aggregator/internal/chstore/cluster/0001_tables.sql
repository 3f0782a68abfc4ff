-- The replicated cluster layout (ADR 0026): the tables of the single-server layout as they stand after its
-- migration 0010, on every node of the cluster {{.Cluster}}. Each table's rows live in <name>_local, a
-- Replicated*MergeTree whose replicas share the ZooKeeper path of their shard; <name> is a Distributed table
-- over them, sharded by district (cityHash64(tenant_id)), so readers query the names they always did.
--
-- The aggregator inserts into events_input, a Distributed table over events_input_local, a Null table on
-- every node: the views below copy each block into events_local and aggregate it into the rollups, on the
-- node of the district's shard that took the block. Each target table deduplicates a block it already
-- holds (replicated_deduplication_window blocks back), on its own: inserting a batch again completes the
-- tables a failed insert did not reach and repeats nothing. The rollups carry batch_offset, the lowest
-- offset of the rows a row was aggregated from, so that two different batches never make identical
-- blocks (one would be dropped as a duplicate of the other). Read the rollups as in the single-server
-- layout; batch_offset is not a measure.
--
-- Everything here runs ON CLUSTER, with names qualified (a distributed DDL runs in each node's own
-- default database otherwise). Templated: {{"{{"}}.Database}} and {{"{{"}}.Cluster}} are filled in, quoted, by
-- chstore.MigrateCluster.

CREATE TABLE IF NOT EXISTS {{.Database}}.events_input_local ON CLUSTER {{.Cluster}}
(
    tenant_id LowCardinality(String),
    event_id UUID,
    source_id LowCardinality(String),
    type LowCardinality(String),
    occurred_at DateTime('UTC'),
    occurred_ms UInt16,
    local_day Date DEFAULT toDate(occurred_at),
    received_at DateTime('UTC'),
    enriched_at DateTime('UTC'),
    school_id String,
    class_id String,
    session_id String,
    student_id UUID,
    pseudonym String,
    role LowCardinality(String),
    policy_version Int32,
    age_band LowCardinality(String),
    grade_level LowCardinality(String),
    academic_session_id String DEFAULT '',
    attendance_status LowCardinality(String),
    attendance_date Date,
    minutes_present Nullable(UInt32),
    assessment_id String,
    score Nullable(Float64),
    max_score Nullable(Float64),
    assignment_id String,
    submission_status LowCardinality(String),
    late Nullable(UInt8),
    session_action LowCardinality(String),
    session_seconds UInt32,
    content_id String,
    content_type LowCardinality(String),
    duration_seconds UInt32,
    percent_complete Nullable(Float64),
    custom_name String DEFAULT '',
    generic_standard String DEFAULT '',
    generic_type String DEFAULT '',
    generic_action String DEFAULT '',
    generic_object_id String DEFAULT '',
    generic_object_type String DEFAULT '',
    generic_statement_id String DEFAULT '',
    prop_keys Array(String),
    prop_values Array(String),
    trace_id String,
    kafka_topic LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset UInt64
)
ENGINE = Null;

CREATE TABLE IF NOT EXISTS {{.Database}}.events_input ON CLUSTER {{.Cluster}} AS {{.Database}}.events_input_local
ENGINE = Distributed({{.Cluster}}, {{.Database}}, events_input_local, cityHash64(tenant_id));

CREATE TABLE IF NOT EXISTS {{.Database}}.events_local ON CLUSTER {{.Cluster}} AS {{.Database}}.events_input_local
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{{.Database}}/events_local', '{replica}')
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (tenant_id, type, occurred_at, event_id)
SETTINGS index_granularity = 8192, replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {{.Database}}.events ON CLUSTER {{.Cluster}} AS {{.Database}}.events_local
ENGINE = Distributed({{.Cluster}}, {{.Database}}, events_local, cityHash64(tenant_id));

CREATE TABLE IF NOT EXISTS {{.Database}}.school_daily_local ON CLUSTER {{.Cluster}}
(
    tenant_id LowCardinality(String),
    school_id String,
    day Date,
    active_students AggregateFunction(uniqExact, UUID),
    events AggregateFunction(count),
    content_seconds AggregateFunction(sum, UInt64),
    kafka_partition UInt32,
    batch_offset UInt64
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{{.Database}}/school_daily_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, school_id, day, kafka_partition)
SETTINGS index_granularity = 8192, replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {{.Database}}.school_daily ON CLUSTER {{.Cluster}} AS {{.Database}}.school_daily_local
ENGINE = Distributed({{.Cluster}}, {{.Database}}, school_daily_local, cityHash64(tenant_id));

CREATE TABLE IF NOT EXISTS {{.Database}}.attendance_daily_local ON CLUSTER {{.Cluster}}
(
    tenant_id LowCardinality(String),
    school_id String,
    day Date,
    status LowCardinality(String),
    marks UInt64,
    kafka_partition UInt32,
    batch_offset UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{{.Database}}/attendance_daily_local', '{replica}', marks)
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, school_id, day, status, kafka_partition)
SETTINGS index_granularity = 8192, replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {{.Database}}.attendance_daily ON CLUSTER {{.Cluster}} AS {{.Database}}.attendance_daily_local
ENGINE = Distributed({{.Cluster}}, {{.Database}}, attendance_daily_local, cityHash64(tenant_id));

CREATE TABLE IF NOT EXISTS {{.Database}}.metrics_daily_local ON CLUSTER {{.Cluster}}
(
    tenant_id LowCardinality(String),
    level String,
    entity_id String,
    parent_id String,
    day Date,
    active_students AggregateFunction(uniqExact, UUID),
    events AggregateFunction(sum, UInt64),
    present AggregateFunction(sum, UInt64),
    tardy AggregateFunction(sum, UInt64),
    absent AggregateFunction(sum, UInt64),
    excused AggregateFunction(sum, UInt64),
    other_marks AggregateFunction(sum, UInt64),
    assessments AggregateFunction(sum, UInt64),
    score_pct_sum AggregateFunction(sum, Float64),
    score_quantiles AggregateFunction(quantiles(0.1, 0.25, 0.5, 0.75, 0.9), Float64),
    submissions AggregateFunction(sum, UInt64),
    late_submissions AggregateFunction(sum, UInt64),
    content_seconds AggregateFunction(sum, UInt64),
    logins AggregateFunction(sum, UInt64),
    session_seconds AggregateFunction(sum, UInt64),
    kafka_partition UInt32,
    batch_offset UInt64
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{{.Database}}/metrics_daily_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (level, tenant_id, entity_id, parent_id, day, kafka_partition)
SETTINGS index_granularity = 256, replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {{.Database}}.metrics_daily ON CLUSTER {{.Cluster}} AS {{.Database}}.metrics_daily_local
ENGINE = Distributed({{.Cluster}}, {{.Database}}, metrics_daily_local, cityHash64(tenant_id));

CREATE TABLE IF NOT EXISTS {{.Database}}.metrics_student_daily_local ON CLUSTER {{.Cluster}}
(
    tenant_id LowCardinality(String),
    student_id UUID,
    day Date,
    pseudonym String,
    events AggregateFunction(sum, UInt64),
    present AggregateFunction(sum, UInt64),
    tardy AggregateFunction(sum, UInt64),
    absent AggregateFunction(sum, UInt64),
    excused AggregateFunction(sum, UInt64),
    other_marks AggregateFunction(sum, UInt64),
    assessments AggregateFunction(sum, UInt64),
    score_pct_sum AggregateFunction(sum, Float64),
    score_quantiles AggregateFunction(quantiles(0.1, 0.25, 0.5, 0.75, 0.9), Float64),
    submissions AggregateFunction(sum, UInt64),
    late_submissions AggregateFunction(sum, UInt64),
    content_seconds AggregateFunction(sum, UInt64),
    logins AggregateFunction(sum, UInt64),
    session_seconds AggregateFunction(sum, UInt64),
    kafka_partition UInt32,
    batch_offset UInt64
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{{.Database}}/metrics_student_daily_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, student_id, day, kafka_partition)
SETTINGS index_granularity = 256, replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {{.Database}}.metrics_student_daily ON CLUSTER {{.Cluster}} AS {{.Database}}.metrics_student_daily_local
ENGINE = Distributed({{.Cluster}}, {{.Database}}, metrics_student_daily_local, cityHash64(tenant_id));

CREATE MATERIALIZED VIEW IF NOT EXISTS {{.Database}}.events_mv ON CLUSTER {{.Cluster}} TO {{.Database}}.events_local AS
SELECT * FROM {{.Database}}.events_input_local;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{.Database}}.school_daily_mv ON CLUSTER {{.Cluster}} TO {{.Database}}.school_daily_local AS
SELECT tenant_id, school_id, local_day AS day, uniqExactStateIf(student_id, role = 'student') AS active_students, countState() AS events, sumState(toUInt64(duration_seconds)) AS content_seconds, kafka_partition, min(kafka_offset) AS batch_offset FROM {{.Database}}.events_input_local GROUP BY tenant_id, school_id, day, kafka_partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{.Database}}.attendance_daily_mv ON CLUSTER {{.Cluster}} TO {{.Database}}.attendance_daily_local AS
SELECT tenant_id, school_id, attendance_date AS day, attendance_status AS status, count() AS marks, kafka_partition, min(kafka_offset) AS batch_offset FROM {{.Database}}.events_input_local WHERE type = 'attendance' GROUP BY tenant_id, school_id, day, status, kafka_partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{.Database}}.metrics_daily_mv ON CLUSTER {{.Cluster}} TO {{.Database}}.metrics_daily_local AS
SELECT tenant_id, grain.1 AS level, grain.2 AS entity_id, grain.3 AS parent_id, if(type = 'attendance', attendance_date, local_day) AS day, uniqExactState(student_id) AS active_students, sumState(toUInt64(1)) AS events, sumState(toUInt64((type = 'attendance') AND (attendance_status = 'present'))) AS present, sumState(toUInt64((type = 'attendance') AND (attendance_status = 'tardy'))) AS tardy, sumState(toUInt64((type = 'attendance') AND (attendance_status = 'absent'))) AS absent, sumState(toUInt64((type = 'attendance') AND (attendance_status = 'excused'))) AS excused, sumState(toUInt64((type = 'attendance') AND (attendance_status NOT IN ('present', 'tardy', 'absent', 'excused')))) AS other_marks, sumState(toUInt64((type = 'assessment_result') AND (ifNull(max_score, 0) > 0))) AS assessments, sumStateIf((ifNull(score, 0) / ifNull(max_score, 1)) * 100, (type = 'assessment_result') AND (ifNull(max_score, 0) > 0)) AS score_pct_sum, quantilesStateIf(0.1, 0.25, 0.5, 0.75, 0.9)((ifNull(score, 0) / ifNull(max_score, 1)) * 100, (type = 'assessment_result') AND (ifNull(max_score, 0) > 0)) AS score_quantiles, sumState(toUInt64(type = 'assignment_submission')) AS submissions, sumState(toUInt64((type = 'assignment_submission') AND (ifNull(late, 0) = 1))) AS late_submissions, sumState(toUInt64(duration_seconds)) AS content_seconds, sumState(toUInt64((type = 'session') AND (session_action = 'login'))) AS logins, sumState(toUInt64(session_seconds)) AS session_seconds, kafka_partition, min(kafka_offset) AS batch_offset FROM {{.Database}}.events_input_local ARRAY JOIN if(class_id = '', [('district', '', ''), ('school', school_id, '')], [('district', '', ''), ('school', school_id, ''), ('class', class_id, school_id)]) AS grain WHERE role = 'student' GROUP BY tenant_id, level, entity_id, parent_id, day, kafka_partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{.Database}}.metrics_student_daily_mv ON CLUSTER {{.Cluster}} TO {{.Database}}.metrics_student_daily_local AS
SELECT tenant_id, student_id, if(type = 'attendance', attendance_date, local_day) AS day, any(pseudonym) AS pseudonym, sumState(toUInt64(1)) AS events, sumState(toUInt64((type = 'attendance') AND (attendance_status = 'present'))) AS present, sumState(toUInt64((type = 'attendance') AND (attendance_status = 'tardy'))) AS tardy, sumState(toUInt64((type = 'attendance') AND (attendance_status = 'absent'))) AS absent, sumState(toUInt64((type = 'attendance') AND (attendance_status = 'excused'))) AS excused, sumState(toUInt64((type = 'attendance') AND (attendance_status NOT IN ('present', 'tardy', 'absent', 'excused')))) AS other_marks, sumState(toUInt64((type = 'assessment_result') AND (ifNull(max_score, 0) > 0))) AS assessments, sumStateIf((ifNull(score, 0) / ifNull(max_score, 1)) * 100, (type = 'assessment_result') AND (ifNull(max_score, 0) > 0)) AS score_pct_sum, quantilesStateIf(0.1, 0.25, 0.5, 0.75, 0.9)((ifNull(score, 0) / ifNull(max_score, 1)) * 100, (type = 'assessment_result') AND (ifNull(max_score, 0) > 0)) AS score_quantiles, sumState(toUInt64(type = 'assignment_submission')) AS submissions, sumState(toUInt64((type = 'assignment_submission') AND (ifNull(late, 0) = 1))) AS late_submissions, sumState(toUInt64(duration_seconds)) AS content_seconds, sumState(toUInt64((type = 'session') AND (session_action = 'login'))) AS logins, sumState(toUInt64(session_seconds)) AS session_seconds, kafka_partition, min(kafka_offset) AS batch_offset FROM {{.Database}}.events_input_local WHERE role = 'student' GROUP BY tenant_id, student_id, day, kafka_partition;

-- kafka_offsets: the highest offset stored per partition, as in the single-server layout, for ctl (an
-- erasure waits for its markers to pass, an export records where ClickHouse stood). Here it reports, and
-- Keeper decides: the aggregator resumes from Keeper. The view fills it from every insert; the aggregator
-- adds a row for each marker it applied.
CREATE TABLE IF NOT EXISTS {{.Database}}.kafka_offsets_local ON CLUSTER {{.Cluster}}
(
    kafka_topic LowCardinality(String),
    kafka_partition UInt32,
    max_offset UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{{.Database}}/kafka_offsets_local', '{replica}', max_offset)
PARTITION BY tuple()
ORDER BY (kafka_topic, kafka_partition);

CREATE TABLE IF NOT EXISTS {{.Database}}.kafka_offsets ON CLUSTER {{.Cluster}} AS {{.Database}}.kafka_offsets_local
ENGINE = Distributed({{.Cluster}}, {{.Database}}, kafka_offsets_local, kafka_partition);

CREATE MATERIALIZED VIEW IF NOT EXISTS {{.Database}}.kafka_offsets_mv ON CLUSTER {{.Cluster}} TO {{.Database}}.kafka_offsets_local AS
SELECT kafka_topic, kafka_partition, max(kafka_offset) AS max_offset
FROM {{.Database}}.events_input_local
GROUP BY kafka_topic, kafka_partition;
