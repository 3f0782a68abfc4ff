-- school_daily: per district, school and UTC day of occurred_at, the students active that day (distinct
-- internal ids of actors with role 'student'), the number of events, and the seconds spent on content.
-- A row holds partial aggregates that background merges combine, so always read it with the -Merge
-- combinators and GROUP BY; a plain SELECT of the columns sees one partial row per insert:
--   SELECT day,
--          uniqExactMerge(active_students) AS active_students,
--          countMerge(events)              AS events,
--          sumMerge(content_seconds)       AS content_seconds
--   FROM school_daily
--   WHERE tenant_id = 'district-1' AND school_id = 'school-7'
--     AND day BETWEEN '2025-09-01' AND '2025-09-30'
--   GROUP BY day ORDER BY day
-- Distinct students over a longer span merge the same states: drop day from the GROUP BY to get the
-- students active at least once in the range (not the sum of the daily counts).
CREATE TABLE IF NOT EXISTS school_daily
(
    tenant_id       LowCardinality(String),
    school_id       String,
    day             Date,
    active_students AggregateFunction(uniqExact, UUID),
    events          AggregateFunction(count),
    content_seconds AggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, school_id, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS school_daily_mv TO school_daily AS
SELECT
    tenant_id,
    school_id,
    toDate(occurred_at) AS day,
    uniqExactStateIf(student_id, role = 'student') AS active_students,
    countState() AS events,
    sumState(toUInt64(duration_seconds)) AS content_seconds
FROM events
GROUP BY tenant_id, school_id, day;
