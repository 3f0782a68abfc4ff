// Package demo is `make demo`: it starts the platform in one process, creates demo districts and keys,
// feeds them sample data through the gateway, waits until both stores show it, and prints where to look.
package demo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/edtech-analytics/platform/libs/keyring"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/pgutil"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/testenv/devenv"
	"github.com/edtech-analytics/platform/libs/testenv/sampledata"
	"github.com/edtech-analytics/platform/services/devstack/internal/stack"
	"github.com/jackc/pgx/v5"
)

// Options are the demo's settings.
type Options struct {
	// Dir holds the demo's state: the embedded Kafka's data, the log and the lock that keeps a second
	// demo off the same state.
	Dir string
	// AnyPorts listens on free ports chosen by the system instead of preferring 9092, 8080 and 8081.
	AnyPorts bool
}

// DatabaseName is the name of the PostgreSQL and ClickHouse databases of the demo whose state is in dir
// (an absolute path): each checkout's demo has its own, so demos of two checkouts share the local
// servers without touching each other's data.
func DatabaseName(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return "edtech_demo_" + hex.EncodeToString(sum[:6])
}

// ErrRunning is returned when another demo runs on the same state directory.
var ErrRunning = errors.New("another demo is running on this state directory")

// Districts are the demo tenants.
var districts = []struct{ id, name string }{
	{"northfield", "Northfield Unified"}, {"riverside", "Riverside County Schools"}, {"lakeview", "Lakeview ISD"},
}

