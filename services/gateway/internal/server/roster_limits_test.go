package server_test

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/twmb/franz-go/pkg/kfake"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"
)

// zipFile is one file of a test package; stored files are not compressed.
type zipFile struct {
	name   string
	body   io.Reader
	stored bool
}

func packageOf(t testing.TB, files ...zipFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		h := &zip.FileHeader{Name: f.name, Method: zip.Deflate}
		if f.stored {
			h.Method = zip.Store
		}
		fw, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(fw, f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const goodOrgs = "sourcedId,name,type\norg-1,Lincoln High,school\n"

// generated streams what write writes, so that a large file is never whole in the test's memory.
func generated(write func(w io.Writer) error) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriter(pw)
		err := write(bw)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

// wideUsers is a users.csv whose header has n metadata columns (and no rows).
func wideUsers(n int) io.Reader {
	return generated(func(w io.Writer) error {
		if _, err := io.WriteString(w, "sourcedId,enabledUser,givenName,familyName"); err != nil {
			return err
		}
		for i := range n {
			if _, err := fmt.Fprintf(w, ",metadata.c%d", i); err != nil {
				return err
			}
		}
		_, err := io.WriteString(w, "\n")
		return err
	})
}

// metadataUsers is a users.csv of rows rows with cols one-letter metadata values each: little to send,
// much to hold once decoded (a map entry for every letter).
func metadataUsers(rows, cols int) io.Reader {
	return generated(func(w io.Writer) error {
		if _, err := io.WriteString(w, "sourcedId,enabledUser,givenName,familyName,orgSourcedIds,role"); err != nil {
			return err
		}
		for i := range cols {
			if _, err := fmt.Fprintf(w, ",metadata.c%d", i); err != nil {
				return err
			}
		}
		letters := strings.Repeat(",x", cols)
		for i := range rows {
			if _, err := fmt.Fprintf(w, "\nu%d,true,G,F,org-1,student%s", i, letters); err != nil {
				return err
			}
		}
		_, err := io.WriteString(w, "\n")
		return err
	})
}

func (f *fixture) postZip(t *testing.T, body []byte) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", f.srv.URL+"/v1/roster/csv", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return f.do(t, http.DefaultClient, req)
}

func (f *fixture) do(t *testing.T, c *http.Client, req *http.Request) (int, http.Header, map[string]any) {
	t.Helper()
	req.Header.Set("Authorization", "Bearer roster")
	req.Header.Set("Content-Type", "application/zip")
	resp, err := c.Do(req)
	if err != nil {
		t.Error(err)
		return 0, nil, nil
	}
	defer func() {
		if err := resp.Body.Close(); err != nil {
			t.Error(err)
		}
	}()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Errorf("answer is not JSON: %s", b)
	}
	return resp.StatusCode, resp.Header, out
}

// TestRosterWideHeaderIs413AndNothingProduced: a package whose users.csv header has a million metadata
// columns is refused 413 naming the file, the line and the bound, and nothing of the request is produced,
// not even the records of its good orgs.csv (a request is decoded whole before anything is produced); the
// good file alone is accepted.
func TestRosterWideHeaderIs413AndNothingProduced(t *testing.T) {
	f := newFixture(t)
	wide := packageOf(t, zipFile{name: "orgs.csv", body: strings.NewReader(goodOrgs)}, zipFile{name: "users.csv", body: wideUsers(1_000_000)})
	code, _, out := f.postZip(t, wide)
	if code != http.StatusRequestEntityTooLarge || out["type"] != "/problems/roster-too-large" ||
		!strings.Contains(out["detail"].(string), "users.csv line 1: 1000004 columns, at most 1000") {
		t.Fatalf("wide header: %d %.300v", code, out)
	}
	if raw, dlq := f.readTopic(t, f.kcfg.Topics().Raw), f.readTopic(t, f.kcfg.Topics().DLQ); len(raw) != 0 || len(dlq) != 0 {
		t.Fatalf("the refused request produced %d raw and %d dead-letter records", len(raw), len(dlq))
	}
	code, _, out = f.postZip(t, packageOf(t, zipFile{name: "orgs.csv", body: strings.NewReader(goodOrgs)}))
	if code != http.StatusAccepted || out["accepted"] != 1.0 {
		t.Fatalf("the good file alone: %d %v", code, out)
	}
}

