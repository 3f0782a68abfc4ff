package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/archive/archivetest"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/pgutil"
	"github.com/edtech-analytics/platform/libs/testenv/devenv"
	"github.com/jackc/pgx/v5"
)

// running is a demo started by the test.
type running struct {
	dir     string
	events  uint64            // what the demo said ClickHouse holds once it was ready
	archive string            // where the demo said its archive is
	query   string            // the query service's URL, from the dashboards' line
	tokens  map[string]string // dashboard token by role, as the demo printed them
	stop    func()
}

var (
	caughtUp    = regexp.MustCompile(`ClickHouse events = (\d+)`)
	archiveLine = regexp.MustCompile(`^\s+cd (\S+) && duckdb `)
	uiLine      = regexp.MustCompile(`^\s+Web dashboards: (http://\S+)/ui/ `)
	tokenLine   = regexp.MustCompile(`^\s+(district admin|school admin|teacher|parent)( of (\S+))?:\s+(edt_\S+)$`)
)

// start runs a demo on dir until the test ends and returns once it says where to look.
func start(t testing.TB, dir string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := Run(ctx, Options{Dir: dir, AnyPorts: true}, pw)
		pw.CloseWithError(fmt.Errorf("demo stopped: %v", err))
		done <- err
	}()
	r := &running{dir: dir, tokens: map[string]string{}}
	stopped := false
	r.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		go func() { _, _ = io.Copy(io.Discard, pr) }()
		if err := <-done; err != nil {
			t.Errorf("demo on %s: %v", dir, err)
		}
	}
	t.Cleanup(r.stop)
	sc := bufio.NewScanner(pr)
	var said []string
	for sc.Scan() {
		line := sc.Text()
		said = append(said, line)
		if m := caughtUp.FindStringSubmatch(line); m != nil {
			r.events, _ = strconv.ParseUint(m[1], 10, 64)
		}
		if strings.HasPrefix(line, "Where to look") {
			for sc.Scan() { // the rest of the advice, up to its last line
				if m := archiveLine.FindStringSubmatch(sc.Text()); m != nil {
					r.archive = m[1]
				}
				if m := uiLine.FindStringSubmatch(sc.Text()); m != nil {
					r.query = m[1]
				}
				if m := tokenLine.FindStringSubmatch(sc.Text()); m != nil {
					r.tokens[m[1]] = m[4]
				}
				if strings.HasPrefix(sc.Text(), "Ctrl-C") {
					break
				}
			}
			go func() { _, _ = io.Copy(io.Discard, pr) }()
			return r
		}
	}
	t.Fatalf("the demo on %s did not get ready: %v\n%s", dir, sc.Err(), strings.Join(said, "\n"))
	return nil
}

// TestTwoDemosSideBySide: demos of two checkouts share the local servers but not their databases; the
// second, starting fresh, leaves the first's data alone, and a second demo on a state directory in use
// is refused instead of recreating its databases.
func TestTwoDemosSideBySide(t *testing.T) {
	ctx := t.Context()
	first, second := filepath.Join(t.TempDir(), "a", ".dev"), filepath.Join(t.TempDir(), "b", ".dev")
	if DatabaseName(first) == DatabaseName(second) {
		t.Fatalf("two state directories share the database %s", DatabaseName(first))
	}
	t.Cleanup(func() { dropDatabases(t, first, second) })

	a := start(t, first)
	if a.events == 0 {
		t.Fatal("the first demo stored no events")
	}
	if want := filepath.Join(first, "archive"); a.archive != want {
		t.Fatalf("the demo says its archive is in %q, want %q", a.archive, want)
	}
	dashboardsWork(t, a)
	waitArchived(t, a)
	err := Run(ctx, Options{Dir: first, AnyPorts: true}, io.Discard)
	if !errors.Is(err, ErrRunning) || !strings.Contains(err.Error(), first) {
		t.Fatalf("a second demo on %s: %v, want ErrRunning naming the directory", first, err)
	}
	b := start(t, second)
	if b.events == 0 {
		t.Fatal("the second demo stored no events")
	}
	if got := countEvents(t, first); got != a.events {
		t.Fatalf("the first demo's ClickHouse holds %d events after the second started, want %d", got, a.events)
	}
	if n, want := countStudents(t, first), int64(len(spec(0, districts[0].id).Students())); n != want {
		t.Fatalf("the first demo's PostgreSQL holds %d students of %s, want %d (each student one internal id)", n, districts[0].id, want)
	}
	b.stop()
	a.stop()
}