// Run runs the demo until ctx is done.
func Run(ctx context.Context, opts Options, out io.Writer) (err error) {
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	release, err := claim(dir)
	if err != nil {
		return err
	}
	defer release()
	database := DatabaseName(dir)
	logPath := filepath.Join(dir, "devstack.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := logFile.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing %s: %w", logPath, cerr))
		}
	}()
	log := obs.NewLogger(logFile, "info", "")
	// say prints to out until a write fails; Run returns that first error when it ends.
	var sayErr error
	say := func(format string, args ...any) {
		if sayErr == nil {
			_, sayErr = fmt.Fprintf(out, format+"\n", args...)
		}
	}
	defer func() { err = errors.Join(err, sayErr) }()

	say("starting local PostgreSQL and ClickHouse (reused when already running)...")
	pgServer, err := devenv.Postgres(ctx)
	if err != nil {
		return err
	}
	chAddr, err := devenv.ClickHouse(ctx)
	if err != nil {
		return err
	}
	kafkaDir := filepath.Join(dir, "kafka")
	_, statErr := os.Stat(kafkaDir)
	freshKafka := errors.Is(statErr, os.ErrNotExist)
	pgURL, err := prepareStores(ctx, pgServer, chAddr, database, freshKafka)
	if err != nil {
		return err
	}
	archiveDir, err := prepareArchive(dir, freshKafka)
	if err != nil {
		return err
	}

	tel, err := obs.Init(ctx, "devstack")
	if err != nil {
		return err
	}
	defer func() {
		if err := tel.Shutdown(context.WithoutCancel(ctx)); err != nil {
			log.Warn("shutting down telemetry", "err", err)
		}
	}()
	say("starting embedded Kafka (data in %s) and every service (logs in %s)...", kafkaDir, logPath)
	port := func(want int) int { return freePort(ctx, want) }
	if opts.AnyPorts {
		port = func(int) int { return 0 }
	}
	keyFile, err := masterKeyFile(dir)
	if err != nil {
		return err
	}
	st, err := stack.Start(ctx, stack.Config{
		Keys:         keyring.Config{MasterKeyFile: keyFile},
		KafkaDataDir: kafkaDir, KafkaPort: port(9092), DatabaseURL: pgURL,
		ClickHouseAddr: chAddr, ClickHouseDatabase: database, GatewayAddr: fmt.Sprintf("127.0.0.1:%d", port(8080)),
		QueryAddr: fmt.Sprintf("127.0.0.1:%d", port(8081)), ArchiveURL: "file://" + archiveDir,
	}, svc.Runtime{Log: log, Tel: tel})
	if err != nil {
		return err
	}
	defer func() {
		say("\nstopping...")
		if err := st.Close(); err != nil {
			say("stop: %v", err)
		}
	}()

	keys, err := seedTenants(ctx, pgURL)
	if err != nil {
		return err
	}
	say("demo districts ready: %d", len(keys))
	if err := uploadRosters(ctx, st.GatewayURL, keys); err != nil {
		return err
	}
	say("sent each district's roster (OneRoster 1.2 CSV: schools, classes, students, teachers) through the gateway")
	tokens, err := dashboardTokens(ctx, pgURL, keys[0].tenant)
	if err != nil {
		return err
	}

	start := time.Now()
	accepted, rejected, err := feed(ctx, st.GatewayURL, keys)
	if err != nil {
		return err
	}
	say("sent sample data through the gateway: %d events accepted, %d rejected (to the DLQ) in %s", accepted, rejected, time.Since(start).Round(time.Millisecond))

	chRows, pgCount, err := waitForStores(ctx, chAddr, database, pgURL, accepted, keys)
	if err != nil {
		return err
	}
	say("stores caught up after %s: ClickHouse events = %d, PostgreSQL student_activity total = %d",
		time.Since(start).Round(time.Millisecond), chRows, pgCount)
	if !freshKafka {
		say("(Kafka data was kept from an earlier run: the re-sent events were recognised as retries and not counted twice)")
	}

	chHost, chPort, _ := net.SplitHostPort(chAddr)
	say(`
Where to look:

  Send an event (key of district %[1]s, shown once):
    curl -s -X POST %[2]s/v1/events -H 'Authorization: Bearer %[3]s' -H 'Content-Type: application/json' \
      -d '{"events":[{"event_id":"'$(cat /proc/sys/kernel/random/uuid)'","type":"attendance","occurred_at":"'$(date -u +%%FT%%TZ)'","actor":{"sis_id":"S1","role":"student"},"school_id":"%[1]s-school-000","payload":{"status":"present","date":"'$(date -u +%%F)'"}}]}'

  Dashboard API (district summary from the rollups: active students, attendance rate, score quantiles,
  late submissions, content time, logins; also /v1/schools/{id}/summary, /v1/classes/{id}/summary):
    curl -s '%[9]s/v1/district/summary?from=%[11]s&to=%[12]s' -H 'Authorization: Bearer %[10]s'

  Daily active students per school (ClickHouse rollup kept by a materialized view):
    clickhouse-client --host %[4]s --port %[5]s -d %[6]s -q "SELECT tenant_id, school_id, day, uniqExactMerge(active_students) AS active, countMerge(events) AS events FROM school_daily GROUP BY tenant_id, school_id, day ORDER BY tenant_id, school_id, day LIMIT 20"

  Current state per district (PostgreSQL, one schema per district):
    psql '%[7]s' -c "SELECT count(*) AS students, sum(event_count) AS events FROM district_%[1]s.student_activity"

  The archive (raw and enriched events as Parquet files, by district and day; services/archiver/README.md),
  in %[13]s; read it with DuckDB:
    cd %[13]s && duckdb -c "SELECT tenant_id, date, count(*) AS events FROM read_parquet('enriched/*/*/*.parquet', hive_partitioning=1) GROUP BY ALL ORDER BY ALL"

  Web dashboards: %[9]s/ui/  (sign in with one of these tokens of %[1]s; each sees what its role may)
%[14]s
  Health and metrics: %[2]s/readyz  %[2]s/metrics
  Logs: %[8]s

Ctrl-C stops the platform (the databases keep running: make servers-down stops them).`,
		keys[0].tenant, st.GatewayURL, keys[0].key, chHost, chPort, database, pgURL, logPath,
		st.QueryURL, keys[0].dashboardKey, demoStart().Format(time.DateOnly), demoStart().AddDate(0, 0, 6).Format(time.DateOnly),
		archiveDir, tokens)
	<-ctx.Done()
	return nil
}