// TestRosterZipBombIs413: a small entry that inflates hugely is refused 413 naming the file and the
// bound: by its declared size when it is over the bound of a file, and at the first line break it lacks
// when it is within it. Neither is inflated into memory.
func TestRosterZipBombIs413(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct {
		name string
		size int64
		want string
	}{
		{"over the bound of a file", 40 << 20, "users.csv: 41943040 bytes unzipped, at most 33554432 a file"},
		{"within it, without a line break", 8 << 20, "users.csv line 1: a header of 8388608 bytes, at most 65536"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bomb := packageOf(t, zipFile{name: "users.csv", body: io.LimitReader(zeros{}, tt.size)})
			code, _, out := f.postZip(t, bomb)
			if code != http.StatusRequestEntityTooLarge || out["type"] != "/problems/roster-too-large" || !strings.Contains(out["detail"].(string), tt.want) {
				t.Fatalf("bomb of %d bytes: %d %.300v", len(bomb), code, out)
			}
		})
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// gatedBody is a request body that reports its first read and then waits for the gate.
type gatedBody struct {
	r       io.Reader
	once    sync.Once
	started chan struct{}
	gate    chan struct{}
}

func (g *gatedBody) Read(p []byte) (int, error) {
	g.once.Do(func() { close(g.started); <-g.gate })
	return g.r.Read(p)
}

// TestRosterBudgetBusyIs503: while one request holds the gateway's roster budget (its body, declared by
// Content-Length, is charged before it is read, and it has not arrived yet), another is answered 503 with
// Retry-After at once instead of waiting; once the first finishes, the second is accepted.
func TestRosterBudgetBusyIs503(t *testing.T) {
	const budget = 8 << 20
	f := newFixture(t, func(s *setup) {
		s.limits.MaxRosterBodyBytes, s.limits.RosterMemoryBudget, s.limits.RosterRequestMemory = budget, budget, budget
	})
	// The first request: a good package padded (with a skipped __MACOSX file) to leave less than 1 MiB
	// of the budget, the least a request takes from it.
	pad := func(n int64) []byte {
		return packageOf(t, zipFile{name: "orgs.csv", body: strings.NewReader(goodOrgs)},
			zipFile{name: "__MACOSX/pad", body: io.LimitReader(zeros{}, n), stored: true})
	}
	want := int64(budget - 512<<10)
	first := pad(want - int64(len(pad(0))))
	if int64(len(first)) != want {
		t.Fatalf("padded package of %d bytes, want %d", len(first), want)
	}
	body := &gatedBody{r: bytes.NewReader(first), started: make(chan struct{}), gate: make(chan struct{})}
	req, err := http.NewRequestWithContext(t.Context(), "POST", f.srv.URL+"/v1/roster/csv", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = want
	// With Expect: 100-continue the client sends the body only once the handler reads it, which it does
	// after charging the body to the budget: the first read of the body says the budget is held.
	req.Header.Set("Expect", "100-continue")
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: time.Hour}}
	defer client.CloseIdleConnections()
	type answer struct {
		code int
		out  map[string]any
	}
	firstDone := make(chan answer, 1)
	go func() {
		code, _, out := f.do(t, client, req)
		firstDone <- answer{code, out}
	}()
	<-body.started

	second := packageOf(t, zipFile{name: "orgs.csv", body: strings.NewReader(strings.Replace(goodOrgs, "org-1", "org-2", 1))})
	code, hdr, out := f.postZip(t, second)
	if code != http.StatusServiceUnavailable || out["type"] != "/problems/roster-busy" || hdr.Get("Retry-After") == "" {
		t.Fatalf("while the budget is held: %d %v, Retry-After %q", code, out, hdr.Get("Retry-After"))
	}
	close(body.gate)
	if a := <-firstDone; a.code != http.StatusAccepted || a.out["accepted"] != 1.0 {
		t.Fatalf("the request holding the budget: %d %v", a.code, a.out)
	}
	if code, _, out := f.postZip(t, second); code != http.StatusAccepted || out["accepted"] != 1.0 {
		t.Fatalf("once the budget is free: %d %v", code, out)
	}
}

