package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/services/sink/app"
	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/edtech-analytics/platform/services/sink/internal/sinktest"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
)

// childEnv carries the child sink's configuration (JSON of childConfig) when the test binary is run as
// the sink.
const childEnv = "SINK_TEST_CHILD"

type childConfig struct {
	DatabaseURL string
	Env         map[string]string
	Kafka       kafkax.Config
	AdminAddr   string
}

// TestMain runs the sink itself when started as a child by the crash test: the same code as the sink
// binary's main, in a process the test can SIGKILL.
func TestMain(m *testing.M) {
	if raw := os.Getenv(childEnv); raw != "" {
		os.Exit(runChild(raw))
	}
	os.Exit(m.Run())
}

func runChild(raw string) int {
	var c childConfig
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		fmt.Fprintln(os.Stderr, "child config:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	tel, err := obs.Init(ctx, "sink")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for k, v := range c.Env { // the instances' URL variables (control.instances), as a deployment sets them
		if err := os.Setenv(k, v); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	cfg := app.Config{
		AdminAddr: c.AdminAddr, DatabaseURL: conf.Secret(c.DatabaseURL), Group: "sink", MaxPollRecords: 300, Kafka: c.Kafka,
		Keys: testKeys,
	}
	// A fixed group instance id: a restarted sink takes over its predecessor's partitions at once instead
	// of waiting for the killed member's session to expire.
	opts := append(kafkatest.GroupOpts(), kgo.InstanceID("sink-0"))
	if err := app.Run(ctx, cfg, svc.Runtime{Log: slog.New(slog.NewJSONHandler(os.Stderr, nil)), Tel: tel}, opts...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// crashWorld is two PostgreSQL instances (south on the second), Kafka, and the sink's own store for
// reading the stored offsets.
type crashWorld struct {
	control, east *pgxpool.Pool
	urls          map[string]string
	kcfg          kafkax.Config
	codec         *records.Codec
	store         *pgstore.Store
}

var crashTenants = []string{"north", "south", "east"}

func newCrashWorld(t *testing.T) *crashWorld {
	t.Helper()
	w := &crashWorld{urls: map[string]string{}}
	var controlURL string
	w.control, controlURL = pgtest.New(t)
	w.east, w.urls["EAST_URL"] = pgtest.New(t)
	w.urls["control"] = controlURL
	if err := tenancy.Migrate(t.Context(), w.control); err != nil {
		t.Fatal(err)
	}
	instances := fleet.New(w.control, func(k string) string { return w.urls[k] })
	t.Cleanup(instances.Close)
	districts := tenants.New(instances)
	if _, err := instances.AddInstance(t.Context(), "east", "EAST_URL", false); err != nil {
		t.Fatal(err)
	}
	for _, id := range crashTenants {
		instance := ""
		if id == "south" {
			instance = "east"
		}
		if _, err := districts.CreateOn(t.Context(), id, id, instance); err != nil {
			t.Fatal(err)
		}
	}
	_, w.kcfg = kafkatest.New(t)
	var err error
	if w.codec, err = records.NewCodec(t.Context(), nil, nil); err != nil {
		t.Fatal(err)
	}
	if w.store, err = pgstore.New("sink", pgstore.Deps{Fleet: instances, Codec: w.codec, Log: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *crashWorld) poolOf(tenant string) *pgxpool.Pool {
	if tenant == "south" {
		return w.east
	}
	return w.control
}

// position is how many records the sink stored in total (the lowest stored offset per partition, added
// up).
func (w *crashWorld) position(t *testing.T, parts []int32) int64 {
	t.Helper()
	got, err := w.store.NextOffsets(t.Context(), w.kcfg.Topics().Enriched, parts)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, v := range got {
		n += v
	}
	return n
}

// child is one sink process.
type child struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

func (w *crashWorld) start(t *testing.T) *child {
	t.Helper()
	raw, err := json.Marshal(childConfig{DatabaseURL: w.urls["control"], Env: map[string]string{"EAST_URL": w.urls["EAST_URL"]},
		Kafka: w.kcfg, AdminAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$"), out: &bytes.Buffer{}}
	c.cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSIGKILLedSinkLeavesExactState runs the sink binary's code in a child process and SIGKILLs it at
// least 25 times while it is writing, then lets one run finish. The districts (on two PostgreSQL
// instances) must hold exactly the state the records describe: nothing lost, nothing applied twice.
//
// A kill is known to land mid-write without guessing at the clock: before the child starts, the test
// takes one district's lock exclusively, as a rebuild does. The child's transaction on that district's
// instance then waits for it after locking its offset row, while the other instance's transaction
// commits or not, and the test kills the child once the server shows that wait. The districts take
// turns, so kills land mid-transaction on each instance and between the instances' commits. Every
// fourth run is instead killed as soon as it has stored a random number of records: between
// transactions, or before Kafka hears of them.
func TestSIGKILLedSinkLeavesExactState(t *testing.T) {
	w := newCrashWorld(t)
	rng := rand.New(rand.NewPCG(7, 7))
	var all []*records.EnrichedEvent
	ends := map[int32]int64{}
	produce := func(n int) {
		evs := sinktest.GenEvents(rng, crashTenants, n)
		all = append(all, evs...)
		maps.Copy(ends, sinktest.Produce(t, w.kcfg, sinktest.Encode(t, w.codec, w.kcfg.Topics().Enriched, evs)))
	}
	produce(6000)
	parts := []int32{0, 1, 2, 3}
	total := func() int64 {
		var n int64
		for _, v := range ends {
			n += v
		}
		return n
	}

	const kills = 25
	midWrite := 0
	last := int64(0)
	for i := 0; midWrite < kills; i++ {
		produce(300) // every district has records the child has not stored
		if i%4 == 3 {
			c := w.start(t)
			target := last + 1 + rng.Int64N(600)
			sinktest.WaitFor(t, "the child to store records", func() bool { return w.position(t, parts) >= min(target, total()) })
			c.kill(t)
			last = w.position(t, parts)
			continue
		}
		tenant := crashTenants[midWrite%len(crashTenants)]
		release := lockDistrict(t, w.poolOf(tenant), tenant)
		c := w.start(t)
		sinktest.WaitFor(t, "the child to wait for district "+tenant+"'s lock", func() bool { return waitsForAdvisoryLock(t, w.poolOf(tenant)) })
		c.kill(t)
		release()
		midWrite++
		last = w.position(t, parts)
	}
	c := w.start(t)
	sinktest.WaitFor(t, "the last run to store every record", func() bool { return w.position(t, parts) == total() })
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Wait(); err != nil {
		t.Errorf("the last run did not stop cleanly: %v\n%s", err, c.out)
	}
	t.Logf("%d records, %d kills while writing", len(all), midWrite)
	sinktest.AssertState(t, w.poolOf, crashTenants, sinktest.Expected(all))
}

// kill SIGKILLs the child and reaps it.
func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = c.cmd.Wait() // killed: the exit status says so
}

// lockDistrict takes the tenant's district lock exclusively on a connection of its own, as a rebuild
// does, until release is called: the sink's writes to the district wait for it inside their transaction.
func lockDistrict(t *testing.T, pool *pgxpool.Pool, tenant string) (release func()) {
	t.Helper()
	conn, err := pool.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	key := tenancy.DistrictLockKey(tenant)
	if _, err := conn.Exec(t.Context(), "SELECT pg_advisory_lock($1)", key); err != nil {
		conn.Release()
		t.Fatal(err)
	}
	return func() {
		defer conn.Release()
		if _, err := conn.Exec(t.Context(), "SELECT pg_advisory_unlock($1)", key); err != nil {
			t.Fatal(err)
		}
	}
}

// waitsForAdvisoryLock tells whether a session of the pool's database waits for an advisory lock.
func waitsForAdvisoryLock(t *testing.T, pool *pgxpool.Pool) bool {
	t.Helper()
	var waiting bool
	err := pool.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))`).Scan(&waiting)
	if err != nil {
		t.Fatal(err)
	}
	return waiting
}

// lockedBuffer is a log destination safe for the sink's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSinkPausesWhilePostgresIsDownAndResumes: PostgreSQL goes away while records keep arriving; the
// sink pauses the partitions it cannot write, resumes by itself when the database is back, and ends
// with exactly the state the records describe.
func TestSinkPausesWhilePostgresIsDownAndResumes(t *testing.T) {
	w := newCrashWorld(t)
	var controlDB string
	if err := w.control.QueryRow(t.Context(), "SELECT current_database()").Scan(&controlDB); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	tel, err := obs.Init(t.Context(), "sink")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("EAST_URL", w.urls["EAST_URL"]) // the instance's URL variable (control.instances)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Config{AdminAddr: "127.0.0.1:0", DatabaseURL: conf.Secret(w.urls["control"]), Group: "sink",
			MaxPollRecords: 500, Kafka: w.kcfg, Keys: testKeys},
			svc.Runtime{Log: slog.New(slog.NewJSONHandler(logs, nil)), Tel: tel}, kafkatest.GroupOpts()...)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	rng := rand.New(rand.NewPCG(8, 8))
	var all []*records.EnrichedEvent
	ends := map[int32]int64{}
	produce := func(n int) {
		evs := sinktest.GenEvents(rng, crashTenants, n)
		all = append(all, evs...)
		maps.Copy(ends, sinktest.Produce(t, w.kcfg, sinktest.Encode(t, w.codec, w.kcfg.Topics().Enriched, evs)))
	}
	parts := []int32{0, 1, 2, 3}
	caughtUp := func() bool {
		got, err := w.store.NextOffsets(t.Context(), w.kcfg.Topics().Enriched, parts)
		return err == nil && maps.Equal(got, ends)
	}
	produce(1000)
	sinktest.WaitFor(t, "the sink to store the first records", caughtUp)

	t.Cleanup(func() { sinktest.SetConnectable(t, controlDB, true) })
	sinktest.SetConnectable(t, controlDB, false, w.control)
	for range 5 { // records keep coming while the database is down
		produce(200)
	}
	sinktest.WaitFor(t, "a partition to be paused while PostgreSQL is down", func() bool {
		return strings.Contains(logs.String(), "partition paused")
	})
	produce(200) // and more while it is paused
	sinktest.SetConnectable(t, controlDB, true)
	sinktest.WaitFor(t, "the sink to catch up after PostgreSQL is back", caughtUp)
	if !strings.Contains(logs.String(), "partitions resumed") {
		t.Errorf("no partition resumed:\n%s", tail(logs.String()))
	}
	sinktest.AssertState(t, w.poolOf, crashTenants, sinktest.Expected(all))
}

// tail returns the last lines of a log for a failure message.
func tail(s string) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}
