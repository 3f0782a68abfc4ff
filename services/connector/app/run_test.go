package app_test

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/tenancy/connectors"
	"github.com/edtech-analytics/platform/services/connector/app"
	"github.com/edtech-analytics/platform/services/connector/internal/onerostertest"
	"github.com/edtech-analytics/platform/services/connector/internal/webhook"
)

// TestRun: the wired service takes a signed webhook and syncs its source into the gateway, and takes a
// file dropped in its drop directory. The schedule's tick is an hour away: what happens is what the
// webhook and the drop poll caused; the test waits on the gateway stub's signal, bounded.
func TestRun(t *testing.T) {
	pool, store, masterLine := onerostertest.Control(t, "d1")
	provider, gw := onerostertest.NewProvider(t), onerostertest.NewGateway(t)
	provider.Put("orgs", map[string]any{"sourcedId": "sch-1", "status": "active", "dateLastModified": "2026-11-01T00:00:00Z", "name": "Lincoln", "type": "school"})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	hookKey, err := store.Add(ctx, connectors.Source{TenantID: "d1", SourceID: "sis", Kind: connectors.KindOneRosterREST,
		BaseURL: provider.BaseURL(), TokenURL: provider.TokenURL(), ClientID: provider.ClientID,
		DeltaEvery: time.Hour, FullEvery: 24 * time.Hour}, provider.ClientSecret, "sis-key")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Add(ctx, connectors.Source{TenantID: "d1", SourceID: "drop", Kind: connectors.KindFileDrop,
		DeltaEvery: time.Hour, FullEvery: 24 * time.Hour}, "", "drop-key"); err != nil {
		t.Fatal(err)
	}
	dropDir := t.TempDir()

	var cfg app.Config
	fs := flag.NewFlagSet("connector", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := conf.Parse(fs, []string{"-database.url", pool.Config().ConnString(), "-master-keys", masterLine,
		"-gateway.url", gw.URL, "-admin.addr", "127.0.0.1:0", "-drop.url", "file://" + filepath.ToSlash(dropDir),
		"-drop.poll", "20ms", "-sync.tick", "1h"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tel, err := obs.Init(ctx, "connector")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(runCtx, cfg, svc.Runtime{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Tel: tel}, app.WithListener(ln))
	}()
	wait := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			select {
			case <-gw.Received():
			case err := <-done:
				t.Fatalf("Run returned while waiting for %s: %v", what, err)
			case <-ctx.Done():
				t.Fatalf("waiting for %s: %v", what, ctx.Err())
			}
		}
	}

	// A signed webhook: the source's first sync (full) goes to the gateway.
	body := []byte(`{}`)
	now := time.Now()
	// The listener is open before Run serves it: the request waits until it does.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ln.Addr().String()+"/v1/webhooks/sis", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(webhook.HeaderTenant, "d1")
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(webhook.HeaderSignature, webhook.Sign(hookKey, now, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook: %d", resp.StatusCode)
	}
	wait("the webhook's sync", func() bool { return len(gw.Packages()) == 1 })
	if p := gw.Packages()[0]; p.APIKey != "sis-key" || p.Modes["orgs"] != "bulk" || len(p.Files["orgs"]) != 1 {
		t.Fatalf("package %+v", p)
	}

	// A dropped file.
	if err := os.MkdirAll(filepath.Join(dropDir, "d1", "drop"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Written under a dot name, which the drop skips, then renamed: the poll never sees half a file.
	tmp := filepath.Join(dropDir, "d1", "drop", ".students.csv")
	if err := os.WriteFile(tmp, []byte("Student_Number\n1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dropDir, "d1", "drop", "students.csv")); err != nil {
		t.Fatal(err)
	}
	wait("the dropped file", func() bool { return len(gw.Uploads()) == 1 })
	if u := gw.Uploads()[0]; u.APIKey != "drop-key" || u.File != "students.csv" {
		t.Fatalf("upload %+v", u)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	src, err := store.Get(ctx, "d1", "sis")
	if err != nil || src.State != connectors.StatusOK {
		t.Fatalf("status %+v %v", src.Status, err)
	}
}
