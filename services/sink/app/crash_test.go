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
	"time"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/kafkatest"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/tenancy"
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
	cfg := app.Config{
		AdminAddr: c.AdminAddr, DatabaseURL: conf.Secret(c.DatabaseURL), Group: "sink", MaxPollRecords: 300, Kafka: c.Kafka,
		// A fixed group instance id: a restarted sink takes over its predecessor's partitions at once
		// instead of waiting for the killed member's session to expire.
		ConsumerExtra: append(kafkatest.GroupOpts(), kgo.InstanceID("sink-0")),
		Getenv:        func(k string) string { return c.Env[k] },
	}
	if err := app.Run(ctx, cfg, svc.Runtime{Log: slog.New(slog.NewJSONHandler(os.Stderr, nil)), Tel: tel}); err != nil {
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
	fleet := tenancy.NewFleet(w.control, func(k string) string { return w.urls[k] })
	t.Cleanup(fleet.Close)
	tenants := tenancy.NewFleetStore(fleet)
	if _, err := tenants.AddInstance(t.Context(), "east", "EAST_URL", false); err != nil {
		t.Fatal(err)
	}
	for _, id := range crashTenants {
		instance := ""
		if id == "south" {
			instance = "east"
		}
		if _, err := tenants.CreateTenantOn(t.Context(), id, id, instance); err != nil {
			t.Fatal(err)
		}
	}
	_, w.kcfg = kafkatest.New(t)
	var err error
	if w.codec, err = records.NewCodec(t.Context(), nil, nil); err != nil {
		t.Fatal(err)
	}
	if w.store, err = pgstore.New("sink", pgstore.Deps{Fleet: fleet, Codec: w.codec, Log: slog.New(slog.DiscardHandler)}); err != nil {
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
// random moments, at least 25 times while it is writing, then lets one run finish. The districts (on
// two PostgreSQL instances) must hold exactly the state the records describe: nothing lost, nothing
// applied twice.
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
	var midStream int
	last := int64(0)
	for i := 0; midStream < kills; i++ {
		if i > 2*kills {
			t.Fatalf("only %d of %d kills landed while the sink was writing", midStream, i)
		}
		if total()-last < 1500 { // keep work in front of the sink
			produce(3000)
		}
		// Kill at a random moment once this run has stored something: mid-transaction, between
		// transactions, between the instances' commits, or before Kafka hears of them.
		c := w.start(t)
		sinktest.WaitFor(t, "the child to store records", func() bool { return w.position(t, parts) > last })
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = c.cmd.Wait()
		pos := w.position(t, parts)
		if pos > last && pos < total() {
			midStream++
		}
		last = pos
	}
	c := w.start(t)
	sinktest.WaitFor(t, "the last run to store every record", func() bool { return w.position(t, parts) == total() })
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Wait(); err != nil {
		t.Errorf("the last run did not stop cleanly: %v\n%s", err, c.out)
	}
	t.Logf("%d records, %d kills while writing", len(all), midStream)
	sinktest.AssertState(t, w.poolOf, crashTenants, sinktest.Expected(all))
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
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Config{AdminAddr: "127.0.0.1:0", DatabaseURL: conf.Secret(w.urls["control"]), Group: "sink",
			MaxPollRecords: 500, Kafka: w.kcfg, ConsumerExtra: kafkatest.GroupOpts(),
			Getenv: func(k string) string { return w.urls[k] }},
			svc.Runtime{Log: slog.New(slog.NewJSONHandler(logs, nil)), Tel: tel})
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
	sinktest.SetConnectable(t, controlDB, false)
	for range 5 { // records keep coming while the database is down
		produce(200)
		time.Sleep(300 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "partition paused") {
		t.Errorf("no partition was paused while PostgreSQL was down:\n%s", tail(logs.String()))
	}
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