// prepareArchive returns the directory of the demo's archive (file://), under dir. When Kafka starts
// empty the archive is removed first, as the databases are: its offsets are those of the old log.
func prepareArchive(dir string, freshKafka bool) (string, error) {
	archiveDir := filepath.Join(dir, "archive")
	if freshKafka {
		if err := os.RemoveAll(archiveDir); err != nil {
			return "", fmt.Errorf("clearing the archive of an earlier Kafka: %w", err)
		}
	}
	if err := os.MkdirAll(archiveDir, 0o755); err != nil {
		return "", err
	}
	return archiveDir, nil
}

// prepareStores creates the demo's databases; when its Kafka starts empty they are recreated, so the
// stores' offsets never point past a log that no longer exists. Only this demo uses them: their name is
// its state directory's (DatabaseName), whose lock it holds.
func prepareStores(ctx context.Context, pgServer, chAddr, database string, fresh bool) (_ string, err error) {
	admin, err := pgutil.Connect(ctx, pgServer)
	if err != nil {
		return "", err
	}
	defer admin.Close()
	quoted := pgx.Identifier{database}.Sanitize()
	if fresh {
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+quoted+" WITH (FORCE)"); err != nil {
			return "", fmt.Errorf("dropping demo database: %w", err)
		}
	}
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", database).Scan(&exists); err != nil {
		return "", err
	}
	if !exists {
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+quoted); err != nil {
			return "", fmt.Errorf("creating demo database: %w", err)
		}
	}
	ch, err := chutil.Open(ctx, chutil.Options{Addr: chAddr})
	if err != nil {
		return "", err
	}
	defer func() { err = errors.Join(err, ch.Close()) }()
	if fresh {
		if err := chutil.DropDatabase(ctx, ch, database); err != nil {
			return "", err
		}
	}
	if err := chutil.CreateDatabase(ctx, ch, database); err != nil {
		return "", err
	}
	return pgutil.WithDatabase(pgServer, database)
}

// claim takes the state directory's lock for as long as the demo runs; a second demo on the same
// directory is refused, naming the directory, instead of recreating the databases under the first.
func claim(dir string) (release func(), err error) {
	path := filepath.Join(dir, "demo.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is in use (stop the other demo, or give this one DEV_DIR=another-dir)", ErrRunning, dir)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { _ = f.Close() }, nil // closing the descriptor drops the lock
}

type tenantKey struct{ tenant, key, dashboardKey, rosterKey string }

// spec is the sample data of the i-th demo district.
func spec(i int, tenant string) sampledata.Spec {
	return sampledata.Spec{TenantID: tenant, Schools: 3, ClassesPerSchool: 3, StudentsPerClass: 12, Days: 5, EventsPerStudent: 6,
		Start: demoStart(), Seed: uint64(i + 1)}
}

func seedTenants(ctx context.Context, pgURL string) ([]tenantKey, error) {
	pool, err := pgutil.Connect(ctx, pgURL)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	store, creds := tenants.New(fleet.New(pool, os.Getenv)), credentials.New(pool)
	var keys []tenantKey
	for _, d := range districts {
		if _, err := store.Create(ctx, d.id, d.name); err != nil && !errors.Is(err, tenants.ErrExists) {
			return nil, err
		}
		key, _, err := creds.CreateAPIKey(ctx, d.id, "demo-lms", []string{credentials.VerbEventsWrite})
		if err != nil {
			return nil, err
		}
		dash, _, err := creds.CreateAPIKey(ctx, d.id, "demo-dashboard", []string{credentials.VerbDashboardsRead})
		if err != nil {
			return nil, err
		}
		// The roster comes from the same source as the events: a student's (source, SIS id) is one person.
		sis, _, err := creds.CreateAPIKey(ctx, d.id, "demo-lms", []string{credentials.VerbRosterWrite})
		if err != nil {
			return nil, err
		}
		keys = append(keys, tenantKey{d.id, key, dash, sis})
	}
	return keys, nil
}

