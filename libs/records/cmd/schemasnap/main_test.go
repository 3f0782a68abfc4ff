package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/schemas"
)

// sourcesDir copies the source schemas (no snapshots) into a temporary schemas directory.
func sourcesDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "versions"), 0o755); err != nil {
		t.Fatal(err)
	}
	files, err := fs.Glob(schemas.FS, "*.avsc")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := fs.ReadFile(schemas.FS, f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func snapshots(t *testing.T, dir string) []string {
	t.Helper()
	got, err := filepath.Glob(filepath.Join(dir, "versions", "*.avsc"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		got[i] = filepath.Base(got[i])
	}
	return got
}

func TestRun(t *testing.T) {
	dir := sourcesDir(t)
	if err := run([]string{"-dir", dir, "-check"}); err == nil {
		t.Fatal("-check passed with no snapshots")
	}
	if n := len(snapshots(t, dir)); n != 0 {
		t.Fatalf("-check wrote %d snapshots", n)
	}
	if err := run([]string{"-dir", dir}); err != nil {
		t.Fatal(err)
	}
	if got := snapshots(t, dir); len(got) != 4 || got[0] != "0001_raw_event_v1.avsc" {
		t.Fatalf("first run wrote %v, want the four envelopes starting with 0001_raw_event_v1.avsc", got)
	}
	if err := run([]string{"-dir", dir, "-check"}); err != nil {
		t.Fatalf("-check after a run: %v", err)
	}

	edit := func(from, to string) {
		t.Helper()
		path := filepath.Join(dir, "attendance.avsc")
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), from) {
			t.Fatalf("attendance.avsc has no %q", from)
		}
		if err := os.WriteFile(path, []byte(strings.Replace(string(data), from, to, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A compatible change to a payload releases both event envelopes that embed it.
	edit(`"fields": [`, `"fields": [
    {"name": "period", "type": ["null", "string"], "default": null},`)
	if err := run([]string{"-dir", dir}); err != nil {
		t.Fatal(err)
	}
	got := snapshots(t, dir)
	if len(got) != 6 || got[4] != "0005_raw_event_v2.avsc" || got[5] != "0006_enriched_event_v2.avsc" {
		t.Fatalf("after a compatible change: %v, want 0005_raw_event_v2 and 0006_enriched_event_v2 added", got)
	}
	// A required field cannot be read from old data: refused, nothing written.
	edit(`"fields": [`, `"fields": [
    {"name": "room", "type": "string"},`)
	err := run([]string{"-dir", dir})
	if err == nil || !strings.Contains(err.Error(), "attendance.room: added without a default") || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("incompatible change: %v, want a refusal naming the field", err)
	}
	if n := len(snapshots(t, dir)); n != 6 {
		t.Fatalf("refused run left %d snapshots, want 6", n)
	}
}
