package roster

import (
	"slices"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
)

// entity is one OneRoster collection: its names, record type, builder and the CSV columns the builder
// reads (derived from it: see csvColumns).
type entity struct {
	collection string // JSON collection; the CSV file is collection + ".csv"
	typ        string
	build      func(r *rec) *records.RawEvent
	// ignored are CSV columns of the OneRoster 1.1 and 1.2 bindings the platform does not carry.
	ignored []string
	// columns are the CSV columns a file may have (besides metadata.*); required are those a file must
	// have, since every row needs them.
	columns, required []string
}

// entities in dependency order, the order a CSV package is read in: orgs before the classes that
// name them, users before their enrollments.
var entities = withCSVColumns([]*entity{
	{collection: "orgs", typ: records.TypeRosterOrg, build: buildOrg},
	{collection: "academicSessions", typ: records.TypeRosterAcademicSession, build: buildAcademicSession},
	{collection: "courses", typ: records.TypeRosterCourse, build: buildCourse},
	{collection: "classes", typ: records.TypeRosterClass, build: buildClass},
	{collection: "users", typ: records.TypeRosterUser, build: buildUser,
		ignored: []string{"password", "resourceSourcedIds", "preferredMiddleName", "primaryOrgSourcedId"}},
	{collection: "enrollments", typ: records.TypeRosterEnrollment, build: buildEnrollment},
	{collection: "demographics", typ: records.TypeRosterDemographics, build: buildDemographics},
	{collection: "lineItems", typ: records.TypeRosterLineItem, build: buildLineItem},
	{collection: "results", typ: records.TypeRosterResult, build: buildResult},
})

// userColumn is the roles.csv column that joins a role onto its user.
const userColumn = "userSourcedId"

// roleColumns are the columns of OneRoster 1.2 roles.csv, whose rows join onto users by userColumn.
var roleColumns, roleRequired = func() ([]string, []string) {
	columns, required := csvColumns(func(r *rec) { r.role() }, "sourcedId", "userProfileSourcedId")
	return append([]string{userColumn}, columns...), append([]string{userColumn}, required...)
}()

func withCSVColumns(es []*entity) []*entity {
	for _, e := range es {
		e.columns, e.required = csvColumns(func(r *rec) {
			r.base()
			e.build(r)
		}, e.ignored...)
	}
	return es
}

// csvColumns returns the CSV columns read reads, then ignored, and the columns it requires: read is run
// once on a record whose every field is blank, as in a bulk file (where status and dateLastModified may
// be blank), noting the columns it asks for and those it reports missing.
func csvColumns(read func(r *rec), ignored ...string) (columns, required []string) {
	src := &columnRecorder{}
	r := &rec{src: src, bulk: true}
	read(r)
	for _, fe := range r.errs {
		if fe.Message == msgRequired && fe.Field != "" {
			required = append(required, fe.Field)
		}
	}
	return append(src.columns, ignored...), required
}

// columnRecorder is a source whose fields are all blank; it notes the CSV columns asked for.
type columnRecorder struct{ columns []string }

func (s *columnRecorder) note(f field) {
	if f.csv != "" && !slices.Contains(s.columns, f.csv) {
		s.columns = append(s.columns, f.csv)
	}
}

func (s *columnRecorder) at(f field) string                     { return f.csv }
func (s *columnRecorder) where() string                         { return "" }
func (s *columnRecorder) problem() string                       { return "" }
func (s *columnRecorder) text(f field) (string, string)         { s.note(f); return "", "" }
func (s *columnRecorder) texts(f field) ([]string, string)      { s.note(f); return nil, "" }
func (s *columnRecorder) ref(f field) (string, string)          { s.note(f); return "", "" }
func (s *columnRecorder) refs(f field) ([]string, string)       { s.note(f); return nil, "" }
func (s *columnRecorder) flag(f field) (*bool, string)          { s.note(f); return nil, "" }
func (s *columnRecorder) number(f field) (*float64, string)     { s.note(f); return nil, "" }
func (s *columnRecorder) metadata() (map[string]string, string) { return nil, "" }
func (s *columnRecorder) roles() ([]source, string)             { return nil, "" }
func (s *columnRecorder) userIDs(f field) ([]records.RosterUserID, string) {
	s.note(f)
	return nil, ""
}

func entityByCollection(name string) (*entity, bool) {
	for _, e := range entities {
		if e.collection == name {
			return e, true
		}
	}
	return nil, false
}

