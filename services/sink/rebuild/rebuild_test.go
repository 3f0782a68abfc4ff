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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/ingest"
	tenantstore "github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/edtech-analytics/platform/services/sink/internal/sinktest"
	"github.com/edtech-analytics/platform/services/sink/rebuild"
	"github.com/jackc/pgx/v5"
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
	fleet *fleet.Fleet
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
	w.fleet = fleet.New(w.pool, func(string) string { return "" })
	for _, id := range tenants {
		if _, err := tenantstore.New(w.fleet).Create(t.Context(), id, id); err != nil {
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

// reader builds a reader for one rebuild or rollback, as ctl does; it is closed when the test ends.
func (w *world) reader(t *testing.T) *kgo.Client {
	t.Helper()
	cl, err := newReader(w.kcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func newReader(kcfg kafkax.Config) (*kgo.Client, error) {
	cl, err := kafkax.NewReader(kcfg, kafkax.Deps{Log: discard()}, rebuild.ReaderOptions()...)
	if err != nil {
		return nil, err
	}
	return cl.Client, nil
}

// sink runs the live sink until the test ends.
func (w *world) sink(t *testing.T) {
	t.Helper()
	t.Cleanup(w.startSink(t))
}

// startSink runs the live sink until the returned function stops it.
func (w *world) startSink(t *testing.T) (stop func()) {
	t.Helper()
	c, err := kafkax.NewStoreConsumer(discard(), kafkax.ConsumerConfig{
		Group: group, Topic: w.kcfg.Topics().Enriched, MaxPollRecords: 500,
		RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
	}, w.store, nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kafkax.NewGroupConsumer(w.kcfg, kafkax.Deps{Log: discard()}, group, w.kcfg.Topics().Enriched, kafkax.Batching{}, c.Rebalance(), kafkatest.GroupOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx, cl) }()
	return func() { cancel(); <-done }
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
	damaged := w.dump(t, "district_north")
	report, err := rebuild.Run(t.Context(), w.fleet, w.codec, w.reader(t), rebuild.Config{TenantID: "north", Group: group, Kafka: w.kcfg,
		AcceptDiff: true, SwitchLag: 50, BatchRecords: 300, Log: discard(), Progress: func(p rebuild.Progress) {
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

	if !report.Swapped || report.Equal || report.Applied == 0 || report.Scanned < report.Applied || !report.Verification.OK ||
		!slices.Equal(report.Partitions, []int32{rebuild.KeyPartition("north", 4)}) {
		t.Errorf("report = %+v", report)
	}
	damagedTables := map[string]bool{"student_activity": true, "attendance_daily": true, "roster_users": true, "submissions": true}
	for _, c := range report.Tables {
		if c.Equal == damagedTables[c.Table] || (c.Diff != nil) != damagedTables[c.Table] {
			t.Errorf("table %s: equal = %v, damaged = %v (%+v)", c.Table, c.Equal, damagedTables[c.Table], c)
		}
	}
	if !slices.Equal(phases, []string{rebuild.PhaseReplay, rebuild.PhaseCatchUp, rebuild.PhaseVerify, rebuild.PhaseCompare, rebuild.PhaseSwap, rebuild.PhaseDone}) &&
		!slices.Equal(phases, []string{rebuild.PhaseCatchUp, rebuild.PhaseVerify, rebuild.PhaseCompare, rebuild.PhaseSwap, rebuild.PhaseDone}) {
		t.Errorf("phases = %v", phases)
	}
	// The replaced tables are kept as they were at the swap: the damaged state, plus what the live sink
	// applied to them while the rebuild ran.
	if report.Kept == nil || report.Kept.Schema != "retired_north" || report.Kept.ID != report.ID {
		t.Errorf("kept = %+v", report.Kept)
	}
	// (The bogus submission is the damage's mark: no record produces it.)
	if kept := w.dump(t, "retired_north"); len(kept["submissions"]) < len(damaged["submissions"]) ||
		!slices.ContainsFunc(kept["submissions"], func(row string) bool { return strings.Contains(row, ",bogus,") }) {
		t.Errorf("the kept tables are not the damaged ones: %d submissions, without the bogus one", len(kept["submissions"]))
	}
	var kept int
	if err := w.pool.QueryRow(t.Context(), "SELECT count(*) FROM district_north.students").Scan(&kept); err != nil || kept != 1 {
		t.Errorf("the enricher's table lost its row: %d, %v", kept, err)
	}
	if w.schemaExists(t, "rebuild_north") {
		t.Error("the shadow schema was left behind")
	}
}

// TestRebuildOfAHotDistrictScansEveryPartition: a hot district's records spread over every partition
// under tenant/shard keys. A dry run on intact tables finds them equal and swaps nothing; after damage,
// a dry run reports the difference and leaves the live tables as they are.
func TestRebuildOfAHotDistrictScansEveryPartition(t *testing.T) {
	w := newWorld(t)
	if _, err := ingest.New(w.fleet.Control()).SetHotShards(t.Context(), "north", 8); err != nil {
		t.Fatal(err)
	}
	evs := sinktest.GenEvents(rand.New(rand.NewPCG(2, 2)), tenants, 3000)
	ends := w.produce(t, evs, map[string]int{"north": 8})
	w.sink(t)
	w.caughtUp(t, ends)

	cfg := rebuild.Config{TenantID: "north", Group: group, Kafka: w.kcfg, DryRun: true, Log: discard()}
	report, err := rebuild.Run(t.Context(), w.fleet, w.codec, w.reader(t), cfg)
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
	assertVerified(t, report, evs, "north")

	w.damage(t)
	damagedState := sinktest.ReadState(t, func(string) *pgxpool.Pool { return w.pool }, []string{"north"})
	if report, err = rebuild.Run(t.Context(), w.fleet, w.codec, w.reader(t), cfg); err != nil || report.Equal || report.Swapped || !report.Verification.OK {
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
	_, err = rebuild.Run(t.Context(), w.fleet, w.codec, w.reader(t), rebuild.Config{TenantID: "north", Group: group, Kafka: w.kcfg, Log: discard()})
	if !errors.Is(err, rebuild.ErrHistoryTruncated) {
		t.Fatalf("Run = %v, want ErrHistoryTruncated", err)
	}
	// The message names where the partition starts now and the time of its earliest record.
	first := fetchTimestamp(t, w.kcfg.Brokers, topic, p, 10)
	if want := fmt.Sprintf("partition %d starts at offset 10 (its earliest record is from %s)", p, first.Format(time.RFC3339)); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	w.sink(t)
	w.caughtUp(t, ends)
	report, err := rebuild.Run(t.Context(), w.fleet, w.codec, w.reader(t), rebuild.Config{TenantID: "north", Group: group, Kafka: w.kcfg,
		AllowTruncatedHistory: true, Log: discard()})
	if err != nil || report.Applied != 40 || report.Scanned != 40 || !report.Swapped || !report.Equal ||
		len(report.Truncated) != 1 || report.Truncated[0].Start != 10 {
		t.Errorf("with AllowTruncatedHistory: %+v, %v", report, err)
	}
}

// TestRebuildOfADistrictYoungerThanTheTruncationNeedsNoFlag: retention removed only records stamped
// before the district existed, so none of its records are gone and the rebuild goes on without
// AllowTruncatedHistory.
func TestRebuildOfADistrictYoungerThanTheTruncationNeedsNoFlag(t *testing.T) {
	w := newWorld(t)
	created, err := tenantstore.New(w.fleet).Tenant(t.Context(), "north")
	if err != nil {
		t.Fatal(err)
	}
	p := rebuild.KeyPartition("north", 4)
	old := sinktest.GenEvents(rand.New(rand.NewPCG(5, 5)), []string{"south"}, 200)
	recs := sinktest.Encode(t, w.codec, w.kcfg.Topics().Enriched, old)
	for _, r := range recs { // stamped long before north was created, on north's partition
		r.Partition = p
		r.Timestamp = created.CreatedAt.Add(-3 * rebuild.ClockSkew)
	}
	produceTo(t, w.kcfg, recs)
	cl, err := kgo.NewClient(kgo.SeedBrokers(w.kcfg.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: w.kcfg.Topics().Enriched, Partition: p, At: 100})
	if _, err := kadm.NewClient(cl).DeleteRecords(t.Context(), offsets); err != nil {
		t.Fatal(err)
	}
	evs := sinktest.GenEvents(rand.New(rand.NewPCG(6, 6)), []string{"north"}, 50)
	ends := w.produce(t, evs, nil)
	w.sink(t)
	w.caughtUp(t, ends)
	report, err := rebuild.Run(t.Context(), w.fleet, w.codec, w.reader(t), rebuild.Config{TenantID: "north", Group: group, Kafka: w.kcfg, Log: discard()})
	if err != nil || report.Applied != 50 || !report.Equal || !report.Swapped || len(report.Truncated) != 0 {
		t.Errorf("rebuild after a truncation older than the district: %+v, %v", report, err)
	}
}

// dump reads every sink table of schema as sorted row texts.
func (w *world) dump(t *testing.T, schema string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, table := range pgstore.Tables() {
		rows, err := w.pool.Query(t.Context(), "SELECT t::text FROM "+pgx.Identifier{schema, table}.Sanitize()+" t ORDER BY 1")
		if err != nil {
			t.Fatal(err)
		}
		if out[table], err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// assertVerified checks the report's verification against the district's events as generated: per type,
// the log held and the rebuild applied exactly those (the generator makes no invalid records).
func assertVerified(t *testing.T, report rebuild.Report, evs []*records.EnrichedEvent, tenant string) {
	t.Helper()
	want := map[string]int64{}
	var learning int64
	for _, ev := range evs {
		if ev.TenantID == tenant {
			want[ev.Type]++
			if !records.IsRosterType(ev.Type) {
				learning++
			}
		}
	}
	got := map[string]int64{}
	for _, c := range report.Verification.Types {
		if c.Log != c.Applied || len(c.Skipped) > 0 {
			t.Errorf("type %s: %+v, want every record applied", c.Type, c)
		}
		got[c.Type] = c.Log
	}
	if !maps.Equal(got, want) || !report.Verification.OK || report.Verification.Events != (rebuild.EventsCheck{Applied: learning, Counted: learning}) {
		t.Errorf("verification %+v, want per type %v and %d learning events", report.Verification, want, learning)
	}
}

// produceTo writes records to the partitions they name.
func produceTo(t *testing.T, kcfg kafkax.Config, recs []*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kcfg.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkax.EnsureTopics(t.Context(), cl, 4, 1, []kafkax.TopicSpec{{Name: kcfg.Topics().Enriched}}); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// fetchTimestamp returns the timestamp of the record at offset in topic's partition p.
func fetchTimestamp(t *testing.T, brokers []string, topic string, p int32, offset int64) time.Time {
	t.Helper()
	reader, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().At(offset)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	for {
		fetches := reader.PollFetches(t.Context())
		if err := fetches.Err(); err != nil {
			t.Fatal(err)
		}
		for _, r := range fetches.Records() {
			if r.Offset == offset {
				return r.Timestamp.UTC()
			}
		}
	}
}

// TestEqualShadowSwapsWithoutTheFlag: on intact tables the rebuilt state is equal; it is swapped in
// without AcceptDiff, nothing changes, and no replaced tables are kept (they were identical).
func TestEqualShadowSwapsWithoutTheFlag(t *testing.T) {
	w := newWorld(t)
	evs := sinktest.GenEvents(rand.New(rand.NewPCG(7, 7)), tenants, 1500)
	ends := w.produce(t, evs, nil)
	w.sink(t)
	w.caughtUp(t, ends)
	before := w.dump(t, "district_north")
	report, err := rebuild.Run(t.Context(), w.fleet, w.codec, w.reader(t), rebuild.Config{TenantID: "north", Group: group, Kafka: w.kcfg, Log: discard()})
	if err != nil || !report.Equal || !report.Swapped || report.Kept != nil || !report.Verification.OK {
		t.Fatalf("rebuild of intact tables: %+v, %v", report, err)
	}
	if after := w.dump(t, "district_north"); !maps.EqualFunc(after, before, slices.Equal) {
		t.Error("swapping an equal shadow changed the live tables")
	}
	if w.schemaExists(t, "retired_north") || w.schemaExists(t, "rebuild_north") || w.schemaExists(t, "swap_north") {
		t.Error("a schema was left behind")
	}
}

// TestDifferentShadowIsRefusedWithoutAcceptDiff: on damaged tables the rebuild reports, table by table,
// the rows only in the live tables, only in the rebuilt ones and changed, with example keys; without
// AcceptDiff it returns ErrDiffNotAccepted and leaves the live tables exactly as they were.
func TestDifferentShadowIsRefusedWithoutAcceptDiff(t *testing.T) {
	w := newWorld(t)
	evs := sinktest.GenEvents(rand.New(rand.NewPCG(9, 9)), tenants, 1500)
	ends := w.produce(t, evs, nil)
	w.sink(t)
	w.caughtUp(t, ends)
	w.damage(t)
	before := w.dump(t, "district_north")
	report, err := rebuild.Run(t.Context(), w.fleet, w.codec, w.reader(t), rebuild.Config{TenantID: "north", Group: group, Kafka: w.kcfg, Log: discard()})
	if !errors.Is(err, rebuild.ErrDiffNotAccepted) || report.Swapped || report.Equal || report.Kept != nil {
		t.Fatalf("Run = %+v, %v; want ErrDiffNotAccepted", report, err)
	}
	if after := w.dump(t, "district_north"); !maps.EqualFunc(after, before, slices.Equal) {
		t.Error("a refused rebuild changed the live tables")
	}
	if w.schemaExists(t, "retired_north") || w.schemaExists(t, "rebuild_north") {
		t.Error("a refused rebuild left a schema")
	}
	assertVerified(t, report, evs, "north")
	diffs := map[string]rebuild.TableDiff{}
	for _, c := range report.Tables {
		if c.Diff != nil {
			diffs[c.Table] = *c.Diff
		}
	}
	attendance := int64(len(before["attendance_daily"]))
	want := map[string][3]int64{ // only live, only shadow, changed; roster_users: all rows only in the shadow
		"student_activity": {0, 3, 0},
		"attendance_daily": {0, 0, attendance},
		"roster_users":     {},
		"submissions":      {1, 0, 0},
	}
	for table, counts := range want {
		d, ok := diffs[table]
		if !ok {
			t.Errorf("no diff for %s", table)
			continue
		}
		if table == "roster_users" {
			if d.OnlyShadow.Count == 0 || d.OnlyLive.Count != 0 || d.Changed.Count != 0 {
				t.Errorf("roster_users diff %+v: want rows only in the rebuilt state", d)
			}
			continue
		}
		if got := [3]int64{d.OnlyLive.Count, d.OnlyShadow.Count, d.Changed.Count}; got != counts {
			t.Errorf("%s diff %+v: counts %v, want %v", table, d, got, counts)
		}
	}
	if ex := diffs["submissions"].OnlyLive.Examples; len(ex) != 1 || !strings.HasSuffix(ex[0], " / bogus") {
		t.Errorf("submissions only live examples %q, want the bogus row's key", ex)
	}
	if ex := diffs["attendance_daily"].Changed.Examples; int64(len(ex)) != min(attendance, rebuild.DiffExamples) {
		t.Errorf("attendance changed examples %q, want %d", ex, min(attendance, rebuild.DiffExamples))
	}
	if len(diffs) != 4 {
		t.Errorf("diffs for %v, want the four damaged tables", slices.Sorted(maps.Keys(diffs)))
	}
}

// TestAcceptedDiffKeepsTheReplacedTablesForRollback: with AcceptDiff the rebuilt state is swapped in
// and the damaged tables are kept; a second rebuild that would replace them is refused; Rollback puts
// back exactly the damaged state; rolling back again (after more records arrived) brings back the
// rebuilt state caught up with them; DropOld removes the kept tables.
func TestAcceptedDiffKeepsTheReplacedTablesForRollback(t *testing.T) {
	w := newWorld(t)
	rng := rand.New(rand.NewPCG(10, 10))
	first := sinktest.GenEvents(rng, tenants, 1500)
	ends := w.produce(t, first, nil)
	w.sink(t)
	w.caughtUp(t, ends)
	w.damage(t)
	damaged := w.dump(t, "district_north")
	cfg := rebuild.Config{TenantID: "north", Group: group, Kafka: w.kcfg, AcceptDiff: true, Log: discard()}
	report, err := rebuild.Run(t.Context(), w.fleet, w.codec, w.reader(t), cfg)
	if err != nil || !report.Swapped || report.Equal || report.Kept == nil || report.Kept.Action != "rebuild" {
		t.Fatalf("rebuild with AcceptDiff: %+v, %v", report, err)
	}
	poolOf := func(string) *pgxpool.Pool { return w.pool }
	sinktest.AssertState(t, poolOf, []string{"north"}, sinktest.Expected(only(first, "north")))
	if kept := w.dump(t, "retired_north"); !maps.EqualFunc(kept, damaged, slices.Equal) {
		t.Error("the kept tables are not the replaced ones")
	}
	if k, err := rebuild.KeptTables(t.Context(), w.fleet, "north"); err != nil || k == nil || *k != *report.Kept {
		t.Errorf("KeptTables = %+v, %v; want %+v", k, err, report.Kept)
	}

	// Another rebuild allowed to replace different tables would have to drop the kept ones: refused
	// before its replay.
	if _, err := rebuild.Run(t.Context(), w.fleet, w.codec, w.reader(t), cfg); !errors.Is(err, rebuild.ErrOldTablesKept) {
		t.Errorf("second rebuild with tables kept: %v, want ErrOldTablesKept", err)
	}

	// Rollback restores the damaged state exactly, and keeps what it replaced.
	rolled, err := rebuild.Rollback(t.Context(), w.fleet, w.codec, w.reader(t), rebuild.Config{TenantID: "north", Group: group, Kafka: w.kcfg, Log: discard()})
	if err != nil || !rolled.Swapped || rolled.Kept == nil || rolled.Kept.Action != "rollback" || rolled.Applied != 0 || !rolled.Verification.OK {
		t.Fatalf("Rollback: %+v, %v", rolled, err)
	}
	if got := w.dump(t, "district_north"); !maps.EqualFunc(got, damaged, slices.Equal) {
		t.Error("the rollback did not restore the replaced tables exactly")
	}

	// Records arrive; the live sink writes them to the restored tables. Rolling back the rollback
	// catches the kept (rebuilt) tables up with them before swapping, so nothing the sink wrote is lost.
	more := sinktest.GenEvents(rng, tenants, 300)
	w.caughtUp(t, w.produce(t, more, nil))
	again, err := rebuild.Rollback(t.Context(), w.fleet, w.codec, w.reader(t), rebuild.Config{TenantID: "north", Group: group, Kafka: w.kcfg, Log: discard()})
	if err != nil || !again.Swapped || again.Applied == 0 || !again.Verification.OK {
		t.Fatalf("second Rollback: %+v, %v", again, err)
	}
	assertVerified(t, again, more, "north")
	sinktest.AssertState(t, poolOf, []string{"north"}, sinktest.Expected(only(slices.Concat(first, more), "north")))

	dropped, err := rebuild.DropOld(t.Context(), w.fleet, "north")
	if err != nil || dropped.ID != again.ID || w.schemaExists(t, "retired_north") {
		t.Errorf("DropOld = %+v, %v", dropped, err)
	}
	if _, err := rebuild.DropOld(t.Context(), w.fleet, "north"); !errors.Is(err, rebuild.ErrNothingKept) {
		t.Errorf("second DropOld: %v, want ErrNothingKept", err)
	}
	if _, err := rebuild.Rollback(t.Context(), w.fleet, w.codec, w.reader(t), rebuild.Config{TenantID: "north", Group: group, Kafka: w.kcfg, Log: discard()}); !errors.Is(err, rebuild.ErrNothingKept) {
		t.Errorf("Rollback with nothing kept: %v, want ErrNothingKept", err)
	}
}

// TestVerificationCatchesALostRecord: a replay that loses one record of the district (injected) fails
// the verification against the log, loudly and naming the record type, and nothing is swapped, even
// with AcceptDiff.
func TestVerificationCatchesALostRecord(t *testing.T) {
	w := newWorld(t)
	evs := sinktest.GenEvents(rand.New(rand.NewPCG(11, 11)), tenants, 1500)
	ends := w.produce(t, evs, nil)
	w.sink(t)
	w.caughtUp(t, ends)
	before := w.dump(t, "district_north")
	var lost string
	lose := rebuild.LoseRecords(func(_ int64, ev *records.EnrichedEvent) bool {
		if lost == "" && ev != nil && ev.Type == records.TypeContentView {
			lost = ev.EventID
			return true
		}
		return false
	})
	report, err := rebuild.Run(t.Context(), w.fleet, w.codec, w.reader(t), rebuild.Config{TenantID: "north", Group: group, Kafka: w.kcfg,
		AcceptDiff: true, Log: discard()}, lose)
	if !errors.Is(err, rebuild.ErrVerification) || report.Swapped || report.Verification.OK || lost == "" {
		t.Fatalf("Run with a lost record = %+v, %v; want ErrVerification", report, err)
	}
	var views int64
	for _, ev := range evs {
		if ev.TenantID == "north" && ev.Type == records.TypeContentView {
			views++
		}
	}
	if want := fmt.Sprintf("%s: %d records of district north in the replayed range, %d applied and 0 skipped", records.TypeContentView, views, views-1); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if after := w.dump(t, "district_north"); !maps.EqualFunc(after, before, slices.Equal) {
		t.Error("a rebuild that failed its verification changed the live tables")
	}
	if !w.schemaExists(t, "rebuild_north") || w.schemaExists(t, "retired_north") {
		t.Error("want the shadow left for inspection and nothing kept")
	}
}

// only returns the events of tenant.
func only(evs []*records.EnrichedEvent, tenant string) []*records.EnrichedEvent {
	var out []*records.EnrichedEvent
	for _, ev := range evs {
		if ev.TenantID == tenant {
			out = append(out, ev)
		}
	}
	return out
}
