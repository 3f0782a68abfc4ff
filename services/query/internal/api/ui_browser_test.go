package api_test

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/services/query/internal/api"
	"github.com/edtech-analytics/platform/services/query/internal/auth"
	"github.com/edtech-analytics/platform/services/query/internal/ui"
)

// chromium finds Debian's Chromium (EDTECH_CHROMIUM names another binary). The repository's install script
// (make deps) installs it; only where it could not be installed is the test skipped, saying why.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("EDTECH_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium: `make deps` installs Debian's chromium as root with apt-get; set EDTECH_CHROMIUM to use another binary")
	return ""
}

// artifacts is where the browser tests leave their screenshots: EDTECH_TEST_ARTIFACTS, or a directory
// under the system's temporary directory named in the test log.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("EDTECH_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "edtech-test-artifacts")
	}
	dir = filepath.Join(dir, "ui")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browserFixture is the API and the dashboards on one loopback server, with the fixture's districts and
// three more, so that a benchmark is served.
type browserFixture struct {
	fixture
	srv     *httptest.Server
	browser context.Context
	shots   string
}

func newBrowserFixture(t *testing.T) *browserFixture {
	t.Helper()
	exe := chromium(t)
	f := newFixture(t, 5, nil)
	f.attendanceDistricts(t, 4, "d3", "d4", "d5")

	mux := http.NewServeMux()
	mux.Handle("/", f.handle.Handler())
	resolver := auth.NewResolver(credentials.New(f.pool), fleet.New(f.pool, os.Getenv), time.Minute)
	ui.New(slog.New(slog.DiscardHandler), resolver).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true), chromedp.WindowSize(1280, 900))
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(browser); err != nil { // starts the browser, with no deadline (one would stop it)
		t.Fatalf("starting %s: %v", exe, err)
	}
	return &browserFixture{fixture: f, srv: srv, browser: browser, shots: artifacts(t)}
}

// tab opens a browser context of its own (its own cookies) and returns its tab, bounded in time.
func (b *browserFixture) tab(t *testing.T) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(b.browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(tab); err != nil {
		t.Fatal(err)
	}
	ctx, cancelTimeout := context.WithTimeout(tab, 2*time.Minute) // a bound on a stuck page, not a measure
	t.Cleanup(cancelTimeout)
	return ctx
}

// signIn signs in with the token through the sign-in page, in a tab of its own.
func (b *browserFixture) signIn(t *testing.T, token string) context.Context {
	t.Helper()
	ctx := b.tab(t)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(b.srv.URL+"/ui/district"), // signed out: sent to the sign-in page
		chromedp.WaitVisible(chromedp.ID("token")),
	); err != nil {
		t.Fatal(err)
	}
	if loc := run(t, ctx, chromedp.Location()); !strings.HasSuffix(loc, "/ui/login") {
		t.Fatalf("signed out, /ui/district went to %s, want the sign-in page", loc)
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Submit(chromedp.ID("token")),
		chromedp.WaitVisible(chromedp.CSS(`main[data-ready="true"]`)),
	); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// run runs one action that returns a value.
func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// open shows path (with the fixture's range) and waits until the page has drawn.
func (b *browserFixture) open(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(b.srv.URL+path+sep+strings.TrimPrefix(span, "?")),
		chromedp.WaitVisible(chromedp.CSS(`main[data-ready="true"]`)),
	); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// shot saves a screenshot of the whole page.
func (b *browserFixture) shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := run(t, ctx, chromedp.FullScreenshot(100))
	p := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
}

// shown reads the page's headline numbers: each KPI's metric and the API value it carries, and the
// text shown for it.
func shown(t *testing.T, ctx context.Context) (values, texts map[string]string) {
	t.Helper()
	kpis := run(t, ctx, chromedp.Evaluate[[]map[string]string](`[...document.querySelectorAll(".kpi")].map(k => ({
		metric: k.dataset.metric, value: k.dataset.value, text: k.querySelector(".kpi-value").textContent}))`))
	values, texts = map[string]string{}, map[string]string{}
	for _, k := range kpis {
		values[k["metric"]], texts[k["metric"]] = k["value"], k["text"]
	}
	return values, texts
}

