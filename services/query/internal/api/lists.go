package api

import (
	"context"
	"net/http"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/services/query/internal/auth"
)

// Entity is one school or class of a list, with its active students and events over the range.
type Entity struct {
	ID             string `json:"id"`
	ActiveStudents uint64 `json:"active_students"`
	Events         uint64 `json:"events"`
}

// EntityList is the answer of the list endpoints: the schools or classes with data in the range that
// the caller may read, by id. A school or class without any student event in the range is not in it.
type EntityList struct {
	TenantID string   `json:"tenant_id"`
	Level    string   `json:"level"`
	Parent   string   `json:"parent,omitempty"`
	From     string   `json:"from"`
	To       string   `json:"to"`
	Items    []Entity `json:"items"`
}

// ClassList is the answer of GET /v1/classes/{class_id}/students.
type ClassList struct {
	TenantID string               `json:"tenant_id"`
	ClassID  string               `json:"class_id"`
	Students []auth.RosterStudent `json:"students"`
}

// GET /v1/district/schools: the schools with data in the range; district admins all of them, school
// admins theirs.
func (a *API) districtSchools(w http.ResponseWriter, r *http.Request) {
	req, ok := a.begin(w, r)
	if !ok {
		return
	}
	var only []string
	switch req.p.Role {
	case credentials.RoleDistrictAdmin:
	case credentials.RoleSchoolAdmin:
		only = req.p.Schools
	default:
		forbidden(w, req.p, "the list of schools")
		return
	}
	a.serveList(w, r, req, "school", "", "", only)
}

// GET /v1/schools/{school_id}/classes: the classes of the school with data in the range, for district
// admins and the school's admins.
func (a *API) schoolClasses(w http.ResponseWriter, r *http.Request) {
	if req, id, ok := a.beginSchool(w, r); ok {
		a.serveList(w, r, req, "class", id, id, nil)
	}
}

// GET /v1/teacher/classes: the classes the calling teacher teaches (the roster), with their data in the
// range; a class without data in it is listed with zeros, so a teacher always finds each class.
func (a *API) teacherClasses(w http.ResponseWriter, r *http.Request) {
	req, ok := a.begin(w, r)
	if !ok {
		return
	}
	if req.p.Role != credentials.RoleTeacher {
		forbidden(w, req.p, "a teacher's classes")
		return
	}
	classes, err := a.auth.TeacherClasses(r.Context(), req.p)
	if err != nil {
		a.unavailable(w, r, req.p, "reading the roster", err)
		return
	}
	list := EntityList{TenantID: req.p.TenantID, Level: "class", From: req.from.Format(time.DateOnly), To: req.to.Format(time.DateOnly), Items: []Entity{}}
	if len(classes) > 0 {
		items, err := a.entities(r.Context(), req, "class", "", classes)
		if err != nil {
			a.unavailable(w, r, req.p, "querying metrics_daily", err)
			return
		}
		got := map[string]Entity{}
		for _, e := range items {
			got[e.ID] = e
		}
		for _, c := range classes {
			e, ok := got[c]
			if !ok {
				e = Entity{ID: c}
			}
			list.Items = append(list.Items, e)
		}
	}
	writeJSON(w, list)
}

// GET /v1/classes/{class_id}/students: the class's students from the roster (names and ids), for those
// who may read the class. A list of names is student data: the read is audited first.
func (a *API) classStudents(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authenticate(w, r)
	if !ok {
		return
	}
	id, ok := pathID(w, r, "class_id")
	if !ok {
		return
	}
	if _, ok := a.classAllowed(w, r, p, id); !ok {
		return
	}
	if _, err := a.audit.Append(r.Context(), p.Subject, p.TenantID, "class_list.read", map[string]string{"class_id": id, "role": p.Role}); err != nil {
		a.log.ErrorContext(r.Context(), "writing the audit log", "tenant_id", p.TenantID, "err", err)
		problem(w, http.StatusServiceUnavailable, "audit-unavailable", "class lists are served only when the read is audited; retry")
		return
	}
	students, err := a.auth.ClassStudents(r.Context(), p.TenantID, id)
	if err != nil {
		a.unavailable(w, r, p, "reading the roster", err)
		return
	}
	if students == nil {
		students = []auth.RosterStudent{}
	}
	writeJSON(w, ClassList{TenantID: p.TenantID, ClassID: id, Students: students})
}

func (a *API) serveList(w http.ResponseWriter, r *http.Request, req request, level, parent, parentField string, only []string) {
	items, err := a.entitiesOf(r.Context(), req, level, parentField, only)
	if err != nil {
		a.unavailable(w, r, req.p, "querying metrics_daily", err)
		return
	}
	writeJSON(w, EntityList{TenantID: req.p.TenantID, Level: level, Parent: parent, From: req.from.Format(time.DateOnly), To: req.to.Format(time.DateOnly), Items: items})
}

// entitiesOf lists the level's entities of the district in the range: under parent (a class's school)
// when it is set, and only those named in only when it is not nil.
func (a *API) entitiesOf(ctx context.Context, req request, level, parent string, only []string) ([]Entity, error) {
	if only != nil && len(only) == 0 {
		return []Entity{}, nil
	}
	return a.entities(ctx, req, level, parent, only)
}

func (a *API) entities(ctx context.Context, req request, level, parent string, only []string) ([]Entity, error) {
	where, args := "tenant_id = ? AND level = ?", []any{req.p.TenantID, level}
	if parent != "" {
		where, args = where+" AND parent_id = ?", append(args, parent)
	}
	if only != nil {
		where, args = where+" AND has(?, entity_id)", append(args, only)
	}
	rows, err := a.ch.Query(ctx, `SELECT entity_id, toUInt64(uniqExactMerge(active_students)), toUInt64(sumMerge(events))
		FROM metrics_daily WHERE `+where+` AND day >= toDate(?) AND day <= toDate(?) GROUP BY entity_id ORDER BY entity_id`,
		append(args, req.from.Format(time.DateOnly), req.to.Format(time.DateOnly))...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }() // read-only; after a full iteration Close only repeats rows.Err
	out := []Entity{}
	for rows.Next() {
		var e Entity
		if err := rows.Scan(&e.ID, &e.ActiveStudents, &e.Events); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// ParentList is the answer of GET /v1/parent/students.
type ParentList struct {
	TenantID string               `json:"tenant_id"`
	Students []auth.RosterStudent `json:"students"`
}

// GET /v1/parent/students: a parent's children as the roster has them (names and ids), for the parent.
func (a *API) parentStudents(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authenticate(w, r)
	if !ok {
		return
	}
	if p.Role != credentials.RoleParent {
		forbidden(w, p, "a parent's children")
		return
	}
	students, err := a.auth.ParentStudents(r.Context(), p)
	if err != nil {
		a.unavailable(w, r, p, "reading the roster", err)
		return
	}
	writeJSON(w, ParentList{TenantID: p.TenantID, Students: students})
}

// parentOf reports whether the student (internal id) is one of the parent's children; otherwise, or when
// the roster cannot answer, it has answered.
func (a *API) parentOf(w http.ResponseWriter, r *http.Request, p auth.Principal, student string) bool {
	children, err := a.auth.ParentStudents(r.Context(), p)
	if err != nil {
		a.unavailable(w, r, p, "reading the roster", err)
		return false
	}
	for _, c := range children {
		if c.InternalID == student {
			return true
		}
	}
	forbidden(w, p, "student "+student)
	return false
}
