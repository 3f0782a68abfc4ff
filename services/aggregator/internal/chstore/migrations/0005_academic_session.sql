-- academic_session_id: the sourced id of the class's academic session that holds the event's UTC date
-- (enriched_event v2, derived.academic_session_id), so analysts can slice by term or grading period;
-- '' when the event has no class, the roster sent no matching session, or the record predates v2.
ALTER TABLE events ADD COLUMN academic_session_id String DEFAULT '' AFTER grade_level;
