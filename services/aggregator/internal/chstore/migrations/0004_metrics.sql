-- metrics_daily and metrics_student_daily: what students did per UTC day, at four grains, each kept by a
-- materialized view on events within the INSERT that stores the events.
--
-- Only events whose actor has role 'student' count: a teacher's login or content view is not student
-- activity. An attendance mark counts on its attendance date, every other event on the day it occurred.
--
-- metrics_daily holds three grains in one table, told apart by level, which leads its sort key: a
-- dashboard reads (level, tenant, entity) and a cross-district benchmark reads the district rows of every
-- tenant, which are then one contiguous range:
--   level 'district'  entity_id ''         parent_id ''         one row per district and day
--   level 'school'    entity_id school id  parent_id ''         one per school and day ('' = no school)
--   level 'class'     entity_id class id   parent_id school id  one per class, its school and day
-- One table and one view for the three (the view emits each event once per grain with ARRAY JOIN) keep
-- an insert to two parts instead of six: on ClickHouse every part written costs, and a batch pays for
-- each. metrics_student_daily holds one row per student and day they were active, keyed
-- (tenant_id, student_id, day), with their pseudonym; it has no school or class (a student's day spans
-- classes): who may read which student is decided from the roster.
--
-- Every measure is a partial aggregate that merges combine, so read with the -Merge combinators and
-- GROUP BY (the analyst views are finalized):
--   active_students  uniqExactMerge: distinct students (merged over a range: the students active at least
--                    once in it, not the sum of the daily counts); not kept per student
--   events           sumMerge: events of students
--   present, tardy, absent, excused, other_marks
--                    sumMerge: attendance marks by status; the attendance rate is
--                    (present + tardy) / (present + tardy + absent + excused + other_marks)
--   assessments      sumMerge: assessment results with max_score > 0
--   score_pct_sum    sumMerge: the sum of their score / max_score * 100 (mean = score_pct_sum / assessments)
--   score_quantiles  quantilesMerge(0.1, 0.25, 0.5, 0.75, 0.9): those percentages at these levels (exact,
--                    linearly interpolated, up to 8,192 scores in what is merged; a uniform sample beyond)
--   submissions, late_submissions
--                    sumMerge: assignment submissions, and those the enricher derived as late
--   content_seconds  sumMerge: seconds on content (content views)
--   logins           sumMerge: session events with action 'login'
--   session_seconds  sumMerge: seconds of sessions (logouts that carry a length)
--
-- index_granularity is 256, not 8192: rows are fat (a uniqExact state holds every student's id) and
-- dashboards read one entity's few rows, so a granule of 8,192 rows made a district summary read and
-- deserialize some 50,000 states of other rows (36 MiB) instead of a few hundred (0.5 MiB).
--
-- level is a String, not LowCardinality: 18.16 refuses a String result into a LowCardinality column of a
-- view's target. It sits in the sort key, where it compresses to almost nothing. The school of a class is
-- parent_id, not school_id: 18.16 cannot alias an expression to the name of a column it reads.

CREATE TABLE IF NOT EXISTS metrics_daily
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
    session_seconds  AggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (level, tenant_id, entity_id, parent_id, day)
SETTINGS index_granularity = 256;

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
    sumState(toUInt64(session_seconds)) AS session_seconds
FROM events
ARRAY JOIN if(class_id = '', [('district', '', ''), ('school', school_id, '')],
    [('district', '', ''), ('school', school_id, ''), ('class', class_id, school_id)]) AS grain
WHERE role = 'student'
GROUP BY tenant_id, level, entity_id, parent_id, day;

CREATE TABLE IF NOT EXISTS metrics_student_daily
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
    session_seconds  AggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, student_id, day)
SETTINGS index_granularity = 256;

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
    sumState(toUInt64(session_seconds)) AS session_seconds
FROM events
WHERE role = 'student'
GROUP BY tenant_id, student_id, day;
