package policy

import (
	"github.com/edtech-analytics/platform/libs/records"
)

// fieldFn applies o to one field of ev and reports whether the field was present.
type fieldFn func(ev *records.EnrichedEvent, o op) bool

// fieldDef is where a policy field lives: typ is the event type whose payload holds it ("" for fields of
// every record).
type fieldDef struct {
	typ string
	fn  fieldFn
}

// fieldTable implements every path of privacy.Fields (a test keeps the two in step).
func fieldTable() map[string]fieldDef {
	return map[string]fieldDef{
		"actor.sis_id":        {"", func(ev *records.EnrichedEvent, o op) bool { return o.opt(&ev.Actor.SISID) }},
		"school_id":           {"", func(ev *records.EnrichedEvent, o op) bool { return o.opt(&ev.SchoolID) }},
		"class_id":            {"", func(ev *records.EnrichedEvent, o op) bool { return o.opt(&ev.ClassID) }},
		"session_id":          {"", func(ev *records.EnrichedEvent, o op) bool { return o.opt(&ev.SessionID) }},
		"derived.age_band":    {"", func(ev *records.EnrichedEvent, o op) bool { return o.opt(&ev.Derived.AgeBand) }},
		"derived.grade_level": {"", func(ev *records.EnrichedEvent, o op) bool { return o.opt(&ev.Derived.GradeLevel) }},
		"derived.academic_session_id": {"", func(ev *records.EnrichedEvent, o op) bool {
			return o.opt(&ev.Derived.AcademicSessionID)
		}},

		"attendance.reason": {records.TypeAttendance, func(ev *records.EnrichedEvent, o op) bool { return o.opt(&ev.Attendance.Reason) }},
		"session.device":    {records.TypeSession, func(ev *records.EnrichedEvent, o op) bool { return o.opt(&ev.Session.Device) }},
		"session.app":       {records.TypeSession, func(ev *records.EnrichedEvent, o op) bool { return o.opt(&ev.Session.App) }},

		"roster_user.sourced_id":           user(func(u *records.RosterUser, o op) bool { return o.str(&u.SourcedID) }),
		"roster_user.username":             user(func(u *records.RosterUser, o op) bool { return o.opt(&u.Username) }),
		"roster_user.user_ids":             user(func(u *records.RosterUser, o op) bool { return value(o, &u.UserIds, len(u.UserIds) > 0) }),
		"roster_user.given_name":           user(func(u *records.RosterUser, o op) bool { return o.str(&u.GivenName) }),
		"roster_user.family_name":          user(func(u *records.RosterUser, o op) bool { return o.str(&u.FamilyName) }),
		"roster_user.middle_name":          user(func(u *records.RosterUser, o op) bool { return o.opt(&u.MiddleName) }),
		"roster_user.preferred_first_name": user(func(u *records.RosterUser, o op) bool { return o.opt(&u.PreferredFirstName) }),
		"roster_user.preferred_last_name":  user(func(u *records.RosterUser, o op) bool { return o.opt(&u.PreferredLastName) }),
		"roster_user.pronouns":             user(func(u *records.RosterUser, o op) bool { return o.opt(&u.Pronouns) }),
		"roster_user.identifier":           user(func(u *records.RosterUser, o op) bool { return o.opt(&u.Identifier) }),
		"roster_user.user_master_identifier": user(func(u *records.RosterUser, o op) bool {
			return o.opt(&u.UserMasterIdentifier)
		}),
		"roster_user.email":      user(func(u *records.RosterUser, o op) bool { return o.opt(&u.Email) }),
		"roster_user.sms":        user(func(u *records.RosterUser, o op) bool { return o.opt(&u.SMS) }),
		"roster_user.phone":      user(func(u *records.RosterUser, o op) bool { return o.opt(&u.Phone) }),
		"roster_user.birth_date": user(func(u *records.RosterUser, o op) bool { return o.date(&u.BirthDate) }),
		"roster_user.agent_sourced_ids": user(func(u *records.RosterUser, o op) bool {
			return value(o, &u.AgentSourcedIds, len(u.AgentSourcedIds) > 0)
		}),
		"roster_user.metadata": user(func(u *records.RosterUser, o op) bool { return value(o, &u.Metadata, len(u.Metadata) > 0) }),

		"roster_demographics.sourced_id": demo(func(d *records.RosterDemographics, o op) bool { return o.str(&d.SourcedID) }),
		"roster_demographics.birth_date": demo(func(d *records.RosterDemographics, o op) bool { return o.date(&d.BirthDate) }),
		"roster_demographics.sex":        demo(func(d *records.RosterDemographics, o op) bool { return o.opt(&d.Sex) }),
		"roster_demographics.race": demo(func(d *records.RosterDemographics, o op) bool {
			present := false
			for _, f := range []**bool{&d.AmericanIndianOrAlaskaNative, &d.Asian, &d.BlackOrAfricanAmerican,
				&d.NativeHawaiianOrOtherPacificIslander, &d.White, &d.DemographicRaceTwoOrMoreRaces, &d.HispanicOrLatinoEthnicity} {
				present = value(o, f, *f != nil) || present
			}
			return present
		}),
		"roster_demographics.country_of_birth_code": demo(func(d *records.RosterDemographics, o op) bool {
			return o.opt(&d.CountryOfBirthCode)
		}),
		"roster_demographics.state_of_birth_abbreviation": demo(func(d *records.RosterDemographics, o op) bool {
			return o.opt(&d.StateOfBirthAbbreviation)
		}),
		"roster_demographics.city_of_birth": demo(func(d *records.RosterDemographics, o op) bool { return o.opt(&d.CityOfBirth) }),
		"roster_demographics.public_school_residence_status": demo(func(d *records.RosterDemographics, o op) bool {
			return o.opt(&d.PublicSchoolResidenceStatus)
		}),
		"roster_demographics.metadata": demo(func(d *records.RosterDemographics, o op) bool {
			return value(o, &d.Metadata, len(d.Metadata) > 0)
		}),

		"roster_enrollment.user_sourced_id": {records.TypeRosterEnrollment, func(ev *records.EnrichedEvent, o op) bool {
			return o.str(&ev.RosterEnrollment.UserSourcedID)
		}},
		"roster_result.student_sourced_id": {records.TypeRosterResult, func(ev *records.EnrichedEvent, o op) bool {
			return o.str(&ev.RosterResult.StudentSourcedID)
		}},
		"roster_result.comment": {records.TypeRosterResult, func(ev *records.EnrichedEvent, o op) bool {
			return o.opt(&ev.RosterResult.Comment)
		}},

		"custom.properties": {records.TypeCustom, func(ev *records.EnrichedEvent, o op) bool {
			return o.pairs(&ev.Custom.PropertyKeys, &ev.Custom.PropertyValues)
		}},
		"generic.object_id": {records.TypeGeneric, func(ev *records.EnrichedEvent, o op) bool { return o.str(&ev.Generic.ObjectID) }},
		"generic.extensions": {records.TypeGeneric, func(ev *records.EnrichedEvent, o op) bool {
			return o.pairs(&ev.Generic.ExtensionKeys, &ev.Generic.ExtensionValues)
		}},
	}
}

// textOnlyFields implements the free-text fields of privacy.FreeTextFields that a policy cannot name:
// they are only scanned for personal data.
func textOnlyFields() map[string]fieldDef {
	return map[string]fieldDef{
		"roster_result.text_score": {records.TypeRosterResult, func(ev *records.EnrichedEvent, o op) bool {
			return o.opt(&ev.RosterResult.TextScore)
		}},
		"roster_line_item.description": {records.TypeRosterLineItem, func(ev *records.EnrichedEvent, o op) bool {
			return o.opt(&ev.RosterLineItem.Description)
		}},
	}
}

func user(fn func(*records.RosterUser, op) bool) fieldDef {
	return fieldDef{records.TypeRosterUser, func(ev *records.EnrichedEvent, o op) bool { return fn(ev.RosterUser, o) }}
}

func demo(fn func(*records.RosterDemographics, op) bool) fieldDef {
	return fieldDef{records.TypeRosterDemographics, func(ev *records.EnrichedEvent, o op) bool { return fn(ev.RosterDemographics, o) }}
}