// dashboardsWork proves that each role's token the demo printed reads its pages: the roster the demo
// sent gives the teacher its class, the school admin its school and the parent its child, each with the
// sample data's events. The roster reaches the stores through Kafka like the events, and a student's
// roster record may take its internal id from an event enriched at the same time, so each check waits
// (up to a minute) for the answer it expects.
func dashboardsWork(t testing.TB, r *running) {
	t.Helper()
	if r.query == "" || len(r.tokens) != 4 {
		t.Fatalf("the demo printed dashboards at %q and tokens %v, want the URL and one token per role", r.query, r.tokens)
	}
	today := time.Now().UTC()
	span := "from=" + today.AddDate(0, 0, -29).Format(time.DateOnly) + "&to=" + today.Format(time.DateOnly)
	get := func(role, path string, v any) error {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, r.query+path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+r.tokens[role])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s as %s: status %d", path, role, resp.StatusCode)
		}
		return json.NewDecoder(resp.Body).Decode(v)
	}
	type list struct {
		Items []struct {
			ID     string `json:"id"`
			Events uint64 `json:"events"`
		} `json:"items"`
	}
	type summary struct {
		Totals struct {
			Events uint64 `json:"events"`
		} `json:"totals"`
	}
	eventually(t, "the demo teacher's class with events", func() (any, bool, error) {
		var l list
		err := get("teacher", "/v1/teacher/classes?"+span, &l)
		return l, err == nil && len(l.Items) == 1 && l.Items[0].ID == districts[0].id+"-school-000-class-00" && l.Items[0].Events > 0, err
	})
	eventually(t, "the demo school admin's school with events", func() (any, bool, error) {
		var l list
		err := get("school admin", "/v1/district/schools?"+span, &l)
		return l, err == nil && len(l.Items) == 1 && l.Items[0].Events > 0, err
	})
	eventually(t, "the demo parent's child with events", func() (any, bool, error) {
		var kids struct {
			Students []struct {
				InternalID string `json:"internal_id"`
			} `json:"students"`
		}
		if err := get("parent", "/v1/parent/students", &kids); err != nil || len(kids.Students) != 1 {
			return kids, false, err
		}
		var s summary
		err := get("parent", "/v1/students/"+kids.Students[0].InternalID+"/summary?"+span, &s)
		return s, err == nil && s.Totals.Events > 0, err
	})
	eventually(t, "the demo district with events", func() (any, bool, error) {
		var s summary
		err := get("district admin", "/v1/district/summary?"+span, &s)
		return s, err == nil && s.Totals.Events > 0, err
	})
}

// eventually polls check until it reports ok, for at most a minute, and fails with what it last saw.
func eventually(t testing.TB, what string, check func() (any, bool, error)) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got, ok, err := check()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: after a minute, %+v (%v)", what, got, err)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitArchived waits until the demo's archive holds as many enriched events as ClickHouse did, each
// once, in Parquet files DuckDB's glob would read.
func waitArchived(t *testing.T, r *running) {
	t.Helper()
	deadline := time.NewTimer(90 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		ids := map[string]int{}
		for _, f := range archivetest.ReadLayer(t, r.archive, "enriched", archivetest.Enriched) {
			for _, e := range f.Envelopes {
				ids[e.EventID]++
			}
		}
		if uint64(len(ids)) >= r.events {
			for id, n := range ids {
				if n != 1 {
					t.Fatalf("event %s archived %d times", id, n)
				}
			}
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("the archive holds %d enriched events, ClickHouse %d", len(ids), r.events)
		case <-tick.C:
		}
	}
}

func countEvents(t *testing.T, dir string) uint64 {
	t.Helper()
	addr, err := devenv.ClickHouse(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ch, err := chutil.Open(t.Context(), chutil.Options{Addr: addr, Database: DatabaseName(dir)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ch.Close() }()
	var n uint64
	if err := ch.QueryRow(t.Context(), "SELECT count() FROM events").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func countStudents(t *testing.T, dir string) int64 {
	t.Helper()
	server, err := devenv.Postgres(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	url, err := pgutil.WithDatabase(server, DatabaseName(dir))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var n int64
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM district_"+districts[0].id+".student_activity").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func dropDatabases(t testing.TB, dirs ...string) {
	ctx := context.Background()
	server, err := devenv.Postgres(ctx)
	if err != nil {
		t.Error(err)
		return
	}
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Error(err)
		return
	}
	defer func() { _ = admin.Close(ctx) }()
	addr, err := devenv.ClickHouse(ctx)
	if err != nil {
		t.Error(err)
		return
	}
	ch, err := chutil.Open(ctx, chutil.Options{Addr: addr})
	if err != nil {
		t.Error(err)
		return
	}
	defer func() { _ = ch.Close() }()
	for _, d := range dirs {
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{DatabaseName(d)}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Error(err)
		}
		if err := chutil.DropDatabase(ctx, ch, DatabaseName(d)); err != nil {
			t.Error(err)
		}
	}
}