// OneRoster enumerations.
var (
	statuses        = enumSet{values: []string{statusActive, statusDeleted}}
	orgTypes        = enumSet{values: []string{"department", "school", "district", "local", "state", "national"}, extensible: true}
	sessionTypes    = enumSet{values: []string{"gradingPeriod", "semester", "schoolYear", "term"}, extensible: true}
	classTypes      = enumSet{values: []string{"homeroom", "scheduled"}, extensible: true}
	roleTypes       = enumSet{values: []string{"primary", "secondary"}}
	userRoles       = enumSet{values: []string{"aide", "counselor", "districtAdministrator", "guardian", "parent", "principal", "proctor", "relative", "siteAdministrator", "student", "systemAdministrator", "teacher", "administrator"}, extensible: true}
	enrollmentRoles = enumSet{values: []string{"administrator", "proctor", "student", "teacher", "aide", "guardian", "parent"}, extensible: true}
	sexes           = enumSet{values: []string{"female", "male", "other", "unspecified"}}
	scoreStatuses   = enumSet{values: []string{"exempt", "fully graded", "not submitted", "partially graded", "submitted"}}
)

func system(sourcedID string) records.Actor { return records.Actor{SISID: sourcedID, Role: RoleSystem} }

func orUnknown(role string) string {
	if role == "" {
		return RoleUnknown
	}
	return role
}

func buildOrg(r *rec) *records.RawEvent {
	o := &records.RosterOrg{SourcedID: r.sourcedID, Status: r.status, DateLastModified: r.modified, Metadata: r.meta,
		Name:               r.str(same("name"), required),
		Type:               r.enum(same("type"), orgTypes, required),
		Identifier:         r.opt(same("identifier")),
		ParentSourcedID:    r.optRef(field{"parent", "parentSourcedId"}),
		ChildrenSourcedIds: r.refs(field{"children", ""}, optional),
	}
	return &records.RawEvent{RosterOrg: o, Actor: system(r.sourcedID)}
}

func buildAcademicSession(r *rec) *records.RawEvent {
	start, end := r.date(same("startDate"), required), r.date(same("endDate"), required)
	r.ordered(start, same("endDate"), end, "startDate")
	year := r.id(same("schoolYear"), required)
	if year != "" && !isYear(year) {
		r.add(same("schoolYear"), "must be a year such as 2026")
	}
	s := &records.RosterAcademicSession{SourcedID: r.sourcedID, Status: r.status, DateLastModified: r.modified, Metadata: r.meta,
		Title:              r.str(same("title"), required),
		Type:               r.enum(same("type"), sessionTypes, required),
		StartDate:          deref(start),
		EndDate:            deref(end),
		SchoolYear:         year,
		ParentSourcedID:    r.optRef(field{"parent", "parentSourcedId"}),
		ChildrenSourcedIds: r.refs(field{"children", ""}, optional),
	}
	return &records.RawEvent{RosterAcademicSession: s, Actor: system(r.sourcedID)}
}