// TestRosterRequestsStayWithinTheBudget: eight oversized requests at once (four with a million-column
// header, four whose decoded metadata would take several times the bound of a request) add no more to
// the heap than the gateway's roster budget and a fixed slack: each is refused 413 (over its own bound)
// or 503 (the budget held by the others), and none holds more than it was charged.
//
// The heap is measured from HeapSys, which the runtime documents as an estimate of the largest size the
// heap has had, so a peak between two samples is not missed: what the requests added at most is HeapSys
// after them less the heap in use before them (an upper bound: it counts the idle heap before too). The
// test runs in a process of its own, so that earlier tests have not left an idle heap. The slack covers what is not charged: the
// garbage the collector lets accumulate between cycles (GOGC is set to 50 here, so at most half the live
// heap, which the budget bounds), and per connection buffers, inflaters and the CSV reader's record
// (under 1 MiB each). The broker keeps its log on disk and the keyring caches few keys, so that neither
// counts as the requests' memory.
func TestRosterRequestsStayWithinTheBudget(t *testing.T) {
	if os.Getenv(inChild) == "" {
		// In a process of its own, whose heap the other tests have not grown already.
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), inChild+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("%s", out)
		if err != nil {
			t.Fatalf("the test in its own process: %v", err)
		}
		return
	}
	const budget = 48 << 20
	f := newFixture(t, func(s *setup) {
		s.limits.MaxRosterBodyBytes, s.limits.RosterMemoryBudget, s.limits.RosterRequestMemory = 16<<20, budget, 24<<20
		// Neither the broker's log (in this process) nor the keyring's cache of data keys (shared by
		// every request, bounded by its own size) is the requests' memory.
		s.kafka = []kfake.Opt{kfake.DataDir(t.TempDir())}
		s.keyCache = 1000
	})
	wide := packageOf(t, zipFile{name: "users.csv", body: wideUsers(1_000_000)})
	heavy := packageOf(t, zipFile{name: "users.csv", body: metadataUsers(20_000, 200)})
	t.Logf("packages of %d and %d bytes", len(wide), len(heavy))
	defer debug.SetGCPercent(debug.SetGCPercent(50))
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)

	const n = 8
	codes := make([]int, n)
	details := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		body := wide
		if i%2 == 1 {
			body = heavy
		}
		wg.Go(func() {
			code, _, out := f.postZip(t, body)
			codes[i] = code
			details[i], _ = out["detail"].(string)
		})
	}
	wg.Wait()
	runtime.ReadMemStats(&after)

	added := int64(after.HeapSys) - int64(before.HeapInuse)
	const slack = budget/2 + 8*(1<<20)
	t.Logf("heap grew by %d MiB (budget %d MiB, slack %d MiB); answers %v", added>>20, budget>>20, slack>>20, codes)
	accepted := 0
	for i, code := range codes {
		want := "users.csv line 1: 1000004 columns, at most 1000"
		if i%2 == 1 {
			want = "bytes of memory"
		}
		switch {
		case code == http.StatusServiceUnavailable:
		case code == http.StatusRequestEntityTooLarge && strings.Contains(details[i], want):
		case code == http.StatusAccepted && i%2 == 1: // a heavy package fits when its chunks are let go
			accepted++
		default:
			t.Errorf("request %d: %d %s", i, code, details[i])
		}
	}
	// The broker runs in this process: what raw holds (one heavy package, sent by the first request that
	// got through; later ones find it unchanged) is in the heap too.
	raw := f.readTopic(t, f.kcfg.Topics().Raw)
	rawBytes := int64(0)
	for _, r := range raw {
		rawBytes += int64(len(r.Key) + len(r.Value))
	}
	t.Logf("raw holds %d records, %d MiB", len(raw), rawBytes>>20)
	if added > budget+slack+rawBytes {
		t.Fatalf("the heap grew by %d bytes, over the budget %d, slack %d and raw's %d", added, budget, slack, rawBytes)
	}
	// A request refused while it sent may have sent some of its records, unacknowledged: the same ids a
	// retry sends again. Raw holds no record but the heavy package's, and all of them once one succeeded.
	ids := map[string]bool{}
	for _, r := range raw {
		ids[f.rawEvent(t, r).RosterUser.SourcedID] = true
	}
	if len(ids) > 20_000 || accepted > 0 && len(ids) != 20_000 {
		t.Fatalf("raw holds %d distinct users; %d requests were accepted", len(ids), accepted)
	}
}

// inChild is set in the environment of a test run in a process of its own.
const inChild = "GATEWAY_TEST_IN_CHILD"
