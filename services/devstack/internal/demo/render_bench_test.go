package demo

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// BenchmarkDashboardFirstRender measures the web dashboards' district overview on the demo data in
// headless Chromium: a demo runs, its district admin token signs in through the sign-in page, and each
// iteration loads /ui/district in a fresh tab until the page says it is drawn (numbers, charts and the
// schools list). ms/render is the whole load as the benchmark sees it; page-ms is the page's own figure
// (navigation start to drawn, performance.now()), median over the iterations.
//
//	go test -run '^$' -bench DashboardFirstRender ./services/devstack/internal/demo
func BenchmarkDashboardFirstRender(b *testing.B) {
	exe := os.Getenv("EDTECH_CHROMIUM")
	if exe == "" {
		p, err := exec.LookPath("chromium")
		if err != nil {
			b.Skip("no Chromium: `make deps` installs Debian's chromium as root with apt-get; set EDTECH_CHROMIUM to use another binary")
		}
		exe = p
	}
	dir := filepath.Join(b.TempDir(), ".dev")
	b.Cleanup(func() { dropDatabases(b, dir) })
	r := start(b, dir)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(b.TempDir()), chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-first-run", true), chromedp.WindowSize(1280, 900))
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if err := chromedp.Do(browser,
		chromedp.Navigate(r.query+"/ui/login"),
		chromedp.SendKeys(chromedp.ID("token"), r.tokens["district admin"]),
		chromedp.Submit(chromedp.ID("token")),
		chromedp.WaitVisible(chromedp.CSS(`main[data-ready="true"]`)),
	); err != nil {
		b.Fatal(err)
	}
	var pageMs []float64
	b.ResetTimer()
	for b.Loop() {
		tab, cancelTab := chromedp.NewContext(browser) // a new tab: nothing of the last page's state, the session cookie kept
		ctx, cancelTimeout := context.WithTimeout(tab, time.Minute)
		err := chromedp.Do(ctx, chromedp.Navigate(r.query+"/ui/district"), chromedp.WaitVisible(chromedp.CSS(`main[data-ready="true"] tr[data-id]`)))
		var ms string
		if err == nil {
			ms, err = chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("main").dataset.renderedMs`))
		}
		cancelTimeout()
		cancelTab()
		if err != nil {
			b.Fatal(err)
		}
		v, err := strconv.ParseFloat(ms, 64)
		if err != nil {
			b.Fatalf("renderedMs %q: %v", ms, err)
		}
		pageMs = append(pageMs, v)
	}
	b.StopTimer()
	slices.Sort(pageMs)
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/render")
	b.ReportMetric(pageMs[len(pageMs)/2], "page-ms")
	b.ReportMetric(pageMs[len(pageMs)-1], "page-ms-max")
}
