-- The rollups carry the enriched partition their events came from (kafka_partition, last in the sort key),
-- so that the rows of one partition can be re-derived from events without touching another's: a batch a
-- ClickHouse server died in the middle of (events stored, some views not) is repaired by deleting the
-- affected keys' rows of that partition and inserting them again from events (see chstore's repair.go).
-- Only the partition's consumer writes those rows, so the repair never races another partition's inserts.
-- Readers group by their own keys and merge the states, so a district whose events span partitions (a hot
-- district, a changed partition count) still reads one value per key.
--
-- Each table is rebuilt from events, as a new table swapped in by RENAME; every statement can run again
-- after a failure. Aggregators must be stopped while this migration runs (it runs when one starts).
--
-- insert_journal: the last insert each aggregator began per enriched partition (done = 0), or that one
-- confirmed (done = 1). An aggregator writes the row before each insert into events; the owner of a
-- partition reads it when the partition is assigned or the server comes back, and repairs a batch whose
-- outcome is unknown. ReplacingMergeTree keeps one row per partition, the highest version
-- (2 * seq + done); read it with ORDER BY version DESC LIMIT 1 BY kafka_partition.
CREATE TABLE IF NOT EXISTS insert_journal
(
    kafka_topic     String,
    kafka_partition UInt32,
    version         UInt64,
    first_offset    UInt64,
    last_offset     UInt64,
    rows            UInt64,
    tenants         Array(String),
    days            Array(Date),
    min_occurred    DateTime('UTC'),
    max_occurred    DateTime('UTC'),
    done            UInt8,
    written_at      DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY tuple()
ORDER BY (kafka_topic, kafka_partition);

-- school_daily
DROP TABLE IF EXISTS school_daily_mv;
DROP TABLE IF EXISTS school_daily_tagged;
CREATE TABLE school_daily_tagged
(
    tenant_id       LowCardinality(String),
    school_id       String,
    day             Date,
    active_students AggregateFunction(uniqExact, UUID),
    events          AggregateFunction(count),
    content_seconds AggregateFunction(sum, UInt64),
    kafka_partition  UInt32
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, school_id, day, kafka_partition);
INSERT INTO school_daily_tagged
SELECT
    tenant_id,
    school_id,
    toDate(occurred_at) AS day,
    uniqExactStateIf(student_id, role = 'student') AS active_students,
    countState() AS events,
    sumState(toUInt64(duration_seconds)) AS content_seconds,
    kafka_partition
FROM events
GROUP BY tenant_id, school_id, day, kafka_partition;
DROP TABLE IF EXISTS school_daily_untagged;
RENAME TABLE school_daily TO school_daily_untagged, school_daily_tagged TO school_daily;
DROP TABLE school_daily_untagged;
CREATE MATERIALIZED VIEW IF NOT EXISTS school_daily_mv TO school_daily AS
SELECT
    tenant_id,
    school_id,
    toDate(occurred_at) AS day,
    uniqExactStateIf(student_id, role = 'student') AS active_students,
    countState() AS events,
    sumState(toUInt64(duration_seconds)) AS content_seconds,
    kafka_partition
FROM events
GROUP BY tenant_id, school_id, day, kafka_partition;

-- attendance_daily
DROP TABLE IF EXISTS attendance_daily_mv;
DROP TABLE IF EXISTS attendance_daily_tagged;
CREATE TABLE attendance_daily_tagged
(
    tenant_id LowCardinality(String),
    school_id String,
    day       Date,
    status    LowCardinality(String),
    marks     UInt64,
    kafka_partition  UInt32
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, school_id, day, status, kafka_partition);
INSERT INTO attendance_daily_tagged
SELECT
    tenant_id,
    school_id,
    attendance_date AS day,
    attendance_status AS status,
    count() AS marks,
    kafka_partition
FROM events
WHERE type = 'attendance'
GROUP BY tenant_id, school_id, day, status, kafka_partition;
DROP TABLE IF EXISTS attendance_daily_untagged;
RENAME TABLE attendance_daily TO attendance_daily_untagged, attendance_daily_tagged TO attendance_daily;
DROP TABLE attendance_daily_untagged;
CREATE MATERIALIZED VIEW IF NOT EXISTS attendance_daily_mv TO attendance_daily AS
SELECT
    tenant_id,
    school_id,
    attendance_date AS day,
    attendance_status AS status,
    count() AS marks,
    kafka_partition
FROM events
WHERE type = 'attendance'
GROUP BY tenant_id, school_id, day, status, kafka_partition;

-- metrics_daily
DROP TABLE IF EXISTS metrics_daily_mv;
DROP TABLE IF EXISTS metrics_daily_tagged;
CREATE TABLE metrics_daily_tagged
(
    tenant_id        LowCardinality(String),
    level            String,
    entity_id        String,
    parent_id        String,
    day              Date,
    active_students  AggregateFunction(uniqExact, UUID),
    events           AggregateFunction(sum, UInt64),
    present          AggregateFunction(sum, UInt64),
    tardy            AggregateFunction(sum, UInt64),
    absent           AggregateFunction(sum, UInt64),
    excused          AggregateFunction(sum, UInt64),
    other_marks      AggregateFunction(sum, UInt64),
    assessments      AggregateFunction(sum, UInt64),
    score_pct_sum    AggregateFunction(sum, Float64),
    score_quantiles  AggregateFunction(quantiles(0.1, 0.25, 0.5, 0.75, 0.9), Float64),
    submissions      AggregateFunction(sum, UInt64),
    late_submissions AggregateFunction(sum, UInt64),
    content_seconds  AggregateFunction(sum, UInt64),
    logins           AggregateFunction(sum, UInt64),
    session_seconds  AggregateFunction(sum, UInt64),
    kafka_partition  UInt32
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (level, tenant_id, entity_id, parent_id, day, kafka_partition)
SETTINGS index_granularity = 256;
INSERT INTO metrics_daily_tagged
SELECT
    tenant_id,
    grain.1 AS level,
    grain.2 AS entity_id,
    grain.3 AS parent_id,
    if(type = 'attendance', attendance_date, toDate(occurred_at)) AS day,
    uniqExactState(student_id) AS active_students,
    sumState(toUInt64(1)) AS events,
    sumState(toUInt64(type = 'attendance' AND attendance_status = 'present')) AS present,
    sumState(toUInt64(type = 'attendance' AND attendance_status = 'tardy')) AS tardy,
    sumState(toUInt64(type = 'attendance' AND attendance_status = 'absent')) AS absent,
    sumState(toUInt64(type = 'attendance' AND attendance_status = 'excused')) AS excused,
    sumState(toUInt64(type = 'attendance' AND attendance_status NOT IN ('present', 'tardy', 'absent', 'excused'))) AS other_marks,
    sumState(toUInt64(type = 'assessment_result' AND ifNull(max_score, 0) > 0)) AS assessments,
    sumStateIf(ifNull(score, 0) / ifNull(max_score, 1) * 100, type = 'assessment_result' AND ifNull(max_score, 0) > 0) AS score_pct_sum,
    quantilesStateIf(0.1, 0.25, 0.5, 0.75, 0.9)(ifNull(score, 0) / ifNull(max_score, 1) * 100,
        type = 'assessment_result' AND ifNull(max_score, 0) > 0) AS score_quantiles,
    sumState(toUInt64(type = 'assignment_submission')) AS submissions,
    sumState(toUInt64(type = 'assignment_submission' AND ifNull(late, 0) = 1)) AS late_submissions,
    sumState(toUInt64(duration_seconds)) AS content_seconds,
    sumState(toUInt64(type = 'session' AND session_action = 'login')) AS logins,
    sumState(toUInt64(session_seconds)) AS session_seconds,
    kafka_partition
FROM events
ARRAY JOIN if(class_id = '', [('district', '', ''), ('school', school_id, '')],
    [('district', '', ''), ('school', school_id, ''), ('class', class_id, school_id)]) AS grain
WHERE role = 'student'
GROUP BY tenant_id, level, entity_id, parent_id, day, kafka_partition;
DROP TABLE IF EXISTS metrics_daily_untagged;
RENAME TABLE metrics_daily TO metrics_daily_untagged, metrics_daily_tagged TO metrics_daily;
DROP TABLE metrics_daily_untagged;
CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_daily_mv TO metrics_daily AS
SELECT
    tenant_id,
    grain.1 AS level,
    grain.2 AS entity_id,
    grain.3 AS parent_id,
    if(type = 'attendance', attendance_date, toDate(occurred_at)) AS day,
    uniqExactState(student_id) AS active_students,
    sumState(toUInt64(1)) AS events,
    sumState(toUInt64(type = 'attendance' AND attendance_status = 'present')) AS present,
    sumState(toUInt64(type = 'attendance' AND attendance_status = 'tardy')) AS tardy,
    sumState(toUInt64(type = 'attendance' AND attendance_status = 'absent')) AS absent,
    sumState(toUInt64(type = 'attendance' AND attendance_status = 'excused')) AS excused,
    sumState(toUInt64(type = 'attendance' AND attendance_status NOT IN ('present', 'tardy', 'absent', 'excused'))) AS other_marks,
    sumState(toUInt64(type = 'assessment_result' AND ifNull(max_score, 0) > 0)) AS assessments,
    sumStateIf(ifNull(score, 0) / ifNull(max_score, 1) * 100, type = 'assessment_result' AND ifNull(max_score, 0) > 0) AS score_pct_sum,
    quantilesStateIf(0.1, 0.25, 0.5, 0.75, 0.9)(ifNull(score, 0) / ifNull(max_score, 1) * 100,
        type = 'assessment_result' AND ifNull(max_score, 0) > 0) AS score_quantiles,
    sumState(toUInt64(type = 'assignment_submission')) AS submissions,
    sumState(toUInt64(type = 'assignment_submission' AND ifNull(late, 0) = 1)) AS late_submissions,
    sumState(toUInt64(duration_seconds)) AS content_seconds,
    sumState(toUInt64(type = 'session' AND session_action = 'login')) AS logins,
    sumState(toUInt64(session_seconds)) AS session_seconds,
    kafka_partition
FROM events
ARRAY JOIN if(class_id = '', [('district', '', ''), ('school', school_id, '')],
    [('district', '', ''), ('school', school_id, ''), ('class', class_id, school_id)]) AS grain
WHERE role = 'student'
GROUP BY tenant_id, level, entity_id, parent_id, day, kafka_partition;

-- metrics_student_daily
DROP TABLE IF EXISTS metrics_student_daily_mv;
DROP TABLE IF EXISTS metrics_student_daily_tagged;
CREATE TABLE metrics_student_daily_tagged
(
    tenant_id        LowCardinality(String),
    student_id       UUID,
    day              Date,
    pseudonym        String,
    events           AggregateFunction(sum, UInt64),
    present          AggregateFunction(sum, UInt64),
    tardy            AggregateFunction(sum, UInt64),
    absent           AggregateFunction(sum, UInt64),
    excused          AggregateFunction(sum, UInt64),
    other_marks      AggregateFunction(sum, UInt64),
    assessments      AggregateFunction(sum, UInt64),
    score_pct_sum    AggregateFunction(sum, Float64),
    score_quantiles  AggregateFunction(quantiles(0.1, 0.25, 0.5, 0.75, 0.9), Float64),
    submissions      AggregateFunction(sum, UInt64),
    late_submissions AggregateFunction(sum, UInt64),
    content_seconds  AggregateFunction(sum, UInt64),
    logins           AggregateFunction(sum, UInt64),
    session_seconds  AggregateFunction(sum, UInt64),
    kafka_partition  UInt32
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, student_id, day, kafka_partition)
SETTINGS index_granularity = 256;
INSERT INTO metrics_student_daily_tagged
SELECT
    tenant_id,
    student_id,
    if(type = 'attendance', attendance_date, toDate(occurred_at)) AS day,
    any(pseudonym) AS pseudonym,
    sumState(toUInt64(1)) AS events,
    sumState(toUInt64(type = 'attendance' AND attendance_status = 'present')) AS present,
    sumState(toUInt64(type = 'attendance' AND attendance_status = 'tardy')) AS tardy,
    sumState(toUInt64(type = 'attendance' AND attendance_status = 'absent')) AS absent,
    sumState(toUInt64(type = 'attendance' AND attendance_status = 'excused')) AS excused,
    sumState(toUInt64(type = 'attendance' AND attendance_status NOT IN ('present', 'tardy', 'absent', 'excused'))) AS other_marks,
    sumState(toUInt64(type = 'assessment_result' AND ifNull(max_score, 0) > 0)) AS assessments,
    sumStateIf(ifNull(score, 0) / ifNull(max_score, 1) * 100, type = 'assessment_result' AND ifNull(max_score, 0) > 0) AS score_pct_sum,
    quantilesStateIf(0.1, 0.25, 0.5, 0.75, 0.9)(ifNull(score, 0) / ifNull(max_score, 1) * 100,
        type = 'assessment_result' AND ifNull(max_score, 0) > 0) AS score_quantiles,
    sumState(toUInt64(type = 'assignment_submission')) AS submissions,
    sumState(toUInt64(type = 'assignment_submission' AND ifNull(late, 0) = 1)) AS late_submissions,
    sumState(toUInt64(duration_seconds)) AS content_seconds,
    sumState(toUInt64(type = 'session' AND session_action = 'login')) AS logins,
    sumState(toUInt64(session_seconds)) AS session_seconds,
    kafka_partition
FROM events
WHERE role = 'student'
GROUP BY tenant_id, student_id, day, kafka_partition;
DROP TABLE IF EXISTS metrics_student_daily_untagged;
RENAME TABLE metrics_student_daily TO metrics_student_daily_untagged, metrics_student_daily_tagged TO metrics_student_daily;
DROP TABLE metrics_student_daily_untagged;
CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_student_daily_mv TO metrics_student_daily AS
SELECT
    tenant_id,
    student_id,
    if(type = 'attendance', attendance_date, toDate(occurred_at)) AS day,
    any(pseudonym) AS pseudonym,
    sumState(toUInt64(1)) AS events,
    sumState(toUInt64(type = 'attendance' AND attendance_status = 'present')) AS present,
    sumState(toUInt64(type = 'attendance' AND attendance_status = 'tardy')) AS tardy,
    sumState(toUInt64(type = 'attendance' AND attendance_status = 'absent')) AS absent,
    sumState(toUInt64(type = 'attendance' AND attendance_status = 'excused')) AS excused,
    sumState(toUInt64(type = 'attendance' AND attendance_status NOT IN ('present', 'tardy', 'absent', 'excused'))) AS other_marks,
    sumState(toUInt64(type = 'assessment_result' AND ifNull(max_score, 0) > 0)) AS assessments,
    sumStateIf(ifNull(score, 0) / ifNull(max_score, 1) * 100, type = 'assessment_result' AND ifNull(max_score, 0) > 0) AS score_pct_sum,
    quantilesStateIf(0.1, 0.25, 0.5, 0.75, 0.9)(ifNull(score, 0) / ifNull(max_score, 1) * 100,
        type = 'assessment_result' AND ifNull(max_score, 0) > 0) AS score_quantiles,
    sumState(toUInt64(type = 'assignment_submission')) AS submissions,
    sumState(toUInt64(type = 'assignment_submission' AND ifNull(late, 0) = 1)) AS late_submissions,
    sumState(toUInt64(duration_seconds)) AS content_seconds,
    sumState(toUInt64(type = 'session' AND session_action = 'login')) AS logins,
    sumState(toUInt64(session_seconds)) AS session_seconds,
    kafka_partition
FROM events
WHERE role = 'student'
GROUP BY tenant_id, student_id, day, kafka_partition;
