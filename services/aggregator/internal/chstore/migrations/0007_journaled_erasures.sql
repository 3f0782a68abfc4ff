-- A journal row can record the erasure of a student from the partition (see erase.go): the student's
-- internal id, empty for an insert. A repair of an unfinished erasure deletes the student's events rows of
-- the partition again and derives the rollups of the days recorded in the row again.
ALTER TABLE insert_journal ADD COLUMN erase_student String DEFAULT '';
