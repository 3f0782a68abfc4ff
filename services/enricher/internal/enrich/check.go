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
	case raw.RosterUser != nil:
		sourcedID, status, modified = raw.RosterUser.SourcedID, raw.RosterUser.Status, raw.RosterUser.DateLastModified
	case raw.RosterDemographics != nil:
		sourcedID, status, modified = raw.RosterDemographics.SourcedID, raw.RosterDemographics.Status, raw.RosterDemographics.DateLastModified
	case raw.RosterEnrollment != nil:
		e := raw.RosterEnrollment
		sourcedID, status, modified = e.SourcedID, e.Status, e.DateLastModified
		if e.UserSourcedID == "" {
			add("roster_enrollment.user_sourced_id", "is required")
		}
	case raw.RosterResult != nil:
		sourcedID, status, modified = raw.RosterResult.SourcedID, raw.RosterResult.Status, raw.RosterResult.DateLastModified
		if raw.RosterResult.StudentSourcedID == "" {
			add("roster_result.student_sourced_id", "is required")
		}
	case raw.RosterOrg != nil:
		sourcedID, status, modified = raw.RosterOrg.SourcedID, raw.RosterOrg.Status, raw.RosterOrg.DateLastModified
	case raw.RosterAcademicSession != nil:
		a := raw.RosterAcademicSession
		sourcedID, status, modified = a.SourcedID, a.Status, a.DateLastModified
	case raw.RosterCourse != nil:
		sourcedID, status, modified = raw.RosterCourse.SourcedID, raw.RosterCourse.Status, raw.RosterCourse.DateLastModified
	case raw.RosterClass != nil:
		sourcedID, status, modified = raw.RosterClass.SourcedID, raw.RosterClass.Status, raw.RosterClass.DateLastModified
	case raw.RosterLineItem != nil:
		sourcedID, status, modified = raw.RosterLineItem.SourcedID, raw.RosterLineItem.Status, raw.RosterLineItem.DateLastModified
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
