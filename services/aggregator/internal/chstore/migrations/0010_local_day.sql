-- Rollup days are the district's local days (ADR 0024). The enricher stamps each event with the date it
-- happened on in its district's time zone (enriched_event.local_date); the aggregator writes it to
-- events.local_day, and the rollups that counted toDate(occurred_at) count local_day instead. Rows written
-- before this migration read local_day as their UTC date (the column's default), the day they were
-- counted on, so the rollups already stored stay right and nothing is rebuilt. Attendance keeps the
-- school's own attendance_date.
--
-- The views are dropped and created again under the same names (18.16 has no ALTER of a view's query);
-- every statement can run again after a failure. As for 0006, aggregators must be stopped while it runs
-- (it runs when one starts): an insert between a view's DROP and CREATE would miss that rollup.
ALTER TABLE events ADD COLUMN local_day Date DEFAULT toDate(occurred_at) AFTER occurred_ms;

DROP TABLE IF EXISTS school_daily_mv;
CREATE MATERIALIZED VIEW IF NOT EXISTS school_daily_mv TO school_daily AS
SELECT
    tenant_id,
    school_id,
    local_day AS day,
    uniqExactStateIf(student_id, role = 'student') AS active_students,
    countState() AS events,
    sumState(toUInt64(duration_seconds)) AS content_seconds,
    kafka_partition
FROM events
GROUP BY tenant_id, school_id, day, kafka_partition;

DROP TABLE IF EXISTS metrics_daily_mv;
CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_daily_mv TO metrics_daily AS
SELECT
    tenant_id,
    grain.1 AS level,
    grain.2 AS entity_id,
    grain.3 AS parent_id,
    if(type = 'attendance', attendance_date, local_day) AS day,
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

DROP TABLE IF EXISTS metrics_student_daily_mv;
CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_student_daily_mv TO metrics_student_daily AS
SELECT
    tenant_id,
    student_id,
    if(type = 'attendance', attendance_date, local_day) AS day,
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
