package server_test

import (
	"bytes"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy/mappings"
	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
)

// example reads a file of libs/mapping's sis-a example.
func example(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "libs", "mapping", "examples", "sis-a", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMappedUploadsTakeTheOneRosterPath: a SIS's own exports, mapped with the source's stored rules,
// reach raw as OneRoster records through the import step; a row the rules cannot map is rejected naming
// file, line, column and target and dead-lettered beside the good ones; an empty value is a finding; a
// dry run ingests nothing; and the requests the endpoint refuses name why.
func TestMappedUploadsTakeTheOneRosterPath(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	students := example(t, "students_2026.csv")
	lines := strings.Count(strings.TrimSpace(string(students)), "\n") // data rows

	code, out := f.postRaw(t, "/v1/sources/sis/uploads?file=students_2026.csv", "roster", "text/csv", students)
	if code != http.StatusConflict || out["type"] != "/problems/no-mapping-rules" {
		t.Fatalf("before any rules: %d %v", code, out)
	}
	if _, err := mappings.New(f.pool).Set(ctx, "d1", "sis", example(t, "rules.yaml"), "test"); err != nil {
		t.Fatal(err)
	}

	// One more row without its Student_Number (required).
	body := append(bytes.Clone(students), []byte(",Zed,Nobody,,5,SCH-01,,,,Y\n")...)
	code, out = f.postRaw(t, "/v1/sources/sis/uploads?file=students_2026.csv", "roster", "text/csv", body)
	if code != http.StatusAccepted || out["accepted"] != float64(lines) || out["rules_version"] != 1.0 {
		t.Fatalf("students: %d %v", code, out)
	}
	rej := out["rejected"].([]any)
	if len(rej) != 1 || !strings.Contains(fmtJSON(rej), "students_2026.csv:"+itoa(lines+2)) || !strings.Contains(fmtJSON(rej), "Student_Number") ||
		!strings.Contains(fmtJSON(rej), "(sourcedId)") {
		t.Fatalf("rejected %s", fmtJSON(rej))
	}
	if out["finding_count"].(float64) < 1 || !strings.Contains(fmtJSON(out["findings"]), `"kind":"empty"`) {
		t.Fatalf("findings %v", out["findings"])
	}
	// One row in 15 rejected passes the quality gate's 5%: the upload is held whole, then approved.
	up := out["upload"].(map[string]any)
	hold, _ := up["hold"].(map[string]any)
	if up["sent"] != 0.0 || up["status"] != "held" || hold["gate"] != "rejected" || !strings.Contains(up["reason"].(string), "rejected 1 of 15 rows") {
		t.Fatalf("upload %v", up)
	}
	if n := len(f.readTopic(t, f.kcfg.Topics().Raw)); n != 0 {
		t.Fatalf("a held upload sent %d records", n)
	}
	res, err := f.rosters.Approve(ctx, "d1", up["id"].(string), "ops@example.org", f.produceTo(f.kcfg.Topics().Raw))
	if err != nil || res.Status != "approved" || res.Sent != lines {
		t.Fatalf("approving: %+v, %v", res, err)
	}
	users := 0
	for _, r := range f.readTopic(t, f.kcfg.Topics().Raw) {
		ev := f.rawEvent(t, r)
		if ev.Type != records.TypeRosterUser || ev.RosterUser.Metadata["sis"] != "sis-a" {
			t.Fatalf("raw record %s %+v", ev.Type, ev.RosterUser)
		}
		users++
	}
	if users != lines {
		t.Fatalf("raw holds %d users, want %d", users, lines)
	}
	if n := len(f.readTopic(t, f.kcfg.Topics().DLQ)); n != 1 {
		t.Fatalf("dlq holds %d", n)
	}
	list, err := f.rosters.Uploads(ctx, "d1", timeZero, 5)
	if err != nil || len(list) != 1 || list[0].Kind != "mapped:v1" || !strings.Contains(string(list[0].Findings), "empty") ||
		list[0].Files[0].Rejected != 1 || list[0].Files[0].Received != lines+1 || list[0].Files[0].Findings < 1 {
		t.Fatalf("uploads %+v: %v", list, err)
	}

	// The export gains a column: the quality report names the drift.
	lns := strings.Split(strings.TrimSpace(string(students)), "\n")
	for i := range lns {
		lns[i] = strings.TrimRight(lns[i], "\r") + map[bool]string{true: ",Nickname", false: ","}[i == 0]
	}
	code, out = f.postRaw(t, "/v1/sources/sis/uploads?file=students_2027.csv", "roster", "text/csv", []byte(strings.Join(lns, "\n")+"\n"))
	if code != http.StatusAccepted || out["upload"].(map[string]any)["status"] != "applied" {
		t.Fatalf("students with a new column: %d %v", code, out)
	}
	rep, err := f.rosters.Quality(ctx, "d1", timeZero)
	if err != nil {
		t.Fatal(err)
	}
	drift, changed := "", 0.0
	for _, fd := range rep.Findings {
		if fd.Check == rosters.CheckSchemaDrift {
			drift, changed = drift+fd.Message, changed+fd.Value
		}
	}
	if !strings.Contains(drift, "students_2027.csv") || !strings.Contains(drift, "added Nickname since students_2026.csv") || changed != 1 {
		t.Fatalf("schema drift findings %q in %+v", drift, rep.Findings)
	}
	raw := len(f.readTopic(t, f.kcfg.Topics().Raw))

	// A dry run maps and checks, answers the rows, and sends nothing.
	code, out = f.postRaw(t, "/v1/sources/sis/uploads?file=staff_2026.csv&dry_run=true&rows=2", "roster", "text/csv", example(t, "staff_2026.csv"))
	if code != http.StatusOK || len(out["rows"].([]any)) != 2 || out["accepted"].(float64) < 2 || out["upload"] != nil {
		t.Fatalf("dry run: %d %v", code, out)
	}
	if n := len(f.readTopic(t, f.kcfg.Topics().Raw)); n != raw {
		t.Fatalf("a dry run sent records: raw holds %d, held %d before", n, raw)
	}

	// A zip of several exports is mapped in dependency order; enrollments of sections never sent wait.
	zipped := packageOf(t, zipFile{name: "enrollments_2026.csv", body: bytes.NewReader(example(t, "enrollments_2026.csv"))},
		zipFile{name: "staff_2026.csv", body: bytes.NewReader(example(t, "staff_2026.csv"))})
	code, out = f.postRaw(t, "/v1/sources/sis/uploads", "roster", "application/zip", zipped)
	if code != http.StatusAccepted || len(out["rejected"].([]any)) != 0 {
		t.Fatalf("zip: %d %v", code, out)
	}
	if up := out["upload"].(map[string]any); up["held"].(float64) < 1 || fileCounts(t, up, "staff_2026.csv")["added"] < 1 {
		t.Fatalf("zip upload %v", up)
	}

	for _, tt := range []struct {
		name, path, ctype string
		body              []byte
		status            int
		problem, detail   string
	}{
		{"another source", "/v1/sources/lms/uploads?file=students_2026.csv", "text/csv", students, 403, "/problems/forbidden", `not "lms"`},
		{"no export matches", "/v1/sources/sis/uploads?file=grades.csv", "text/csv", students, 400, "/problems/malformed-body", "no export of the source's rules matches"},
		{"unknown export", "/v1/sources/sis/uploads?export=nope", "text/csv", students, 400, "/problems/malformed-body", `export "nope"`},
		{"missing column", "/v1/sources/sis/uploads?file=students_2026.csv", "text/csv", []byte("First_Name,Last_Name\nA,B\n"), 400, "/problems/malformed-body", "Student_Number"},
		{"bad mode", "/v1/sources/sis/uploads?file=students_2026.csv&mode=full", "text/csv", students, 400, "/problems/malformed-request", "mode"},
		{"media type", "/v1/sources/sis/uploads?file=students_2026.csv", "text/plain", students, 415, "/problems/unsupported-media-type", "text/csv"},
		{"names differing only in case", "/v1/sources/sis/uploads", "application/zip", packageOf(t,
			zipFile{name: "students_2026.csv", body: bytes.NewReader(students)}, zipFile{name: "Students_2026.csv", body: bytes.NewReader(students)}),
			400, "/problems/malformed-body", `"students_2026.csv" and "Students_2026.csv": file names in a zip must differ by more than case`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out := f.postRaw(t, tt.path, "roster", tt.ctype, tt.body)
			if code != tt.status || out["type"] != tt.problem || !strings.Contains(out["detail"].(string), tt.detail) {
				t.Fatalf("got %d %v", code, out)
			}
		})
	}
}

