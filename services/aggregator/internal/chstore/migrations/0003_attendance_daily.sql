-- attendance_daily: attendance marks per district, school, attendance date and status. Rows are summed by
-- background merges, so read with sum() and GROUP BY. Attendance rate of a school over September:
--   SELECT sumIf(marks, status IN ('present', 'tardy')) / sum(marks) AS attendance_rate
--   FROM attendance_daily
--   WHERE tenant_id = 'district-1' AND school_id = 'school-7'
--     AND day BETWEEN '2025-09-01' AND '2025-09-30'
CREATE TABLE IF NOT EXISTS attendance_daily
(
    tenant_id LowCardinality(String),
    school_id String,
    day       Date,
    status    LowCardinality(String),
    marks     UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, school_id, day, status);

CREATE MATERIALIZED VIEW IF NOT EXISTS attendance_daily_mv TO attendance_daily AS
SELECT
    tenant_id,
    school_id,
    attendance_date AS day,
    attendance_status AS status,
    count() AS marks
FROM events
WHERE type = 'attendance'
GROUP BY tenant_id, school_id, day, status;