func isYear(s string) bool {
	if len(s) != 4 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func buildCourse(r *rec) *records.RawEvent {
	c := &records.RosterCourse{SourcedID: r.sourcedID, Status: r.status, DateLastModified: r.modified, Metadata: r.meta,
		Title:               r.str(same("title"), required),
		SchoolYearSourcedID: r.optRef(field{"schoolYear", "schoolYearSourcedId"}),
		CourseCode:          r.opt(same("courseCode")),
		Grades:              r.strs(same("grades")),
		Subjects:            r.strs(same("subjects")),
		SubjectCodes:        r.strs(same("subjectCodes")),
		OrgSourcedID:        r.ref(field{"org", "orgSourcedId"}, required),
	}
	return &records.RawEvent{RosterCourse: c, Actor: system(r.sourcedID)}
}

func buildClass(r *rec) *records.RawEvent {
	c := &records.RosterClass{SourcedID: r.sourcedID, Status: r.status, DateLastModified: r.modified, Metadata: r.meta,
		Title:           r.str(same("title"), required),
		ClassCode:       r.opt(same("classCode")),
		ClassType:       r.enum(same("classType"), classTypes, required),
		Location:        r.opt(same("location")),
		Grades:          r.strs(same("grades")),
		Subjects:        r.strs(same("subjects")),
		SubjectCodes:    r.strs(same("subjectCodes")),
		Periods:         r.strs(same("periods")),
		CourseSourcedID: r.ref(field{"course", "courseSourcedId"}, required),
		SchoolSourcedID: r.ref(field{"school", "schoolSourcedId"}, required),
		TermSourcedIds:  r.refs(field{"terms", "termSourcedIds"}, required),
	}
	return &records.RawEvent{RosterClass: c, Actor: system(r.sourcedID), SchoolID: ptr(c.SchoolSourcedID)}
}

func buildUser(r *rec) *records.RawEvent {
	u := &records.RosterUser{SourcedID: r.sourcedID, Status: r.status, DateLastModified: r.modified, Metadata: r.meta,
		EnabledUser:          deref(r.flag(same("enabledUser"), required)),
		Username:             r.opt(same("username")),
		UserIds:              r.userIDs(same("userIds")),
		GivenName:            r.str(same("givenName"), required),
		FamilyName:           r.str(same("familyName"), required),
		MiddleName:           r.opt(same("middleName")),
		PreferredFirstName:   r.opt(field{"preferredFirstName", "preferredGivenName"}),
		PreferredLastName:    r.opt(field{"preferredLastName", "preferredFamilyName"}),
		Pronouns:             r.opt(same("pronouns")),
		Identifier:           r.opt(same("identifier")),
		UserMasterIdentifier: r.opt(same("userMasterIdentifier")),
		Email:                r.opt(same("email")),
		SMS:                  r.opt(same("sms")),
		Phone:                r.opt(same("phone")),
		AgentSourcedIds:      r.refs(field{"agents", "agentSourcedIds"}, optional),
		Grades:               r.strs(same("grades")),
	}
	u.Roles = r.userRoles()
	u.OrgSourcedIds = []string{}
	for _, role := range u.Roles {
		if !slices.Contains(u.OrgSourcedIds, role.OrgSourcedID) {
			u.OrgSourcedIds = append(u.OrgSourcedIds, role.OrgSourcedID)
		}
	}
	return &records.RawEvent{RosterUser: u, Actor: records.Actor{SISID: r.sourcedID, Role: primaryRole(u.Roles)}}
}

// userRoles reads a user's roles: OneRoster 1.2 roles (JSON roles, CSV roles.csv rows) or, without
// them, OneRoster 1.1's one role in each of the user's orgs. Deleted roles.csv rows are left out.
func (r *rec) userRoles() []records.RosterRole {
	out := []records.RosterRole{}
	errs := len(r.errs)
	srcs, problem := r.src.roles()
	if problem != "" {
		r.add(field{"roles", "role"}, problem)
		return out
	}
	if len(srcs) == 0 {
		role := r.enum(same("role"), userRoles, optional)
		orgs := r.refs(field{"orgs", "orgSourcedIds"}, optional)
		if role != "" && len(orgs) == 0 {
			r.add(field{"orgs", "orgSourcedIds"}, "is required with role")
		}
		if role != "" {
			for _, org := range orgs {
				out = append(out, records.RosterRole{RoleType: "primary", Role: role, OrgSourcedID: org})
			}
		}
	}
	for _, src := range srcs {
		if p := src.problem(); p != "" {
			r.errs = append(r.errs, ingest.FieldError{Field: src.where(), Message: p})
			continue
		}
		rr := &rec{src: src, now: r.now}
		role, modified := rr.role()
		if modified != nil && modified.After(r.occurred) {
			r.occurred = *modified
		}
		r.errs = append(r.errs, rr.errs...)
		if !rr.deleting {
			out = append(out, role)
		}
	}
	if len(out) == 0 && !r.deleting && len(r.errs) == errs {
		r.add(field{"roles", "role"}, "is required: give the user's roles (roles.csv rows in OneRoster 1.2 CSV)")
	}
	return out
}

// role reads one of a user's OneRoster 1.2 roles (a JSON roles entry, a roles.csv row) and its
// dateLastModified.
func (r *rec) role() (records.RosterRole, *time.Time) {
	r.deleting = r.enum(same("status"), statuses, optional) == statusDeleted
	modified := r.modifiedAt(same("dateLastModified"), optional)
	role := records.RosterRole{
		RoleType:     r.enum(same("roleType"), roleTypes, required),
		Role:         r.enum(same("role"), userRoles, required),
		OrgSourcedID: r.ref(field{"org", "orgSourcedId"}, required),
		BeginDate:    r.date(same("beginDate"), optional),
		EndDate:      r.date(same("endDate"), optional),
	}
	r.ordered(role.BeginDate, same("endDate"), role.EndDate, "beginDate")
	return role, modified
}

// primaryRole is the role of the first primary role, else of the first role.
func primaryRole(roles []records.RosterRole) string {
	for _, r := range roles {
		if r.RoleType == "primary" {
			return r.Role
		}
	}
	if len(roles) > 0 {
		return roles[0].Role
	}
	return RoleUnknown
}

func buildEnrollment(r *rec) *records.RawEvent {
	begin, end := r.date(same("beginDate"), optional), r.date(same("endDate"), optional)
	r.ordered(begin, same("endDate"), end, "beginDate")
	e := &records.RosterEnrollment{SourcedID: r.sourcedID, Status: r.status, DateLastModified: r.modified, Metadata: r.meta,
		ClassSourcedID:  r.ref(field{"class", "classSourcedId"}, required),
		SchoolSourcedID: r.ref(field{"school", "schoolSourcedId"}, required),
		UserSourcedID:   r.ref(field{"user", "userSourcedId"}, always),
		Role:            r.enum(same("role"), enrollmentRoles, required),
		Primary:         r.flag(same("primary"), optional),
		BeginDate:       begin,
		EndDate:         end,
	}
	return &records.RawEvent{RosterEnrollment: e, Actor: records.Actor{SISID: e.UserSourcedID, Role: orUnknown(e.Role)},
		SchoolID: ptr(e.SchoolSourcedID), ClassID: ptr(e.ClassSourcedID)}
}

func buildDemographics(r *rec) *records.RawEvent {
	d := &records.RosterDemographics{SourcedID: r.sourcedID, Status: r.status, DateLastModified: r.modified, Metadata: r.meta,
		BirthDate:                            r.birthDate(same("birthDate")),
		Sex:                                  ptr(r.enum(same("sex"), sexes, optional)),
		AmericanIndianOrAlaskaNative:         r.flag(same("americanIndianOrAlaskaNative"), optional),
		Asian:                                r.flag(same("asian"), optional),
		BlackOrAfricanAmerican:               r.flag(same("blackOrAfricanAmerican"), optional),
		NativeHawaiianOrOtherPacificIslander: r.flag(same("nativeHawaiianOrOtherPacificIslander"), optional),
		White:                                r.flag(same("white"), optional),
		DemographicRaceTwoOrMoreRaces:        r.flag(same("demographicRaceTwoOrMoreRaces"), optional),
		HispanicOrLatinoEthnicity:            r.flag(same("hispanicOrLatinoEthnicity"), optional),
		CountryOfBirthCode:                   r.opt(same("countryOfBirthCode")),
		StateOfBirthAbbreviation:             r.opt(same("stateOfBirthAbbreviation")),
		CityOfBirth:                          r.opt(same("cityOfBirth")),
		PublicSchoolResidenceStatus:          r.opt(same("publicSchoolResidenceStatus")),
	}
	role := RoleUnknown
	if r.roleOf != nil {
		role = orUnknown(r.roleOf(r.sourcedID))
	}
	return &records.RawEvent{RosterDemographics: d, Actor: records.Actor{SISID: r.sourcedID, Role: role}}
}

func buildLineItem(r *rec) *records.RawEvent {
	assign, due := r.instant(same("assignDate"), required, true), r.instant(same("dueDate"), required, true)
	l := &records.RosterLineItem{SourcedID: r.sourcedID, Status: r.status, DateLastModified: r.modified, Metadata: r.meta,
		Title:                    r.str(same("title"), required),
		Description:              r.opt(same("description")),
		AssignDate:               deref(assign),
		DueDate:                  deref(due),
		ClassSourcedID:           r.ref(field{"class", "classSourcedId"}, required),
		SchoolSourcedID:          r.optRef(field{"school", "schoolSourcedId"}),
		CategorySourcedID:        r.optRef(field{"category", "categorySourcedId"}),
		GradingPeriodSourcedID:   r.optRef(field{"gradingPeriod", "gradingPeriodSourcedId"}),
		AcademicSessionSourcedID: r.optRef(field{"academicSession", "academicSessionSourcedId"}),
		ScoreScaleSourcedID:      r.optRef(field{"scoreScale", ""}),
		ResultValueMin:           r.number(same("resultValueMin")),
		ResultValueMax:           r.number(same("resultValueMax")),
	}
	if lo, hi := l.ResultValueMin, l.ResultValueMax; lo != nil && hi != nil && *hi < *lo {
		r.add(same("resultValueMax"), "must not be below resultValueMin")
	}
	return &records.RawEvent{RosterLineItem: l, Actor: system(r.sourcedID), ClassID: ptr(l.ClassSourcedID), SchoolID: l.SchoolSourcedID}
}

func buildResult(r *rec) *records.RawEvent {
	res := &records.RosterResult{SourcedID: r.sourcedID, Status: r.status, DateLastModified: r.modified, Metadata: r.meta,
		LineItemSourcedID:   r.ref(field{"lineItem", "lineItemSourcedId"}, required),
		StudentSourcedID:    r.ref(field{"student", "studentSourcedId"}, always),
		ClassSourcedID:      r.optRef(field{"class", "classSourcedId"}),
		ScoreScaleSourcedID: r.optRef(field{"scoreScale", ""}),
		ScoreStatus:         r.enum(same("scoreStatus"), scoreStatuses, required),
		Score:               r.number(same("score")),
		TextScore:           r.opt(same("textScore")),
		ScoreDate:           deref(r.date(same("scoreDate"), required)),
		Comment:             r.opt(same("comment")),
		InProgress:          r.flag(same("inProgress"), optional),
		Incomplete:          r.flag(same("incomplete"), optional),
		Late:                r.flag(same("late"), optional),
		Missing:             r.flag(same("missing"), optional),
	}
	return &records.RawEvent{RosterResult: res, Actor: records.Actor{SISID: res.StudentSourcedID, Role: "student"}, ClassID: res.ClassSourcedID}
}