// sameNumbers checks that the page shows the summary the API answers the same token.
func sameNumbers(t *testing.T, ctx context.Context, page string, s api.Summary) {
	t.Helper()
	values, texts := shown(t, ctx)
	m := s.Totals
	want := map[string]string{
		"events": fmt.Sprint(m.Events), "late_submissions": fmt.Sprint(m.Submissions.Late),
		"content_seconds": fmt.Sprint(m.ContentSeconds), "logins": fmt.Sprint(m.Logins),
	}
	if m.ActiveStudents != nil {
		want["active_students"] = fmt.Sprint(*m.ActiveStudents)
	}
	for k, v := range want {
		if values[k] != v {
			t.Errorf("%s: %s shows %q, the API says %s", page, k, values[k], v)
		}
	}
	for k, v := range map[string]*float64{"attendance_rate": m.Attendance.Rate, "mean_score_pct": m.Assessments.MeanPct} {
		got, err := strconv.ParseFloat(values[k], 64)
		if v == nil || err != nil || math.Abs(got-*v) > 1e-9 {
			t.Errorf("%s: %s shows %q, the API says %v", page, k, values[k], v)
		}
	}
	if r := m.Attendance.Rate; r != nil {
		if want := strconv.FormatFloat(*r*100, 'f', 1, 64) + "%"; texts["attendance_rate"] != want {
			t.Errorf("%s: attendance rate reads %q, want %q", page, texts["attendance_rate"], want)
		}
	}
	if len(s.Days) == 0 {
		t.Fatalf("%s: the API's summary has no days", page)
	}
	if charts := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll(".trend .uplot").length`)); charts < 5 {
		t.Errorf("%s: %d trend charts drawn, want one per measure", page, charts)
	}
}

// funnelShown reads the funnel table of the analytics page as step:students, ...
func funnelShown(t *testing.T, ctx context.Context) string {
	t.Helper()
	rows := run(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#funnel tbody tr")].map(r => r.dataset.step + ":" + r.cells[1].textContent)`))
	return strings.Join(rows, ",")
}

// funnelOf is the API's funnel as funnelShown reads the page.
func funnelOf(f api.Funnel) string {
	var out []string
	for _, st := range f.Steps {
		out = append(out, fmt.Sprintf("%s:%d", st.Name, st.Students))
	}
	return strings.Join(out, ",")
}

// axeSource is axe-core (testdata/axe), the accessibility rules engine run on every page.
//
//go:embed testdata/axe/axe.min.js
var axeSource string

// accessible runs axe-core's WCAG 2.1 A and AA rules on the page and fails on every violation.
func accessible(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	run(t, ctx, chromedp.Evaluate[bool](axeSource+";true"))
	res := run(t, ctx, chromedp.Evaluate[struct {
		Passes     int              `json:"passes"`
		Violations []map[string]any `json:"violations"`
	}](`axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}})
		.then(r => ({passes: r.passes.length, violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
			nodes: v.nodes.length, first: v.nodes[0].target.join(" ")}))}))`, chromedp.EvalAwaitPromise))
	if res.Passes < 10 {
		t.Errorf("%s: axe checked %d rules that passed: it did not run on the page", page, res.Passes)
	}
	for _, v := range res.Violations {
		t.Errorf("%s: accessibility: %v", page, v)
	}
}

// rowIDs reads the ids of a page's list rows.
const rowIDs = `[...document.querySelectorAll("table.list tbody tr")].map(r => r.dataset.id)`

// pageError is the status of the problem a page shows ("" when it shows none).
func pageError(t *testing.T, ctx context.Context) string {
	t.Helper()
	return run(t, ctx, chromedp.Evaluate[string](`(document.querySelector("main .error[role=alert]") || {dataset: {}}).dataset.status || ""`))
}

