package records

// The identifying fields of a raw record: what names or describes a person. The gateway seals them under
// the person's data key (libs/keyring, ADR 0010) before the record reaches Kafka, and the enricher opens
// them, so once the key is shredded nothing readable about the person is left in the raw topic, its
// archive or its dead letters. Their paths are the policy's field names.

// IdentifyingStrings calls fn with the path and address of each identifying string field of the record
// that is set: the actor's SIS id, free text about the person, and the names, ids and contact details of
// OneRoster users, demographics, enrollments and results.
func (e *RawEvent) IdentifyingStrings(fn func(path string, p *string)) {
	opt := func(path string, p *string) {
		if p != nil {
			fn(path, p)
		}
	}
	fn("actor.sis_id", &e.Actor.SISID)
	if a := e.Attendance; a != nil {
		opt("attendance.reason", a.Reason)
	}
	if s := e.Session; s != nil {
		opt("session.device", s.Device)
	}
	if u := e.RosterUser; u != nil {
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
	if d := e.RosterDemographics; d != nil {
		fn("roster_demographics.sourced_id", &d.SourcedID)
		opt("roster_demographics.sex", d.Sex)
		opt("roster_demographics.country_of_birth_code", d.CountryOfBirthCode)
		opt("roster_demographics.state_of_birth_abbreviation", d.StateOfBirthAbbreviation)
		opt("roster_demographics.city_of_birth", d.CityOfBirth)
		opt("roster_demographics.public_school_residence_status", d.PublicSchoolResidenceStatus)
	}
	if en := e.RosterEnrollment; en != nil {
		fn("roster_enrollment.user_sourced_id", &en.UserSourcedID)
	}
	if r := e.RosterResult; r != nil {
		fn("roster_result.student_sourced_id", &r.StudentSourcedID)
		opt("roster_result.comment", r.Comment)
	}
}