// feed posts each district's sample events in batches of 100, four requests at a time, plus one
// invalid event per district to show the dead-letter path.
func feed(ctx context.Context, gatewayURL string, keys []tenantKey) (accepted, rejected int, err error) {
	type job struct {
		key  string
		body []byte
	}
	var jobs []job
	for i, k := range keys {
		events := spec(i, k.tenant).Events()
		bad := events[0]
		bad.EventID, bad.Payload = "00000000-0000-4000-8000-00000000dead", map[string]any{"status": "asleep", "date": "2026-11-20"}
		events = append(events, bad)
		bodies, err := sampledata.Batches(events, 100)
		if err != nil {
			return 0, 0, err
		}
		for _, b := range bodies {
			jobs = append(jobs, job{k.key, b})
		}
	}
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		firstErr error
		next     = make(chan job)
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				a, r, err := post(ctx, gatewayURL, j.key, j.body)
				mu.Lock()
				accepted += a
				rejected += r
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
	return accepted, rejected, firstErr
}

func post(ctx context.Context, gatewayURL, key string, body []byte) (accepted, rejected int, err error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, gatewayURL+"/v1/events", bytes.NewReader(body))
		if err != nil {
			return 0, 0, err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, 0, err
		}
		var ans struct {
			Accepted int               `json:"accepted"`
			Rejected []json.RawMessage `json:"rejected"`
		}
		derr := json.NewDecoder(resp.Body).Decode(&ans)
		_ = resp.Body.Close() // read: the answer is decoded, or derr says why not
		switch {
		case resp.StatusCode == http.StatusAccepted && derr == nil:
			return ans.Accepted, len(ans.Rejected), nil
		case (resp.StatusCode == 503 || resp.StatusCode == 429) && attempt < 30:
			time.Sleep(time.Second) // the batch is retried whole: event ids make that safe
		default:
			return 0, 0, fmt.Errorf("gateway answered %d", resp.StatusCode)
		}
	}
}

// uploadRosters sends each district's roster package to the gateway's bulk roster endpoint.
func uploadRosters(ctx context.Context, gatewayURL string, keys []tenantKey) error {
	for i, k := range keys {
		body, err := spec(i, k.tenant).RosterPackage()
		if err != nil {
			return err
		}
		for attempt := 0; ; attempt++ {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, gatewayURL+"/v1/roster/csv", bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+k.rosterKey)
			req.Header.Set("Content-Type", "application/zip")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			_ = resp.Body.Close() // read: the answer is in msg
			switch {
			case resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusOK:
			case (resp.StatusCode == 503 || resp.StatusCode == 429) && attempt < 30:
				time.Sleep(time.Second) // the package is resent whole: the gateway's ledger drops what it already has
				continue
			default:
				return fmt.Errorf("roster of %s: gateway answered %d: %s", k.tenant, resp.StatusCode, msg)
			}
			break
		}
	}
	return nil
}

// dashboardTokens creates a dashboard token of each role in the first district's first school, class and
// student, and returns the lines that show them.
func dashboardTokens(ctx context.Context, pgURL, tenant string) (string, error) {
	pool, err := pgutil.Connect(ctx, pgURL)
	if err != nil {
		return "", err
	}
	defer pool.Close()
	sp := spec(0, tenant)
	creds := credentials.New(pool)
	var b strings.Builder
	for _, r := range []struct {
		what string
		tok  credentials.DashboardToken
	}{
		{"district admin", credentials.DashboardToken{Role: credentials.RoleDistrictAdmin}},
		{"school admin of " + sp.SchoolID(0), credentials.DashboardToken{Role: credentials.RoleSchoolAdmin, SchoolIDs: []string{sp.SchoolID(0)}}},
		{"teacher of " + sp.ClassID(0, 0), credentials.DashboardToken{Role: credentials.RoleTeacher, TeacherID: sp.TeacherID(0, 0)}},
		{"parent of " + sp.Students()[0].SISID, credentials.DashboardToken{Role: credentials.RoleParent, StudentIDs: []string{sp.Students()[0].SISID}}},
	} {
		r.tok.TenantID, r.tok.Label = tenant, "demo "+r.what
		plain, _, err := creds.CreateDashboardToken(ctx, r.tok)
		if err != nil {
			return "", fmt.Errorf("dashboard token for the demo's %s: %w", r.what, err)
		}
		fmt.Fprintf(&b, "    %-40s %s\n", r.what+":", plain)
	}
	return b.String(), nil
}

