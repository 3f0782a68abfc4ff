package enrich

import (
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
)

// check validates what the enricher relies on in a decoded raw record and returns field-level errors.
// The gateway validates more on ingest; this guards against other producers and replays of old data.
func check(raw *records.RawEvent) []records.FieldError {
	var errs []records.FieldError
	add := func(field, msg string) { errs = append(errs, records.FieldError{Field: field, Message: msg}) }
	if err := raw.CheckPayload(); err != nil {
		add("type", err.Error())
		return errs
	}
	if raw.EventID == "" || len(raw.EventID) > 64 {
		add("event_id", "must be 1-64 characters")
	}
	if tenancy.ValidTenantID(raw.TenantID) != nil {
		add("tenant_id", "is not a valid tenant id")
	}
	if tenancy.ValidSourceID(raw.SourceID) != nil {
		add("source_id", "is not a valid source id")
	}
	switch {
	case raw.OccurredAt.IsZero():
		add("occurred_at", "is required")
	case !records.InTimeRange(raw.OccurredAt): // the gateway refuses these; replays of old data may not
		add("occurred_at", records.OutOfRange)
	}
	// Text the stores cannot hold (a NUL byte, invalid UTF-8) is refused here, before any of it reaches
	// the identity and roster tables: the gateway refuses it on ingest, other producers and old data may
	// not have.
	errs = append(errs, records.TextErrors(raw, "")...)
	if !records.IsRosterType(raw.Type) {
		if raw.Actor.SISID == "" {
			add("actor.sis_id", "is required")
		}
		return errs
	}
	var sourcedID, status string
	var modified time.Time
	switch {
	case raw.User != nil:
		sourcedID, status, modified = raw.User.SourcedID, raw.User.Status, raw.User.DateLastModified
	case raw.Demographics != nil:
		sourcedID, status, modified = raw.Demographics.SourcedID, raw.Demographics.Status, raw.Demographics.DateLastModified
	case raw.Enrollment != nil:
		e := raw.Enrollment
		sourcedID, status, modified = e.SourcedID, e.Status, e.DateLastModified
		if e.UserSourcedID == "" {
			add("roster_enrollment.user_sourced_id", "is required")
		}
	case raw.Result != nil:
		sourcedID, status, modified = raw.Result.SourcedID, raw.Result.Status, raw.Result.DateLastModified
		if raw.Result.StudentSourcedID == "" {
			add("roster_result.student_sourced_id", "is required")
		}
	case raw.Org != nil:
		sourcedID, status, modified = raw.Org.SourcedID, raw.Org.Status, raw.Org.DateLastModified
	case raw.AcademicSession != nil:
		a := raw.AcademicSession
		sourcedID, status, modified = a.SourcedID, a.Status, a.DateLastModified
	case raw.Course != nil:
		sourcedID, status, modified = raw.Course.SourcedID, raw.Course.Status, raw.Course.DateLastModified
	case raw.Class != nil:
		sourcedID, status, modified = raw.Class.SourcedID, raw.Class.Status, raw.Class.DateLastModified
	case raw.LineItem != nil:
		sourcedID, status, modified = raw.LineItem.SourcedID, raw.LineItem.Status, raw.LineItem.DateLastModified
	}
	field := strings.ReplaceAll(raw.Type, ".", "_") // the payload's Avro field name

	if sourcedID == "" {
		add(field+".sourced_id", "is required")
	}
	if status != records.RosterActive && status != records.RosterToBeDeleted {
		add(field+".status", "must be active or tobedeleted")
	}
	if modified.IsZero() {
		add(field+".date_last_modified", "is required")
	}
	return errs
}
