package rebuild_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkatest"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/edtech-analytics/platform/services/sink/internal/sinktest"
	"github.com/edtech-analytics/platform/services/sink/rebuild"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const group = "sink"

var tenants = []string{"north", "south", "east"}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// world is a control database with the test tenants, a Kafka cluster, and a live sink consuming it.
type world struct {
	pool  *pgxpool.Pool
	fleet *tenancy.Fleet
	codec *records.Codec
	kcfg  kafkax.Config
	store *pgstore.Store
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{}
	w.pool, _ = pgtest.New(t)
	if err := tenancy.Migrate(t.Context(), w.pool); err != nil {
		t.Fatal(err)
	}
	w.fleet = tenancy.NewFleet(w.pool, func(string) string { return "" })
	for _, id := range tenants {
		if _, err := tenancy.NewFleetStore(w.fleet).CreateTenant(t.Context(), id, id); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if w.codec, err = records.NewCodec(t.Context(), nil, nil); err != nil {
		t.Fatal(err)
	}
	_, w.kcfg = kafkatest.New(t)
	if w.store, err = pgstore.New(group, pgstore.Deps{Fleet: w.fleet, Codec: w.codec, Log: discard()}); err != nil {
		t.Fatal(err)
	}
	return w
}

// sink runs the live sink until the test ends.
func (w *world) sink(t *testing.T) {
	t.Helper()
	c, err := kafkax.NewStoreConsumer(w.kcfg, kafkax.Deps{Log: discard()}, kafkax.ConsumerConfig{
		Group: group, Topic: w.kcfg.Topics().Enriched, MaxPollRecords: 500,
		RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond, Extra: kafkatest.GroupOpts(),
	}, w.store, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// produce writes events keyed by tenant (hot tenants by tenant/shard) and returns the partition ends.
func (w *world) produce(t *testing.T, evs []*records.EnrichedEvent, hot map[string]int) map[int32]int64 {
	t.Helper()
	recs := sinktest.Encode(t, w.codec, w.kcfg.Topics().Enriched, evs)
	for i, r := range recs {
		if n := hot[evs[i].TenantID]; n > 0 {
			// By student, as the gateway does; a roster record by its entity, so that all records of an
			// entity keep one order (records of one entity with equal times on different shards would
			// apply in whichever order their partitions are read).
			by := evs[i].Actor.InternalID
			if records.IsRosterType(evs[i].Type) {
				id, _, _, _ := sinktest.RosterFacts(evs[i])
				by = evs[i].Type + "/" + id
			}
			r.Key = fmt.Appendf(nil, "%s/%d", evs[i].TenantID, fnv32(by)%uint32(n))
		}
	}
	return sinktest.Produce(t, w.kcfg, recs)
}

func fnv32(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

// caughtUp waits until the live sink stored offsets at ends.
func (w *world) caughtUp(t *testing.T, ends map[int32]int64) {
	t.Helper()
	sinktest.WaitFor(t, "the live sink to catch up", func() bool {
		got, err := w.store.NextOffsets(t.Context(), w.kcfg.Topics().Enriched, slices.Collect(maps.Keys(ends)))
		return err == nil && maps.Equal(got, ends)
	})
}

func (w *world) exec(t *testing.T, sql string) {
	t.Helper()
	if _, err := w.pool.Exec(t.Context(), sql); err != nil {
		t.Fatal(err)
	}
}

func (w *world) schemaExists(t *testing.T, name string) bool {
	t.Helper()
	var ok bool
	if err := w.pool.QueryRow(t.Context(), "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// damage changes and deletes rows of north's sink tables.
func (w *world) damage(t *testing.T) {
	t.Helper()
	w.exec(t, `DELETE FROM district_north.student_activity WHERE internal_id IN
			(SELECT internal_id FROM district_north.student_activity LIMIT 3);
		UPDATE district_north.attendance_daily SET status = 'absent', occurred_at = occurred_at - interval '1 day';
		DELETE FROM district_north.roster_users;
		INSERT INTO district_north.submissions (internal_id, assignment_id) VALUES (gen_random_uuid(), 'bogus')`)
}

// TestRebuildRepairsADamagedDistrictWhileIngestionGoesOn: north's live tables are damaged; a rebuild
// from replay, while the live sink keeps consuming new records of every district, leaves every district
// exactly as the records say, reports the damaged tables as different, and keeps the district's tables
// that are not the sink's.
func TestRebuildRepairsADamagedDistrictWhileIngestionGoesOn(t *testing.T) {
	w := newWorld(t)
	rng := rand.New(rand.NewPCG(1, 1))
	first := sinktest.GenEvents(rng, tenants, 4000)
	ends := w.produce(t, first, nil)
	w.sink(t)
	w.caughtUp(t, ends)
	w.damage(t)
	// Not the sink's: the rebuild must leave it alone.
	w.exec(t, "INSERT INTO district_north.students (internal_id) VALUES ('00000000-0000-4000-8000-0000000000aa')")

	more := sinktest.GenEvents(rng, tenants, 2000)
	var wg sync.WaitGroup
	wg.Go(func() { // live ingestion during the rebuild
		for chunk := range slices.Chunk(more, 100) {
			w.produce(t, chunk, nil)
			time.Sleep(20 * time.Millisecond)
		}
	})
	var phases []string
	report, err := rebuild.Run(t.Context(), w.fleet, w.codec, rebuild.Config{TenantID: "north", Group: group, Kafka: w.kcfg,
		SwitchLag: 50, BatchRecords: 300, Log: discard(), Progress: func(p rebuild.Progress) {
			if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
				phases = append(phases, p.Phase)
			}
		}})
	wg.Wait()
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	last := sinktest.GenEvents(rng, tenants, 30) // after the swap, into the new tables
	w.caughtUp(t, w.produce(t, last, nil))

	all := slices.Concat(first, more, last)
	sinktest.AssertState(t, func(string) *pgxpool.Pool { return w.pool }, tenants, sinktest.Expected(all))

	if !report.Swapped || report.Equal || report.Applied == 0 || report.Scanned < report.Applied ||
		!slices.Equal(report.Partitions, []int32{rebuild.KeyPartition("north", 4)}) {
		t.Errorf("report = %+v", report)
	}
	damaged := map[string]bool{"student_activity": true, "attendance_daily": true, "roster_users": true, "submissions": true}
	for _, c := range report.Tables {
		if c.Equal == damaged[c.Table] {
			t.Errorf("table %s: equal = %v, damaged = %v (%+v)", c.Table, c.Equal, damaged[c.Table], c)
		}
	}
	if !slices.Equal(phases, []string{rebuild.PhaseReplay, rebuild.PhaseCatchUp, rebuild.PhaseCompare, rebuild.PhaseSwap, rebuild.PhaseDone}) &&
		!slices.Equal(phases, []string{rebuild.PhaseCatchUp, rebuild.PhaseCompare, rebuild.PhaseSwap, rebuild.PhaseDone}) {
		t.Errorf("phases = %v", phases)
	}
	var kept int
	if err := w.pool.QueryRow(t.Context(), "SELECT count(*) FROM district_north.students").Scan(&kept); err != nil || kept != 1 {
		t.Errorf("the enricher's table lost its row: %d, %v", kept, err)
	}
	if w.schemaExists(t, "rebuild_north") || w.schemaExists(t, "retired_north") {
		t.Error("the shadow or retired schema was left behind")
	}
}

// TestRebuildOfAHotDistrictScansEveryPartition: a hot district's records spread over every partition
// under tenant/shard keys. A dry run on intact tables finds them equal and swaps nothing; after damage,
// a dry run reports the difference and leaves the live tables as they are.
func TestRebuildOfAHotDistrictScansEveryPartition(t *testing.T) {
	w := newWorld(t)
	if _, err := tenancy.NewFleetStore(w.fleet).SetHotShards(t.Context(), "north", 8); err != nil {
		t.Fatal(err)
	}
	evs := sinktest.GenEvents(rand.New(rand.NewPCG(2, 2)), tenants, 3000)
	ends := w.produce(t, evs, map[string]int{"north": 8})
	w.sink(t)
	w.caughtUp(t, ends)

	cfg := rebuild.Config{TenantID: "north", Group: group, Kafka: w.kcfg, DryRun: true, Log: discard()}
	report, err := rebuild.Run(t.Context(), w.fleet, w.codec, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var north int64
	for _, ev := range evs {
		if ev.TenantID == "north" {
			north++
		}
	}
	if !report.Equal || report.Swapped || report.Applied != north || report.Scanned != int64(len(evs)) ||
		!slices.Equal(report.Partitions, []int32{0, 1, 2, 3}) {
		t.Errorf("dry run on intact tables: %+v", report)
	}

	w.damage(t)
	damagedState := sinktest.ReadState(t, func(string) *pgxpool.Pool { return w.pool }, []string{"north"})
	if report, err = rebuild.Run(t.Context(), w.fleet, w.codec, cfg); err != nil || report.Equal || report.Swapped {
		t.Errorf("dry run on damaged tables: %+v, %v", report, err)
	}
	if got := sinktest.ReadState(t, func(string) *pgxpool.Pool { return w.pool }, []string{"north"}); !maps.Equal(got, damagedState) {
		t.Error("a dry run changed the live tables")
	}
	if w.schemaExists(t, "rebuild_north") {
		t.Error("a dry run left its shadow schema")
	}
}

// TestKeyPartitionAgreesWithTheProducer: the partition the rebuild computes for a district is the one
// the platform's producers send its records to.
func TestKeyPartitionAgreesWithTheProducer(t *testing.T) {
	w := newWorld(t)
	var evs []*records.EnrichedEvent
	ids := []string{"north", "south", "east", "a1", "springfield", "d_0042"}
	for _, id := range ids {
		evs = append(evs, sinktest.GenEvents(rand.New(rand.NewPCG(3, 3)), []string{id}, 1)...)
	}
	recs := sinktest.Encode(t, w.codec, w.kcfg.Topics().Enriched, evs)
	sinktest.Produce(t, w.kcfg, recs)
	for i, r := range recs {
		if want := rebuild.KeyPartition(ids[i], 4); r.Partition != want {
			t.Errorf("%s went to partition %d, KeyPartition says %d", ids[i], r.Partition, want)
		}
	}
	// And it agrees with franz-go's Kafka-compatible key partitioner on keys of every length.
	kafka := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	rng := rand.New(rand.NewPCG(9, 9))
	for i := range 2000 {
		key := make([]byte, i%70)
		for j := range key {
			key[j] = byte(rng.IntN(256))
		}
		n := 1 + rng.IntN(64)
		if got, want := rebuild.KeyPartition(string(key), n), int32(kafka.Partition(&kgo.Record{Key: key}, n)); got != want {
			t.Fatalf("key %x among %d: KeyPartition %d, Kafka %d", key, n, got, want)
		}
	}
}

// TestRebuildRefusesATruncatedHistory: when retention removed the start of the district's partition,
// a replay would miss records, so the rebuild refuses unless told otherwise.
func TestRebuildRefusesATruncatedHistory(t *testing.T) {
	w := newWorld(t)
	evs := sinktest.GenEvents(rand.New(rand.NewPCG(4, 4)), []string{"north"}, 50)
	ends := w.produce(t, evs, nil)
	cl, err := kgo.NewClient(kgo.SeedBrokers(w.kcfg.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topic := w.kcfg.Topics().Enriched
	p := rebuild.KeyPartition("north", 4)
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: topic, Partition: p, At: 10})
	if _, err := kadm.NewClient(cl).DeleteRecords(t.Context(), offsets); err != nil {
		t.Fatal(err)
	}
	_, err = rebuild.Run(t.Context(), w.fleet, w.codec, rebuild.Config{TenantID: "north", Group: group, Kafka: w.kcfg, Log: discard()})
	if !errors.Is(err, rebuild.ErrHistoryTruncated) {
		t.Fatalf("Run = %v, want ErrHistoryTruncated", err)
	}
	w.sink(t)
	w.caughtUp(t, ends)
	report, err := rebuild.Run(t.Context(), w.fleet, w.codec, rebuild.Config{TenantID: "north", Group: group, Kafka: w.kcfg,
		AllowTruncatedHistory: true, Log: discard()})
	if err != nil || report.Applied != 40 || report.Scanned != 40 || !report.Swapped || !report.Equal {
		t.Errorf("with AllowTruncatedHistory: %+v, %v", report, err)
	}
}
