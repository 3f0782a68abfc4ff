package syncer_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/edtech-analytics/platform/libs/tenancy/connectors"
	"github.com/edtech-analytics/platform/services/connector/internal/gateway"
	"github.com/edtech-analytics/platform/services/connector/internal/oneroster"
	"github.com/edtech-analytics/platform/services/connector/internal/onerostertest"
	"github.com/edtech-analytics/platform/services/connector/internal/syncer"
)

type fixture struct {
	provider *onerostertest.Provider
	gw       *onerostertest.Gateway
	store    *connectors.Store
	syncer   *syncer.Syncer
	reader   *metric.ManualReader
}

func newFixture(t *testing.T, opt syncer.Options) *fixture {
	t.Helper()
	f := &fixture{provider: onerostertest.NewProvider(t), gw: onerostertest.NewGateway(t)}
	_, f.store, _ = onerostertest.Control(t, "d1")
	src := connectors.Source{TenantID: "d1", SourceID: "sis", Kind: connectors.KindOneRosterREST,
		BaseURL: f.provider.BaseURL(), TokenURL: f.provider.TokenURL(), ClientID: f.provider.ClientID,
		DeltaEvery: 15 * time.Minute, FullEvery: 24 * time.Hour}
	if _, err := f.store.Add(t.Context(), src, f.provider.ClientSecret, "gateway-key"); err != nil {
		t.Fatal(err)
	}
	f.reader = metric.NewManualReader()
	mp := metric.NewMeterProvider(metric.WithReader(f.reader))
	if opt.PageSize == 0 {
		opt.PageSize = 2
	}
	if opt.RetryInitial == 0 {
		opt.RetryInitial, opt.RetryMax = time.Millisecond, 2*time.Millisecond
	}
	var err error
	f.syncer, err = syncer.New(f.store, gateway.New(f.gw.URL, nil), slog.New(slog.NewTextHandler(io.Discard, nil)), mp.Meter("test"), opt)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// gauge returns the value of a gauge for d1/sis.
func (f *fixture) gauge(t *testing.T, name string) float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := f.reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				return float64(d.DataPoints[0].Value)
			case metricdata.Gauge[float64]:
				return d.DataPoints[0].Value
			}
		}
	}
	return -1
}

func user(id, modified string, orgs ...string) map[string]any {
	var roles []any
	for i, o := range orgs {
		rt := "secondary"
		if i == 0 {
			rt = "primary"
		}
		roles = append(roles, map[string]any{"roleType": rt, "role": "student", "org": map[string]any{"sourcedId": o, "type": "org"}})
	}
	return map[string]any{"sourcedId": id, "status": "active", "dateLastModified": modified, "enabledUser": true,
		"username": id, "givenName": "Given " + id, "familyName": "Family", "roles": roles,
		"userIds": []any{map[string]any{"type": "sis", "identifier": id}}, "grades": []any{"09"}}
}

func seed(p *onerostertest.Provider) {
	p.Put("orgs", map[string]any{"sourcedId": "sch-1", "status": "active", "dateLastModified": "2026-11-01T00:00:00Z", "name": "Lincoln High", "type": "school"})
	p.Put("academicSessions", map[string]any{"sourcedId": "term-1", "status": "active", "dateLastModified": "2026-11-01T00:00:00Z",
		"title": "Fall", "type": "term", "startDate": "2026-08-15", "endDate": "2026-12-20", "schoolYear": "2027"})
	p.Put("courses", map[string]any{"sourcedId": "crs-1", "status": "active", "dateLastModified": "2026-11-01T00:00:00Z", "title": "Algebra",
		"org": map[string]any{"sourcedId": "sch-1", "type": "org"}})
	p.Put("classes", map[string]any{"sourcedId": "cls-1", "status": "active", "dateLastModified": "2026-11-01T00:00:00Z", "title": "Algebra P1",
		"classType": "scheduled", "course": map[string]any{"sourcedId": "crs-1"}, "school": map[string]any{"sourcedId": "sch-1"},
		"terms": []any{map[string]any{"sourcedId": "term-1"}}, "periods": []any{"1", "2"}})
	for _, id := range []string{"stu-1", "stu-2", "stu-3", "stu-4", "stu-5"} {
		p.Put("users", user(id, "2026-11-02T00:00:00Z", "sch-1"))
		p.Put("enrollments", map[string]any{"sourcedId": "enr-" + id, "status": "active", "dateLastModified": "2026-11-03T00:00:00Z",
			"role": "student", "primary": false, "class": map[string]any{"sourcedId": "cls-1"}, "school": map[string]any{"sourcedId": "sch-1"},
			"user": map[string]any{"sourcedId": id}})
	}
}