// TestDashboardsInABrowser signs in to the web dashboards in headless Chromium with each role's token,
// and proves that every page shows the numbers the API answers that token, that a page outside the role's
// scope shows the API's refusal and nothing else, that the benchmark page shows the API's bands, and that
// signing out ends the session. Screenshots of each page are left as test artifacts.
func TestDashboardsInABrowser(t *testing.T) {
	b := newBrowserFixture(t)
	summary := func(cred, path string) api.Summary { return b.summary(t, cred, path+span) }

	t.Run("district admin", func(t *testing.T) {
		ctx := b.signIn(t, b.creds["d1-district"])
		b.open(t, ctx, "/ui/district")
		sameNumbers(t, ctx, "district", summary("d1-district", "/v1/district/summary"))
		schools := run(t, ctx, chromedp.Evaluate[[]string](rowIDs))
		if strings.Join(schools, ",") != "s1,s2" {
			t.Errorf("district page lists schools %v, want s1,s2", schools)
		}
		b.shot(t, ctx, "district-admin-district")
		accessible(t, ctx, "district")

		// Drill down by following the links, as a person would.
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`tr[data-id="s1"] a`)),
			chromedp.WaitVisible(chromedp.CSS(`main[data-ready="true"] tr[data-id="c1"] a`))); err != nil {
			t.Fatal(err)
		}
		sameNumbers(t, ctx, "school s1", summary("d1-district", "/v1/schools/s1/summary"))
		b.shot(t, ctx, "district-admin-school")
		accessible(t, ctx, "school")
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`tr[data-id="c1"] a`)),
			chromedp.WaitVisible(chromedp.CSS(`main[data-ready="true"] #students-h`))); err != nil {
			t.Fatal(err)
		}
		sameNumbers(t, ctx, "class c1", summary("d1-district", "/v1/classes/c1/summary"))

		b.open(t, ctx, "/ui/benchmarks")
		var bench api.Benchmark
		if code := b.get(t, b.creds["d1-district"], "/v1/benchmarks/attendance_rate"+span, &bench); code != 200 {
			t.Fatalf("benchmark: %d", code)
		}
		yours := run(t, ctx, chromedp.Evaluate[string](`document.querySelector('section[data-metric="attendance_rate"] .yours').dataset.value`))
		means := run(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('section[data-metric="attendance_rate"] tbody tr')].map(r => r.dataset.mean)`))
		var wantMeans []string
		for _, band := range bench.Bands {
			wantMeans = append(wantMeans, strconv.FormatFloat(band.Mean, 'f', -1, 64))
		}
		if got, _ := strconv.ParseFloat(yours, 64); bench.YourDistrict == nil || got != *bench.YourDistrict || strings.Join(means, ",") != strings.Join(wantMeans, ",") {
			t.Errorf("benchmark page shows %s and bands %v, the API %v and %v", yours, means, bench.YourDistrict, wantMeans)
		}
		b.shot(t, ctx, "district-admin-benchmarks")
		accessible(t, ctx, "benchmarks")
	})

	t.Run("school admin", func(t *testing.T) {
		ctx := b.signIn(t, b.creds["d1-school-s1"])
		b.open(t, ctx, "/ui/schools/s1")
		sameNumbers(t, ctx, "school s1", summary("d1-school-s1", "/v1/schools/s1/summary"))
		b.shot(t, ctx, "school-admin-school")
		for _, path := range []string{"/ui/schools/s2", "/ui/district", "/ui/classes/c3", "/ui/benchmarks"} {
			b.open(t, ctx, path)
			if status := pageError(t, ctx); status != "403" {
				t.Errorf("school admin of s1 on %s: page shows status %q, want 403", path, status)
			}
			if values, _ := shown(t, ctx); len(values) != 0 && path != "/ui/benchmarks" {
				t.Errorf("school admin of s1 on %s: numbers shown %v", path, values)
			}
		}
	})

	t.Run("teacher", func(t *testing.T) {
		ctx := b.signIn(t, b.creds["d1-teacher-t1"])
		classes := run(t, ctx, chromedp.Evaluate[[]string](rowIDs))
		if strings.Join(classes, ",") != "c1" {
			t.Errorf("teacher's home lists classes %v, want c1", classes)
		}
		b.open(t, ctx, "/ui/classes/c1")
		sameNumbers(t, ctx, "class c1", summary("d1-teacher-t1", "/v1/classes/c1/summary"))
		students := run(t, ctx, chromedp.Evaluate[[]string](rowIDs))
		if want := b.w.students["d1"]["c1"]; strings.Join(students, ",") != want {
			t.Errorf("class c1 lists students %v, want %s", students, want)
		}
		b.shot(t, ctx, "teacher-class")
		accessible(t, ctx, "class")
		b.open(t, ctx, "/ui/analytics?class_id=c1&steps=login,content_view")
		var funnel api.Funnel
		if code := b.get(t, b.creds["d1-teacher-t1"], "/v1/funnels?window=7d&steps=login,content_view&class_id=c1&"+span[1:], &funnel); code != 200 {
			t.Fatalf("teacher's funnel of c1: %d", code)
		}
		if got, want := funnelShown(t, ctx), funnelOf(funnel); got != want || pageError(t, ctx) != "" {
			t.Errorf("teacher's analytics page of c1 shows %s, the API %s", got, want)
		}
		b.open(t, ctx, "/ui/students/"+b.w.students["d1"]["c1"])
		sameNumbers(t, ctx, "student of c1", summary("d1-teacher-t1", "/v1/students/"+b.w.students["d1"]["c1"]+"/summary"))
		b.shot(t, ctx, "teacher-student")
		accessible(t, ctx, "student")

		// Another class, and a student of it: the API refuses, and the page shows that and no number.
		for _, path := range []string{"/ui/classes/c2", "/ui/students/" + b.w.students["d1"]["c2"], "/ui/district"} {
			b.open(t, ctx, path)
			if status := pageError(t, ctx); status != "403" {
				t.Errorf("teacher of c1 on %s: page shows status %q, want 403", path, status)
			}
			if values, _ := shown(t, ctx); len(values) != 0 {
				t.Errorf("teacher of c1 on %s: numbers shown %v", path, values)
			}
		}
		b.shot(t, ctx, "teacher-refused")
		accessible(t, ctx, "refusal")

		// Signing out ends the session: the pages send the browser to sign in again.
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`header form button`)), chromedp.WaitVisible(chromedp.ID("token")),
			chromedp.Navigate(b.srv.URL+"/ui/classes/c1"), chromedp.WaitVisible(chromedp.ID("token"))); err != nil {
			t.Fatal(err)
		}
		if loc := run(t, ctx, chromedp.Location()); !strings.HasSuffix(loc, "/ui/login") {
			t.Errorf("after signing out /ui/classes/c1 went to %s", loc)
		}
	})

	t.Run("parent", func(t *testing.T) {
		token, _, err := credentials.New(b.pool).CreateDashboardToken(t.Context(), credentials.DashboardToken{TenantID: "d1",
			Role: credentials.RoleParent, StudentIDs: []string{"u-c1"}})
		if err != nil {
			t.Fatal(err)
		}
		ctx := b.signIn(t, token)
		child := b.w.students["d1"]["c1"]
		b.open(t, ctx, "/ui/students/"+child)
		sameNumbers(t, ctx, "parent's child", b.summary(t, "d1-district", "/v1/students/"+child+"/summary"+span))
		b.shot(t, ctx, "parent-child")
		for _, path := range []string{"/ui/students/" + b.w.students["d1"]["c2"], "/ui/classes/c1", "/ui/district"} {
			b.open(t, ctx, path)
			if status := pageError(t, ctx); status != "403" {
				t.Errorf("parent on %s: page shows status %q, want 403", path, status)
			}
			if values, _ := shown(t, ctx); len(values) != 0 {
				t.Errorf("parent on %s: numbers shown %v", path, values)
			}
		}
	})

	t.Run("analytics", func(t *testing.T) {
		ctx := b.signIn(t, b.creds["d1-district"])
		b.open(t, ctx, "/ui/analytics?steps=login,content_view")
		var funnel api.Funnel
		if code := b.get(t, b.creds["d1-district"], "/v1/funnels?window=7d&steps=login,content_view&"+span[1:], &funnel); code != 200 {
			t.Fatalf("funnel: %d", code)
		}
		if got, want := funnelShown(t, ctx), funnelOf(funnel); got != want || len(funnel.Steps) != 2 {
			t.Errorf("funnel page shows %s, the API %s", got, want)
		}
		b.shot(t, ctx, "district-admin-analytics")
		accessible(t, ctx, "analytics")
	})

	t.Run("phone", func(t *testing.T) {
		ctx := b.signIn(t, b.creds["d1-district"])
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(375, 812, chromedp.EmulateScale(3), chromedp.EmulateMobile, chromedp.EmulateTouch)); err != nil {
			t.Fatal(err)
		}
		b.open(t, ctx, "/ui/district")
		sameNumbers(t, ctx, "district on a phone", b.summary(t, "d1-district", "/v1/district/summary"+span))
		// One column, nothing wider than the screen: no sideways scrolling.
		if w := run(t, ctx, chromedp.Evaluate[[]int](`[document.documentElement.scrollWidth, window.innerWidth]`)); w[0] > w[1] {
			t.Errorf("on a 375 px wide screen the page is %d px wide", w[0])
		}
		b.shot(t, ctx, "district-admin-phone")
		accessible(t, ctx, "district on a phone")
	})

	t.Run("bad token", func(t *testing.T) {
		ctx := b.tab(t)
		if err := chromedp.Do(ctx, chromedp.Navigate(b.srv.URL+"/ui/login"), chromedp.SendKeys(chromedp.ID("token"), "edt_nope_nope"),
			chromedp.Submit(chromedp.ID("token")), chromedp.WaitVisible(chromedp.ID("login-error"))); err != nil {
			t.Fatal(err)
		}
		accessible(t, ctx, "sign-in with an error")
		if msg := run(t, ctx, chromedp.Text(chromedp.ID("login-error"))); !strings.Contains(msg, "unknown, revoked or expired") {
			t.Errorf("sign-in with a bad token says %q", msg)
		}
	})
}
