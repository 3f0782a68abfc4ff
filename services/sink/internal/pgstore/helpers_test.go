package pgstore_test

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/edtech-analytics/platform/services/sink/internal/sinktest"
	"github.com/jackc/pgx/v5/pgxpool"
)

const group = "sink-test"

var testTenants = []string{"north", "south", "east"}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// setup returns a fresh database with the control schema and the test tenants, and a codec.
func setup(t *testing.T) (*pgxpool.Pool, *records.Codec) {
	t.Helper()
	f := setupFleet(t, false)
	return f.control, f.codec
}

// fleetEnv is the test tenants on a control database and, with two instances, south on a second
// database registered as instance "east" (its URL in EAST_URL).
type fleetEnv struct {
	control, east *pgxpool.Pool
	controlURL    string
	eastName      string // the east database's name
	env           map[string]string
	codec         *records.Codec
}

func setupFleet(t *testing.T, twoInstances bool) *fleetEnv {
	t.Helper()
	f := &fleetEnv{env: map[string]string{}}
	f.control, f.controlURL = pgtest.New(t)
	if err := tenancy.Migrate(t.Context(), f.control); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	instances := f.fleet()
	t.Cleanup(instances.Close)
	districts := tenants.New(instances)
	if twoInstances {
		var url string
		f.east, url = pgtest.New(t)
		f.env["EAST_URL"] = url
		if err := f.east.QueryRow(t.Context(), "SELECT current_database()").Scan(&f.eastName); err != nil {
			t.Fatal(err)
		}
		if _, err := instances.AddInstance(t.Context(), "east", "EAST_URL", false); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range testTenants {
		instance := ""
		if twoInstances && id == "south" {
			instance = "east"
		}
		if _, err := districts.CreateOn(t.Context(), id, "District "+id, instance); err != nil {
			t.Fatalf("CreateOn %s: %v", id, err)
		}
	}
	var err error
	if f.codec, err = records.NewCodec(t.Context(), nil, nil); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fleetEnv) fleet() *fleet.Fleet {
	return fleet.New(f.control, func(k string) string { return f.env[k] })
}

// poolOf is the pool of the instance a test tenant lives on.
func (f *fleetEnv) poolOf(tenant string) *pgxpool.Pool {
	if tenant == "south" && f.east != nil {
		return f.east
	}
	return f.control
}

// store returns a sink store over the fleet, on pools of its own as the sink opens them, idle instances
// moved every idle records (0: default).
func (f *fleetEnv) store(t *testing.T, idle int64) *pgstore.Store {
	t.Helper()
	pool, err := pgstore.Connect(t.Context(), f.controlURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	fl := fleet.New(pool, func(k string) string { return f.env[k] }).WithConnect(pgstore.Connect)
	t.Cleanup(fl.Close)
	s, err := pgstore.New(group, pgstore.Deps{Fleet: fl, Codec: f.codec, Log: discard(), IdleAdvance: idle})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// one says every tenant lives on pool.
func one(pool *pgxpool.Pool) func(string) *pgxpool.Pool {
	return func(string) *pgxpool.Pool { return pool }
}

func newStore(t *testing.T, pool *pgxpool.Pool, codec *records.Codec) *pgstore.Store {
	t.Helper()
	s, err := pgstore.New(group, pgstore.Deps{Fleet: fleet.New(pool, noEnv), Codec: codec, Log: discard()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func noEnv(string) string { return "" }

// Aliases for the test kit, in the names these tests grew up with.
var (
	genEvents   = sinktest.GenEvents
	expected    = sinktest.Expected
	readState   = sinktest.ReadState
	encode      = sinktest.Encode
	produce     = sinktest.Produce
	waitFor     = sinktest.WaitFor
	rosterTypes = sinktest.RosterTypes
	rosterTable = sinktest.RosterTable
)

func ptr[T any](v T) *T { return &v }

type state = sinktest.State

func assertState(t *testing.T, poolOf func(string) *pgxpool.Pool, want state) {
	t.Helper()
	sinktest.AssertState(t, poolOf, testTenants, want)
}

// startConsumer runs a store consumer in the test group, polling up to maxPoll records at a time, until
// the returned stop is called (or ctx ends).
func startConsumer(t *testing.T, ctx context.Context, kcfg kafkax.Config, store kafkax.Store, maxPoll int) (stop func()) {
	t.Helper()
	c, err := kafkax.NewStoreConsumer(discard(), kafkax.ConsumerConfig{
		Group: group, Topic: kcfg.Topics().Enriched, MaxPollRecords: maxPoll,
		RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond,
	}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kafkax.NewGroupConsumer(kcfg, kafkax.Deps{Log: discard()}, group, kcfg.Topics().Enriched, kafkax.Batching{}, c.Rebalance(), kafkatest.GroupOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx, cl) }()
	return func() { cancel(); <-done }
}

// caughtUp reports whether the store's offsets reached ends.
func caughtUp(t *testing.T, store kafkax.Store, topic string, ends map[int32]int64) bool {
	t.Helper()
	got, err := store.NextOffsets(t.Context(), topic, slices.Collect(maps.Keys(ends)))
	if err != nil {
		t.Fatal(err)
	}
	return maps.Equal(got, ends)
}
