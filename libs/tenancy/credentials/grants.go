package credentials

import (
	"fmt"
	"slices"
	"strings"

	"github.com/edtech-analytics/platform/libs/tenancy"
)

// What credentials grant: an API key holds verbs, a dashboard token a role and the scope it needs.

// Verbs an API key can be granted.
const (
	VerbEventsWrite    = "events:write"
	VerbRosterWrite    = "roster:write"
	VerbDashboardsRead = "dashboards:read"
	// VerbAdminWrite lets a key make a district's privacy requests (erasures) through the admin API.
	VerbAdminWrite = "admin:write"
)

// Verbs lists every verb a key can hold.
func Verbs() []string {
	return []string{VerbEventsWrite, VerbRosterWrite, VerbDashboardsRead, VerbAdminWrite}
}

// normalizeVerbs checks verbs against the known set and drops duplicates, keeping order.
func normalizeVerbs(verbs []string) ([]string, error) {
	if len(verbs) == 0 {
		return nil, fmt.Errorf("%w: verbs: at least one of %s is required", tenancy.ErrInvalidArgument,
			strings.Join(Verbs(), ", "))
	}
	var out []string
	for _, v := range verbs {
		if !slices.Contains(Verbs(), v) {
			return nil, fmt.Errorf("%w: verb %q: unknown, want one of %s", tenancy.ErrInvalidArgument, v,
				strings.Join(Verbs(), ", "))
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

// Roles of dashboard tokens.
const (
	// RoleDistrictAdmin reads everything of its district.
	RoleDistrictAdmin = "district_admin"
	// RoleSchoolAdmin reads its schools, and the classes and students enrolled in them.
	RoleSchoolAdmin = "school_admin"
	// RoleTeacher reads the classes it teaches and the students enrolled in them (from the roster).
	RoleTeacher = "teacher"
	// RoleParent reads the pages of the students it names (its children, by roster sourced_id) only.
	RoleParent = "parent"
)

// RoleBilling is a platform role: its token belongs to no district and reads only what spans districts
// for the vendor's own systems (the usage of every district, GET /v1/usage), never a district's
// dashboards.
const RoleBilling = "billing"

// Roles lists the roles a district's dashboard token can carry.
func Roles() []string { return []string{RoleDistrictAdmin, RoleSchoolAdmin, RoleTeacher, RoleParent} }

// PlatformRoles lists the roles of tokens that belong to no district.
func PlatformRoles() []string { return []string{RoleBilling} }

// IsPlatformRole reports whether role is one of PlatformRoles.
func IsPlatformRole(role string) bool { return slices.Contains(PlatformRoles(), role) }

// checkScope validates a token's role against its scope: a district for a district role and none for a
// platform role, schools for a school admin only, a teacher id for a teacher only, students for a parent
// only.
func checkScope(t *DashboardToken) error {
	if IsPlatformRole(t.Role) {
		if t.TenantID != "" {
			return fmt.Errorf("%w: tenant: a %s token belongs to no district", tenancy.ErrInvalidArgument, t.Role)
		}
	} else if !slices.Contains(Roles(), t.Role) {
		return fmt.Errorf("%w: role %q: want one of %s", tenancy.ErrInvalidArgument, t.Role,
			strings.Join(append(Roles(), PlatformRoles()...), ", "))
	} else if err := tenancy.ValidTenantID(t.TenantID); err != nil {
		return err
	}
	var schools []string
	for _, s := range t.SchoolIDs {
		if s = strings.TrimSpace(s); s != "" && !slices.Contains(schools, s) {
			schools = append(schools, s)
		}
	}
	var students []string
	for _, s := range t.StudentIDs {
		if s = strings.TrimSpace(s); s != "" && !slices.Contains(students, s) {
			students = append(students, s)
		}
	}
	t.SchoolIDs, t.TeacherID, t.StudentIDs = schools, strings.TrimSpace(t.TeacherID), students
	switch {
	case (t.Role == RoleParent) != (len(students) > 0):
		return fmt.Errorf("%w: students: a %s token needs its children's sourced ids, other roles take none", tenancy.ErrInvalidArgument, RoleParent)
	case len(students) > 20:
		return fmt.Errorf("%w: students: at most 20", tenancy.ErrInvalidArgument)
	case (t.Role == RoleSchoolAdmin) != (len(schools) > 0):
		return fmt.Errorf("%w: schools: a %s token needs them, other roles take none", tenancy.ErrInvalidArgument, RoleSchoolAdmin)
	case (t.Role == RoleTeacher) != (t.TeacherID != ""):
		return fmt.Errorf("%w: teacher: a %s token needs the teacher's sourced id, other roles take none", tenancy.ErrInvalidArgument, RoleTeacher)
	case len(t.Label) > 200:
		return fmt.Errorf("%w: label: at most 200 characters", tenancy.ErrInvalidArgument)
	}
	return nil
}