// TestMappedUploadSentAgainSendsWhatChanged: a zip of two exports sent again with one row of each
// changed sends exactly those two records, mapped as a first upload maps them (the second pass of the
// import maps only the rows it sends, in both files).
func TestMappedUploadSentAgainSendsWhatChanged(t *testing.T) {
	f := newFixture(t)
	if _, err := mappings.New(f.pool).Set(t.Context(), "d1", "sis", example(t, "rules.yaml"), "test"); err != nil {
		t.Fatal(err)
	}
	send := func(staff, students []byte) map[string]any {
		t.Helper()
		zipped := packageOf(t, zipFile{name: "staff_2026.csv", body: bytes.NewReader(staff)},
			zipFile{name: "students_2026.csv", body: bytes.NewReader(students)})
		code, out := f.postRaw(t, "/v1/sources/sis/uploads", "roster", "application/zip", zipped)
		if code != http.StatusAccepted || len(out["rejected"].([]any)) != 0 {
			t.Fatalf("upload: %d %v", code, out)
		}
		return out["upload"].(map[string]any)
	}
	staff, students := example(t, "staff_2026.csv"), example(t, "students_2026.csv")
	rows := strings.Count(strings.TrimSpace(string(staff)), "\n") + strings.Count(strings.TrimSpace(string(students)), "\n")
	if up := send(staff, students); up["sent"] != float64(rows) {
		t.Fatalf("first upload %v, want %d sent", up, rows)
	}
	before := len(f.readTopic(t, f.kcfg.Topics().Raw))
	staff = bytes.Replace(staff, []byte("Kettleby"), []byte("Kettleby-Ames"), 1)
	students = bytes.Replace(students, []byte("Pemberton-Ruiz"), []byte("Pemberton"), 1)
	if up := send(staff, students); up["sent"] != 2.0 {
		t.Fatalf("upload again %v, want 2 sent", up)
	}
	got := map[string]string{}
	for _, r := range f.readTopic(t, f.kcfg.Topics().Raw)[before:] {
		u := f.rawEvent(t, r).RosterUser
		if u == nil || len(u.Roles) == 0 {
			t.Fatalf("sent %+v", u)
		}
		got[u.SourcedID] = u.FamilyName
	}
	if want := map[string]string{"staff-T-503": "Kettleby-Ames", "100203": "Pemberton"}; !maps.Equal(got, want) {
		t.Fatalf("sent %v, want %v", got, want)
	}
}
