package app

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func sisA(name string) string {
	return filepath.Join("..", "..", "..", "..", "libs", "mapping", "examples", "sis-a", name)
}

// TestMappingCommands: rules are stored as versions once they parse (a broken file names its line and
// stores nothing), listed and shown, and an export is previewed with them: rows mapped, every error,
// nothing ingested.
func TestMappingCommands(t *testing.T) {
	_, url := migratedDB(t)
	mustCtl(t, url, "tenant", "create", "--id", "d1", "--name", "D1")

	out := mustCtl(t, url, "mapping", "apply", "--tenant", "d1", "--source", "sis", sisA("rules.yaml"), "--by", "alice")
	if !strings.Contains(out, "mapping rules version 1 (exports students, staff, enrollments)") {
		t.Fatalf("apply printed %q", out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\nexports:\n  - name: x\n    format: csv\n    collection: pets\n    fields: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ctl(t, url, "mapping", "apply", "--tenant", "d1", "--source", "sis", bad); err == nil || !strings.Contains(err.Error(), "line 5") {
		t.Fatalf("broken rules: %v", err)
	}
	mustCtl(t, url, "mapping", "apply", sisA("rules.yaml"), "--tenant", "d1", "--source", "sis")
	out = mustCtl(t, url, "mapping", "list", "--tenant", "d1")
	if !strings.Contains(out, "sis     2") || !strings.Contains(out, "alice") {
		t.Fatalf("list printed %q", out)
	}
	if out := mustCtl(t, url, "mapping", "show", "--tenant", "d1", "--source", "sis", "--version", "1"); !strings.Contains(out, "version 1, stored") ||
		!strings.Contains(out, "Student_Number") {
		t.Fatalf("show printed %q", out)
	}

	var res previewResult
	if err := json.Unmarshal([]byte(mustCtl(t, url, "mapping", "preview", "--tenant", "d1", "--source", "sis", sisA("students_2026.csv"),
		"--rows", "2", "--output", "json")), &res); err != nil {
		t.Fatal(err)
	}
	if res.Version != 2 || res.Export != "students" || res.Rejected != 0 || res.Mapped != res.Rows || len(res.Shown) != 2 || len(res.Findings) == 0 {
		t.Fatalf("preview %+v", res)
	}
	broken := filepath.Join(t.TempDir(), "students_broken.csv")
	if err := os.WriteFile(broken, []byte("Student_Number,First_Name,Last_Name,Grade_Level,School_ID\n1,A,B,3,S1\n2,,C,3,S1\n3,D,E,Z9,S1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out = mustCtl(t, url, "mapping", "preview", "--tenant", "d1", "--source", "sis", broken)
	if !strings.Contains(out, "3 rows, 1 mapped, 2 rejected") || !strings.Contains(out, "students_broken.csv:3") || !strings.Contains(out, "First_Name") ||
		!strings.Contains(out, "nothing was ingested") {
		t.Fatalf("preview of a broken export:\n%s", out)
	}
	if _, _, err := ctl(t, url, "mapping", "preview", "--tenant", "d1", "--source", "lms", broken); err == nil || !strings.Contains(err.Error(), "no mapping rules") {
		t.Fatalf("preview without rules: %v", err)
	}
	if out := mustCtl(t, url, "mapping", "preview", "--rules", sisA("rules.yaml"), sisA("staff_2026.csv")); !strings.Contains(out, "export staff") {
		t.Fatalf("preview with a rules file: %q", out)
	}
}
