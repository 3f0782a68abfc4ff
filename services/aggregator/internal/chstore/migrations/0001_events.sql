-- events: one row per learning event from the enriched topic (roster records are not facts and are
-- skipped). Pseudonyms and internal ids only: names, SIS ids and other direct identifiers never reach
-- ClickHouse.
--
-- Columns that belong to one event type hold their zero value ('' or 0) on the other types, except
-- score, max_score, late and percent_complete, which are NULL when absent. kafka_topic, kafka_partition
-- and kafka_offset say which record a row came from: the consumer resumes from them (see kafka_offsets).
--
-- The sort key serves per-tenant scans of one event type over a time range, the common analyst query.
-- LowCardinality needs allow_experimental_low_cardinality_type=1 in the user's profile on ClickHouse
-- 18.16 (the test server), and nothing on current releases.
CREATE TABLE IF NOT EXISTS events
(
    tenant_id         LowCardinality(String),
    event_id          UUID,
    source_id         LowCardinality(String),
    type              LowCardinality(String),
    occurred_at       DateTime('UTC'),
    occurred_ms       UInt16,
    received_at       DateTime('UTC'),
    enriched_at       DateTime('UTC'),
    school_id         String,
    class_id          String,
    session_id        String,
    student_id        UUID,
    pseudonym         String,
    role              LowCardinality(String),
    policy_version    Int32,
    age_band          LowCardinality(String),
    grade_level       LowCardinality(String),
    attendance_status LowCardinality(String),
    attendance_date   Date,
    minutes_present   Nullable(UInt32),
    assessment_id     String,
    score             Nullable(Float64),
    max_score         Nullable(Float64),
    assignment_id     String,
    submission_status LowCardinality(String),
    late              Nullable(UInt8),
    session_action    LowCardinality(String),
    session_seconds   UInt32,
    content_id        String,
    content_type      LowCardinality(String),
    duration_seconds  UInt32,
    percent_complete  Nullable(Float64),
    trace_id          String,
    kafka_topic       LowCardinality(String),
    kafka_partition   UInt32,
    kafka_offset      UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (tenant_id, type, occurred_at, event_id);

-- kafka_offsets: the highest stored offset per topic partition, so resuming reads a handful of rows
-- instead of scanning events. The view below fills it from every insert into events, within the same
-- INSERT; the aggregator adds a row directly when a batch ends in records that are not facts. Read it
-- with max(), which is right before and after background merges:
--   SELECT kafka_partition, max(max_offset) + 1 AS next_offset
--   FROM kafka_offsets WHERE kafka_topic = 'edtech.enriched' GROUP BY kafka_partition
CREATE TABLE IF NOT EXISTS kafka_offsets
(
    kafka_topic     LowCardinality(String),
    kafka_partition UInt32,
    max_offset      UInt64
)
ENGINE = ReplacingMergeTree(max_offset)
PARTITION BY tuple()
ORDER BY (kafka_topic, kafka_partition);

CREATE MATERIALIZED VIEW IF NOT EXISTS kafka_offsets_mv TO kafka_offsets AS
SELECT kafka_topic, kafka_partition, max(kafka_offset) AS max_offset
FROM events
GROUP BY kafka_topic, kafka_partition;
