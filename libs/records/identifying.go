package records

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The identifying fields of a raw record: what names or describes a person. The gateway seals them under
// the person's data key (libs/keyring, ADR 0010) before the record reaches Kafka, and the enricher opens
// them, so once the key is shredded nothing readable about the person is left in the raw topic, its
// archive or its dead letters. Their paths are the policy's field names.

// IdentifyingStrings calls fn with the path and address of each identifying string field of the record
// that is set: the actor's SIS id, free text about the person, and the names, ids and contact details of
// OneRoster users, demographics, enrollments and results.
func (e *RawEvent) IdentifyingStrings(fn func(path string, p *string)) { e.identifying().strings(fn) }

// IdentifyingStrings is RawEvent.IdentifyingStrings for an enriched record (whose actor SIS id is kept
// only when the district's policy allows it).
func (e *EnrichedEvent) IdentifyingStrings(fn func(path string, p *string)) {
	e.identifying().strings(fn)
}

// PackSealed moves the identifying fields that are not strings into Sealed, as a JSON object (not yet
// sealed: IdentifyingStrings then names Sealed like any other identifying string), and nulls them. A
// record without such fields is left as it is.
func (e *RawEvent) PackSealed() error { return e.identifying().pack() }

// PackSealed is RawEvent.PackSealed for an enriched record.
func (e *EnrichedEvent) PackSealed() error { return e.identifying().pack() }

// UnpackSealed puts the fields of an opened Sealed back in their places and clears Sealed.
func (e *RawEvent) UnpackSealed() error { return e.identifying().unpack() }

// UnpackSealed is RawEvent.UnpackSealed for an enriched record.
func (e *EnrichedEvent) UnpackSealed() error { return e.identifying().unpack() }

// identifying is what a record holds of identifying fields, whichever its envelope.
type identifying struct {
	sis    *string
	att    *Attendance
	sess   *SessionEvent
	user   *RosterUser
	demo   *RosterDemographics
	enr    *RosterEnrollment
	res    *RosterResult
	sealed **string
}

func (e *RawEvent) identifying() identifying {
	return identifying{&e.Actor.SISID, e.Attendance, e.Session, e.RosterUser, e.RosterDemographics, e.RosterEnrollment, e.RosterResult, &e.Sealed}
}

func (e *EnrichedEvent) identifying() identifying {
	return identifying{e.Actor.SISID, e.Attendance, e.Session, e.RosterUser, e.RosterDemographics, e.RosterEnrollment, e.RosterResult, &e.Sealed}
}

func (e identifying) strings(fn func(path string, p *string)) {
	opt := func(path string, p *string) {
		if p != nil {
			fn(path, p)
		}
	}
	opt("actor.sis_id", e.sis)
	if a := e.att; a != nil {
		opt("attendance.reason", a.Reason)
	}
	if s := e.sess; s != nil {
		opt("session.device", s.Device)
	}
	if u := e.user; u != nil {
		fn("roster_user.sourced_id", &u.SourcedID)
		opt("roster_user.username", u.Username)
		for i := range u.UserIds {
			fn("roster_user.user_ids.identifier", &u.UserIds[i].Identifier)
		}
		fn("roster_user.given_name", &u.GivenName)
		fn("roster_user.family_name", &u.FamilyName)
		opt("roster_user.middle_name", u.MiddleName)
		opt("roster_user.preferred_first_name", u.PreferredFirstName)
		opt("roster_user.preferred_last_name", u.PreferredLastName)
		opt("roster_user.pronouns", u.Pronouns)
		opt("roster_user.identifier", u.Identifier)
		opt("roster_user.user_master_identifier", u.UserMasterIdentifier)
		opt("roster_user.email", u.Email)
		opt("roster_user.sms", u.SMS)
		opt("roster_user.phone", u.Phone)
		for i := range u.AgentSourcedIds {
			fn("roster_user.agent_sourced_ids", &u.AgentSourcedIds[i])
		}
	}
	if d := e.demo; d != nil {
		fn("roster_demographics.sourced_id", &d.SourcedID)
		opt("roster_demographics.sex", d.Sex)
		opt("roster_demographics.country_of_birth_code", d.CountryOfBirthCode)
		opt("roster_demographics.state_of_birth_abbreviation", d.StateOfBirthAbbreviation)
		opt("roster_demographics.city_of_birth", d.CityOfBirth)
		opt("roster_demographics.public_school_residence_status", d.PublicSchoolResidenceStatus)
	}
	if en := e.enr; en != nil {
		fn("roster_enrollment.user_sourced_id", &en.UserSourcedID)
	}
	if r := e.res; r != nil {
		fn("roster_result.student_sourced_id", &r.StudentSourcedID)
		opt("roster_result.comment", r.Comment)
	}
	opt("sealed", *e.sealed)
}