// TestFullThenDeltaSync: the first sync reads every collection page by page (limit and offset up to
// X-Total-Count) and sends one bulk package whose rows are the CSV binding of the JSON records; the status
// is ok and the cursor the newest dateLastModified. A delta then asks only for what changed since
// (the filter), and sends a delta package of the changed user alone. A token the provider revoked is
// replaced once (401, new token) and the sync succeeds.
func TestFullThenDeltaSync(t *testing.T) {
	f := newFixture(t, syncer.Options{})
	seed(f.provider)
	ctx := t.Context()
	res, err := f.syncer.Sync(ctx, "d1", "sis", false)
	if err != nil || !res.Full || !res.Sent || res.Records["users"] != 5 || res.Records["enrollments"] != 5 {
		t.Fatalf("first sync %+v: %v", res, err)
	}
	reqs := f.provider.Requests()
	var userPages []string
	for _, r := range reqs {
		if strings.Contains(r, "/users?") {
			userPages = append(userPages, r)
		}
	}
	if want := []string{"limit=2&offset=0", "limit=2&offset=2", "limit=2&offset=4"}; len(userPages) != 3 ||
		!strings.HasSuffix(userPages[0], want[0]) || !strings.HasSuffix(userPages[1], want[1]) || !strings.HasSuffix(userPages[2], want[2]) {
		t.Fatalf("user pages = %v", userPages)
	}
	pkgs := f.gw.Packages()
	if len(pkgs) != 1 {
		t.Fatalf("packages = %d", len(pkgs))
	}
	p := pkgs[0]
	if p.APIKey != "gateway-key" || p.Modes["users"] != "bulk" || p.Modes["orgs"] != "bulk" || p.Modes["enrollments"] != "bulk" {
		t.Fatalf("package key %q modes %v", p.APIKey, p.Modes)
	}
	if u := p.Files["users"][0]; u["role"] != "student" || u["orgSourcedIds"] != "sch-1" || u["enabledUser"] != "true" || u["grades"] != "09" {
		t.Fatalf("users.csv row %v", u)
	}
	if c := p.Files["classes"][0]; c["courseSourcedId"] != "crs-1" || c["schoolSourcedId"] != "sch-1" || c["termSourcedIds"] != "term-1" || c["periods"] != "1,2" {
		t.Fatalf("classes.csv row %v", c)
	}
	if e := p.Files["enrollments"][4]; e["userSourcedId"] != "stu-5" || e["classSourcedId"] != "cls-1" || e["primary"] != "false" {
		t.Fatalf("enrollments.csv row %v", e)
	}
	if n := len(p.Files["demographics"]); n != 0 || p.Modes["demographics"] != "bulk" {
		t.Fatalf("an empty collection of a full sync is an empty bulk file: %d rows, %q", n, p.Modes["demographics"])
	}
	src, err := f.store.Get(ctx, "d1", "sis")
	if err != nil || src.State != connectors.StatusOK || !src.Cursor.Equal(time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)) || src.LastFullAt == nil {
		t.Fatalf("status after the full sync: %+v %v", src.Status, err)
	}
	if got := f.gauge(t, "connector_last_success_timestamp_seconds"); got <= 0 {
		t.Fatalf("connector_last_success_timestamp_seconds = %v", got)
	}

	f.provider.Put("users", user("stu-2", "2026-12-01T10:00:00Z", "sch-1"))
	f.provider.RevokeTokens()
	res, err = f.syncer.Sync(ctx, "d1", "sis", false)
	if err != nil || res.Full || !res.Sent || res.Records["users"] != 1 || res.Records["orgs"] != 0 {
		t.Fatalf("delta %+v: %v", res, err)
	}
	if n := f.provider.Issued(); n != 2 {
		t.Fatalf("tokens issued = %d, want 2 (one refreshed after the 401)", n)
	}
	for _, r := range f.provider.Requests() {
		if !strings.Contains(r, "filter=dateLastModified%3E%272026-11-03T00%3A00%3A00Z%27") {
			t.Fatalf("a delta request without the cursor's filter: %s", r)
		}
	}
	pkgs = f.gw.Packages()
	d := pkgs[len(pkgs)-1]
	if d.Modes["users"] != "delta" || d.Modes["orgs"] != "absent" || len(d.Files) != 1 || len(d.Files["users"]) != 1 || d.Files["users"][0]["sourcedId"] != "stu-2" {
		t.Fatalf("delta package %+v", d)
	}
	// Nothing changed: a delta sends nothing.
	if res, err := f.syncer.Sync(ctx, "d1", "sis", false); err != nil || res.Sent {
		t.Fatalf("an empty delta: %+v %v", res, err)
	}
	if len(f.gw.Packages()) != 2 {
		t.Fatal("an empty delta was sent")
	}
}

