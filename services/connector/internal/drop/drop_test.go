package drop_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/tenancy/connectors"
	"github.com/edtech-analytics/platform/services/connector/internal/drop"
	"github.com/edtech-analytics/platform/services/connector/internal/gateway"
	"github.com/edtech-analytics/platform/services/connector/internal/oneroster"
	"github.com/edtech-analytics/platform/services/connector/internal/onerostertest"
)

// crashingStore records a drop, then fails as a process that died before moving the file.
type crashingStore struct{ *connectors.Store }

func (c crashingStore) RecordDrop(ctx context.Context, tenant, source string, d connectors.Drop) error {
	if err := c.Store.RecordDrop(ctx, tenant, source, d); err != nil {
		return err
	}
	return errors.New("crashed before moving the file")
}

func write(t *testing.T, dir, name string, body []byte) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, body, 0o644); err != nil {
		t.Fatal(err)
	}
}

func exists(dir, name string) bool {
	_, err := os.Stat(filepath.Join(dir, filepath.FromSlash(name)))
	return err == nil
}

// TestFileDrop: files left in a district's folder (real files in a directory) are sent — a OneRoster
// package as a package, a SIS export as a mapped upload (bulk when its name says so) — and moved to
// processed/ or, refused by the gateway, failed/, each with its report; a gateway that is down leaves the
// file for the next poll; a crash between recording and moving moves the file without sending it again;
// nothing is sent twice.
func TestFileDrop(t *testing.T) {
	ctx := t.Context()
	_, store, _ := onerostertest.Control(t, "d1")
	if _, err := store.Add(ctx, connectors.Source{TenantID: "d1", SourceID: "drop", Kind: connectors.KindFileDrop,
		DeltaEvery: time.Hour, FullEvery: 24 * time.Hour}, "", "drop-key"); err != nil {
		t.Fatal(err)
	}
	gw := onerostertest.NewGateway(t)
	dir := t.TempDir()
	bucket, err := archive.Open(ctx, "file://"+filepath.ToSlash(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bucket.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := drop.New(bucket, store, gateway.New(gw.URL, nil), log)

	pkg, err := oneroster.Package(map[string][]json.RawMessage{"orgs": {json.RawMessage(
		`{"sourcedId":"sch-1","status":"active","dateLastModified":"2026-11-01T00:00:00Z","name":"Lincoln","type":"school"}`)}}, true)
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, "d1/drop/roster.zip", pkg)
	write(t, dir, "d1/drop/students.bulk.csv", []byte("Student_Number,First_Name\n1,Ada\n"))
	write(t, dir, "d1/drop/broken.csv", []byte("REJECT\n"))
	write(t, dir, "d1/other/ignored.csv", []byte("not a source\n"))

	gw.Fail(1) // the first file meets a gateway that is down: it waits for the next poll
	if n, err := d.Poll(ctx); err != nil || n != 2 {
		t.Fatalf("first poll moved %d: %v", n, err)
	}
	if n, err := d.Poll(ctx); err != nil || n != 1 {
		t.Fatalf("second poll moved %d: %v", n, err)
	}
	if n, err := d.Poll(ctx); err != nil || n != 0 {
		t.Fatalf("third poll moved %d: %v", n, err)
	}
	pkgs, ups := gw.Packages(), gw.Uploads()
	if len(pkgs) != 1 || pkgs[0].APIKey != "drop-key" || pkgs[0].Modes["orgs"] != "bulk" || len(pkgs[0].Files["orgs"]) != 1 {
		t.Fatalf("packages %+v", pkgs)
	}
	if len(ups) != 1 || ups[0].Source != "drop" || ups[0].File != "students.bulk.csv" || ups[0].Mode != "bulk" || ups[0].APIKey != "drop-key" {
		t.Fatalf("uploads %+v", ups)
	}
	for _, f := range []string{"d1/drop/processed/roster.zip", "d1/drop/processed/roster.zip.report.json",
		"d1/drop/processed/students.bulk.csv", "d1/drop/failed/broken.csv", "d1/drop/failed/broken.csv.report.json", "d1/other/ignored.csv"} {
		if !exists(dir, f) {
			t.Errorf("%s is missing", f)
		}
	}
	for _, f := range []string{"d1/drop/roster.zip", "d1/drop/students.bulk.csv", "d1/drop/broken.csv"} {
		if exists(dir, f) {
			t.Errorf("%s was not moved", f)
		}
	}
	rep, err := os.ReadFile(filepath.Join(dir, "d1/drop/failed/broken.csv.report.json"))
	if err != nil || !strings.Contains(string(rep), `"outcome": "failed"`) || !strings.Contains(string(rep), "no mapping rule") {
		t.Fatalf("failed report %s: %v", rep, err)
	}

	// A crash between recording and moving: the file stays, recorded; the next poll moves it unsent.
	write(t, dir, "d1/drop/roster2.zip", pkg)
	crashing := drop.New(bucket, crashingStore{store}, gateway.New(gw.URL, nil), log)
	if _, err := crashing.Poll(ctx); err == nil {
		t.Fatal("the crashing poll did not fail")
	}
	if len(gw.Packages()) != 2 || !exists(dir, "d1/drop/roster2.zip") {
		t.Fatalf("after the crash: %d packages, file left %v", len(gw.Packages()), exists(dir, "d1/drop/roster2.zip"))
	}
	if n, err := d.Poll(ctx); err != nil || n != 1 {
		t.Fatalf("poll after the crash moved %d: %v", n, err)
	}
	if len(gw.Packages()) != 2 || !exists(dir, "d1/drop/processed/roster2.zip") || exists(dir, "d1/drop/roster2.zip") {
		t.Fatalf("the file recorded before the crash was sent again or not moved: %d packages", len(gw.Packages()))
	}
}
