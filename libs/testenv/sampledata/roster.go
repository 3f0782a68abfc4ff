package sampledata

import (
	"archive/zip"
	"bytes"
	"encoding/csv"
	"fmt"
	"time"
)

// TeacherID is the SIS id of the teacher of class c of school sc of the district.
func (s Spec) TeacherID(sc, c int) string { return fmt.Sprintf("%s-t%03d-c%02d", s.TenantID, sc, c) }

// SchoolID is the id of school sc of the district, as its events and roster name it.
func (s Spec) SchoolID(sc int) string { return fmt.Sprintf("%s-school-%03d", s.TenantID, sc) }

// ClassID is the id of class c of school sc, as its events and roster name it.
func (s Spec) ClassID(sc, c int) string {
	return fmt.Sprintf("%s-school-%03d-class-%02d", s.TenantID, sc, c)
}

var (
	givenNames  = []string{"Ava", "Ben", "Chloe", "Diego", "Emma", "Farah", "Gabe", "Hana", "Isaac", "Jada", "Kofi", "Lena", "Mateo", "Nia", "Omar", "Priya"}
	familyNames = []string{"Nguyen", "Smith", "Garcia", "Okafor", "Kim", "Patel", "Johnson", "Lopez", "Chen", "Brown", "Ali", "Martin"}
)

// RosterPackage is the district's roster as a OneRoster 1.2 bulk CSV package (a zip): the district and
// its schools, one term over the events' days, a course per school, the classes, the students of
// Students() and one teacher per class (TeacherID), and their enrollments.
func (s Spec) RosterPackage() ([]byte, error) {
	end := s.Start.AddDate(0, 0, max(s.Days, 1)+90)
	files := map[string][][]string{
		"manifest.csv": {{"propertyName", "value"}, {"manifest.version", "1.0"}, {"oneroster.version", "1.2"},
			{"file.orgs", "bulk"}, {"file.academicSessions", "bulk"}, {"file.courses", "bulk"}, {"file.classes", "bulk"},
			{"file.users", "bulk"}, {"file.enrollments", "bulk"}},
		"orgs.csv":             {{"sourcedId", "name", "type", "parentSourcedId"}, {s.TenantID, s.TenantID, "district", ""}},
		"academicSessions.csv": {{"sourcedId", "title", "type", "startDate", "endDate", "schoolYear"}, {s.TenantID + "-term", "Term", "term", s.Start.AddDate(0, 0, -30).Format(time.DateOnly), end.Format(time.DateOnly), fmt.Sprint(end.Year())}},
		"courses.csv":          {{"sourcedId", "title", "orgSourcedId"}},
		"classes.csv":          {{"sourcedId", "title", "courseSourcedId", "classType", "schoolSourcedId", "termSourcedIds"}},
		"users.csv":            {{"sourcedId", "status", "dateLastModified", "enabledUser", "orgSourcedIds", "role", "username", "givenName", "familyName"}},
		"enrollments.csv":      {{"sourcedId", "status", "dateLastModified", "classSourcedId", "schoolSourcedId", "userSourcedId", "role", "primary", "beginDate", "endDate"}},
	}
	add := func(name string, row ...string) { files[name] = append(files[name], row) }
	begin := s.Start.AddDate(0, 0, -30).Format(time.DateOnly)
	for sc := 0; sc < s.Schools; sc++ {
		school, course := s.SchoolID(sc), s.SchoolID(sc)+"-course"
		add("orgs.csv", school, fmt.Sprintf("School %d of %s", sc+1, s.TenantID), "school", s.TenantID)
		add("courses.csv", course, "Core", school)
		for c := 0; c < s.ClassesPerSchool; c++ {
			class, teacher := s.ClassID(sc, c), s.TeacherID(sc, c)
			add("classes.csv", class, fmt.Sprintf("Class %d", c+1), course, "scheduled", school, s.TenantID+"-term")
			add("users.csv", teacher, "", "", "true", school, "teacher", teacher, givenNames[(sc*7+c)%len(givenNames)], "Teacher")
			add("enrollments.csv", "enr-"+teacher, "", "", class, school, teacher, "teacher", "true", begin, "")
		}
	}
	for i, st := range s.Students() {
		h := hash(st.SISID)
		add("users.csv", st.SISID, "", "", "true", st.SchoolID, "student", st.SISID, givenNames[h%uint64(len(givenNames))],
			familyNames[(h>>8)%uint64(len(familyNames))])
		add("enrollments.csv", fmt.Sprintf("enr-%s-%d", st.SISID, i), "", "", st.ClassID, st.SchoolID, st.SISID, "student", "false", begin, "")
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, name := range []string{"manifest.csv", "orgs.csv", "academicSessions.csv", "courses.csv", "classes.csv", "users.csv", "enrollments.csv"} {
		w, err := zw.Create(name)
		if err != nil {
			return nil, err
		}
		cw := csv.NewWriter(w)
		if err := cw.WriteAll(files[name]); err != nil {
			return nil, fmt.Errorf("writing %s: %w", name, err)
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