// TestProviderOutage: while the provider answers 500, each request is retried with backoff, each sync
// fails and is counted (status failing, failures in a row, the gauge); after three the breaker opens and
// syncs are not tried (the provider sees no request); once the breaker's timeout passes and the provider
// is back, one sync goes through and the district is in sync again, failures reset.
func TestProviderOutage(t *testing.T) {
	const breakerTimeout = 200 * time.Millisecond
	f := newFixture(t, syncer.Options{RetryTries: 3, BreakerFailures: 3, BreakerTimeout: breakerTimeout})
	seed(f.provider)
	ctx := t.Context()
	f.provider.Fail(-1)
	for i := range 3 {
		if _, err := f.syncer.Sync(ctx, "d1", "sis", false); err == nil || !errors.Is(err, oneroster.ErrRetryable) {
			t.Fatalf("sync %d during the outage: %v", i, err)
		}
		if n := len(f.provider.Requests()); n != 3 {
			t.Fatalf("sync %d: %d requests, want 3 (one and two retries)", i, n)
		}
	}
	src, err := f.store.Get(ctx, "d1", "sis")
	if err != nil || src.State != connectors.StatusFailing || src.Failures != 3 || !strings.Contains(src.LastError, "500") {
		t.Fatalf("status during the outage: %+v %v", src.Status, err)
	}
	if got := f.gauge(t, "connector_sync_failures"); got != 3 {
		t.Fatalf("connector_sync_failures = %v", got)
	}
	opened := time.Now()
	if _, err := f.syncer.Sync(ctx, "d1", "sis", false); !errors.Is(err, syncer.ErrBreakerOpen) {
		t.Fatalf("with the breaker open: %v", err)
	}
	if n := len(f.provider.Requests()); n != 0 {
		t.Fatalf("the open breaker let %d requests through", n)
	}
	f.provider.Fail(0)
	// The breaker's own clock (gobreaker has no injectable clock): wait out its timeout.
	<-time.After(time.Until(opened.Add(breakerTimeout)))
	res, err := f.syncer.Sync(ctx, "d1", "sis", false)
	if err != nil || !res.Full || res.Records["users"] != 5 {
		t.Fatalf("after the outage: %+v %v", res, err)
	}
	src, err = f.store.Get(ctx, "d1", "sis")
	if err != nil || src.State != connectors.StatusOK || src.Failures != 0 || src.LastError != "" || src.Cursor == nil {
		t.Fatalf("status after the outage: %+v %v", src.Status, err)
	}
	if got := f.gauge(t, "connector_sync_failures"); got != 0 {
		t.Fatalf("connector_sync_failures = %v after recovery", got)
	}
	if pkgs := f.gw.Packages(); len(pkgs) != 1 || pkgs[0].Modes["users"] != "bulk" {
		t.Fatalf("after the outage the gateway got %d packages", len(pkgs))
	}
}

// TestSlowProviderAndGateway: a provider that does not answer is given up at the request's deadline
// (and retried); a gateway answering 503 is retried and the package sent once it answers.
func TestSlowProviderAndGateway(t *testing.T) {
	f := newFixture(t, syncer.Options{RetryTries: 2, RequestTimeout: 100 * time.Millisecond})
	seed(f.provider)
	f.provider.Hang(true)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := f.syncer.Sync(ctx, "d1", "sis", true)
	if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		t.Fatalf("slow provider: %v", err)
	}
	if n := len(f.provider.Requests()); n != 2 {
		t.Fatalf("%d requests to the slow provider, want 2", n)
	}
	f.provider.Hang(false)
	f.gw.Fail(1)
	if res, err := f.syncer.Sync(ctx, "d1", "sis", true); err != nil || !res.Sent {
		t.Fatalf("after a 503 from the gateway: %+v %v", res, err)
	}
	if n := len(f.gw.Packages()); n != 1 {
		t.Fatalf("packages = %d", n)
	}
}