// waitForStores polls both stores until they hold every accepted event and every district's students
// have their internal ids in the roster (or a minute passes).
func waitForStores(ctx context.Context, chAddr, database, pgURL string, want int, keys []tenantKey) (chRows, pgCount uint64, err error) {
	ch, err := chutil.Open(ctx, chutil.Options{Addr: chAddr, Database: database})
	if err != nil {
		return 0, 0, err
	}
	defer func() { err = errors.Join(err, ch.Close()) }()
	pool, err := pgutil.Connect(ctx, pgURL)
	if err != nil {
		return 0, 0, err
	}
	defer pool.Close()
	deadline := time.Now().Add(time.Minute)
	for {
		// Distinct ids: a batch written twice (a consumer's retry) is merged away later, and would make a
		// plain count reach want before every district's events are in.
		_ = ch.QueryRow(ctx, "SELECT uniqExact(toString(event_id)) FROM events").Scan(&chRows)
		pgCount = 0
		for _, d := range districts {
			var n int64
			if err := pool.QueryRow(ctx, "SELECT coalesce(sum(event_count), 0)::bigint FROM district_"+d.id+".student_activity").Scan(&n); err == nil {
				pgCount += uint64(n)
			}
		}
		rostered := true
		for i, k := range keys {
			var n int64
			err := pool.QueryRow(ctx, "SELECT count(*) FROM district_"+k.tenant+".roster_users WHERE internal_id IS NOT NULL AND sourced_id LIKE $1",
				k.tenant+"-s%").Scan(&n)
			rostered = rostered && err == nil && n >= int64(len(spec(i, k.tenant).Students()))
		}
		if chRows >= uint64(want) && pgCount >= uint64(want) && rostered {
			return chRows, pgCount, nil
		}
		if time.Now().After(deadline) {
			return chRows, pgCount, fmt.Errorf("stores hold %d (ClickHouse) and %d (PostgreSQL) of %d events (rosters complete: %v) after a minute; see the log",
				chRows, pgCount, want, rostered)
		}
		select {
		case <-ctx.Done():
			return chRows, pgCount, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// demoStart is the first day of the sample data: a week ago.
func demoStart() time.Time { return time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -7) }

// freePort returns want if it can be bound on loopback, otherwise 0 (any free port).
func freePort(ctx context.Context, want int) int {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", want))
	if err != nil {
		return 0
	}
	if ln.Close() != nil {
		return 0
	}
	return want
}

// masterKeyFile returns the demo's master key file in dir, creating it with a fresh key the first time:
// the demo's sealed records stay readable across its restarts, and removing the directory shreds them.
func masterKeyFile(dir string) (string, error) {
	path := filepath.Join(dir, "master.keys")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return path, nil
	}
	if err != nil {
		return "", fmt.Errorf("creating the master key file: %w", err)
	}
	_, werr := fmt.Fprintf(f, "# master keys of this demo: the first wraps new district keys (ctl keys rotate-master)\n%s\n",
		keyring.NewLocalKeyLine("demo-1"))
	if err := errors.Join(werr, f.Close()); err != nil {
		return "", fmt.Errorf("writing the master key file: %w", err)
	}
	return path, nil
}