// sealedFields are the identifying fields that are not strings, as RawEvent.Sealed carries them.
type sealedFields struct {
	UserBirthDate                        *string `json:"roster_user.birth_date,omitempty"`
	BirthDate                            *string `json:"roster_demographics.birth_date,omitempty"`
	AmericanIndianOrAlaskaNative         *bool   `json:"roster_demographics.american_indian_or_alaska_native,omitempty"`
	Asian                                *bool   `json:"roster_demographics.asian,omitempty"`
	BlackOrAfricanAmerican               *bool   `json:"roster_demographics.black_or_african_american,omitempty"`
	NativeHawaiianOrOtherPacificIslander *bool   `json:"roster_demographics.native_hawaiian_or_other_pacific_islander,omitempty"`
	White                                *bool   `json:"roster_demographics.white,omitempty"`
	TwoOrMoreRaces                       *bool   `json:"roster_demographics.demographic_race_two_or_more_races,omitempty"`
	HispanicOrLatinoEthnicity            *bool   `json:"roster_demographics.hispanic_or_latino_ethnicity,omitempty"`
}

// demographicFlags pairs the flags of a demographics record with their places in sealedFields.
func demographicFlags(d *RosterDemographics, f *sealedFields) []struct{ rec, sealed **bool } {
	return []struct{ rec, sealed **bool }{
		{&d.AmericanIndianOrAlaskaNative, &f.AmericanIndianOrAlaskaNative}, {&d.Asian, &f.Asian},
		{&d.BlackOrAfricanAmerican, &f.BlackOrAfricanAmerican},
		{&d.NativeHawaiianOrOtherPacificIslander, &f.NativeHawaiianOrOtherPacificIslander}, {&d.White, &f.White},
		{&d.DemographicRaceTwoOrMoreRaces, &f.TwoOrMoreRaces}, {&d.HispanicOrLatinoEthnicity, &f.HispanicOrLatinoEthnicity},
	}
}

func (e identifying) pack() error {
	var f sealedFields
	packed := false
	if u := e.user; u != nil && u.BirthDate != nil {
		f.UserBirthDate, u.BirthDate, packed = ptrTo(u.BirthDate.Format(time.DateOnly)), nil, true
	}
	if d := e.demo; d != nil {
		if d.BirthDate != nil {
			f.BirthDate, d.BirthDate, packed = ptrTo(d.BirthDate.Format(time.DateOnly)), nil, true
		}
		for _, flag := range demographicFlags(d, &f) {
			if *flag.rec != nil {
				*flag.sealed, *flag.rec, packed = *flag.rec, nil, true
			}
		}
	}
	if !packed {
		return nil
	}
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("packing sealed fields: %w", err)
	}
	*e.sealed = ptrTo(string(b))
	return nil
}

func (e identifying) unpack() error {
	if *e.sealed == nil {
		return nil
	}
	var f sealedFields
	dec := json.NewDecoder(strings.NewReader(**e.sealed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("sealed: %w", err)
	}
	date := func(path string, s *string) (*time.Time, error) {
		if s == nil {
			return nil, nil
		}
		t, err := time.Parse(time.DateOnly, *s)
		if err != nil {
			return nil, fmt.Errorf("sealed %s: %w", path, err)
		}
		return &t, nil
	}
	if f.UserBirthDate != nil {
		if e.user == nil {
			return errors.New("sealed: roster_user.birth_date in a record without a user")
		}
		t, err := date("roster_user.birth_date", f.UserBirthDate)
		if err != nil {
			return err
		}
		e.user.BirthDate = t
	}
	if d := e.demo; d != nil {
		t, err := date("roster_demographics.birth_date", f.BirthDate)
		if err != nil {
			return err
		}
		if t != nil {
			d.BirthDate = t
		}
		for _, flag := range demographicFlags(d, &f) {
			if *flag.sealed != nil {
				*flag.rec = *flag.sealed
			}
		}
	} else if f != (sealedFields{UserBirthDate: f.UserBirthDate}) {
		return errors.New("sealed: demographics fields in a record without demographics")
	}
	*e.sealed = nil
	return nil
}

func ptrTo[T any](v T) *T { return &v }