// TestDue: a source is due at the delta's pace after its last attempt; full when it never had a full sync
// or the full interval passed.
func TestDue(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := t0.Add(d); return &v }
	src := connectors.Source{DeltaEvery: 15 * time.Minute, FullEvery: 24 * time.Hour}
	for _, c := range []struct {
		name              string
		lastAttempt, full *time.Time
		now               time.Duration
		wantDue, wantFull bool
	}{
		{"never synced", nil, nil, 0, true, true},
		{"delta not yet", at(0), at(0), 10 * time.Minute, false, false},
		{"delta due", at(0), at(0), 15 * time.Minute, true, false},
		{"full due", at(24 * time.Hour), at(0), 24*time.Hour + 15*time.Minute, true, true},
		{"failed first full waits for the delta pace", at(0), nil, time.Minute, false, false},
	} {
		s := src
		s.LastAttemptAt, s.LastFullAt = c.lastAttempt, c.full
		due, full := syncer.Due(s, t0.Add(c.now))
		if due != c.wantDue || full != c.wantFull {
			t.Errorf("%s: due %v full %v", c.name, due, full)
		}
	}
}

// TestRunTicksAndTriggers: a tick syncs a due source (its first sync, full); a trigger for a source that
// is syncing is remembered and runs a delta once the sync ends, so the change it announced, made after
// the sync read the provider, is sent.
func TestRunTicksAndTriggers(t *testing.T) {
	f := newFixture(t, syncer.Options{})
	seed(f.provider)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	tick, trigger := make(chan time.Time), make(chan [2]string)
	done := make(chan error, 1)
	runCtx, stop := context.WithCancel(ctx)
	go func() { done <- f.syncer.Run(runCtx, tick, trigger) }()
	wait := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		}
	}

	release := f.gw.Hold()
	tick <- time.Now()
	wait("the full sync at the gateway", f.gw.Arrived())
	// While the full sync waits at the gateway, a user changes and the source's webhook asks for a sync.
	f.provider.Put("users", user("stu-3", "2026-12-02T00:00:00Z", "sch-1"))
	trigger <- [2]string{"d1", "sis"}
	trigger <- [2]string{"d1", "sis"}
	release()
	wait("the full package", f.gw.Received())
	wait("the delta package", f.gw.Received())
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	pkgs := f.gw.Packages()
	if len(pkgs) != 2 || pkgs[0].Modes["users"] != "bulk" || pkgs[1].Modes["users"] != "delta" {
		t.Fatalf("packages: %d", len(pkgs))
	}
	if u := pkgs[1].Files["users"]; len(u) != 1 || u[0]["sourcedId"] != "stu-3" {
		t.Fatalf("the delta sent %v", u)
	}
}

// TestFullSyncWithoutDates: a full sync that saw no dateLastModified (an empty provider) sends empty bulk
// files (the gateway's safety hold decides whether that deactivates the district's roster) and sets the
// cursor to when it started, so that the next sync is a delta from then.
func TestFullSyncWithoutDates(t *testing.T) {
	started := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	f := newFixture(t, syncer.Options{Now: func() time.Time { return started }})
	ctx := t.Context()
	if res, err := f.syncer.Sync(ctx, "d1", "sis", false); err != nil || !res.Full || !res.Sent {
		t.Fatalf("first sync %+v: %v", res, err)
	}
	if p := f.gw.Packages()[0]; p.Modes["users"] != "bulk" || len(p.Files["users"]) != 0 {
		t.Fatalf("package %+v", p)
	}
	src, err := f.store.Get(ctx, "d1", "sis")
	if err != nil || src.Cursor == nil || !src.Cursor.Equal(started) {
		t.Fatalf("cursor %v %v", src.Cursor, err)
	}
	f.provider.Requests()
	if res, err := f.syncer.Sync(ctx, "d1", "sis", false); err != nil || res.Full {
		t.Fatalf("second sync %+v: %v", res, err)
	}
	if r := f.provider.Requests(); len(r) == 0 || !strings.Contains(r[0], "filter=dateLastModified%3E%272026-12-07T04%3A00%3A00Z%27") {
		t.Fatalf("second sync requests %v", r)
	}
}
