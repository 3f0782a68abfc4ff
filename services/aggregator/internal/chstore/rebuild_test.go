package chstore_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/archive/archivetest"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/services/aggregator/internal/chstore"
	"github.com/edtech-analytics/platform/services/aggregator/internal/synth"
	"github.com/edtech-analytics/platform/services/aggregator/rebuild"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestRebuildSwapsADistrictWhileTheAggregatorRuns: a district's events lost a type of rows (its rollups
// did not). With the aggregator consuming and new events of every district arriving, a rebuild from the
// archive (which holds the first part of the topic) and the topic's tail stages the district's rows,
// finds them different from the live ones, and the aggregator swaps them in at the markers: afterwards
// events holds every event once and every rollup is exactly what the events say, for every district.
// A dry run before changes nothing.
func TestRebuildSwapsADistrictWhileTheAggregatorRuns(t *testing.T) {
	store, conn, codec := newStore(t)
	ctx := t.Context()
	db := currentDatabase(t, conn)
	p := emptyPipeline(t)
	all, _ := synth.Events(21, 5, 3000)
	p.send(t, codec, all[:2000])
	stop := p.start(t, store)
	defer stop()
	p.waitCaughtUp(t, store)
	const tenant = "district_2"
	if err := conn.Exec(ctx, "ALTER TABLE events DELETE WHERE tenant_id = ? AND type = ?", tenant, records.TypeSession); err != nil {
		t.Fatal(err)
	}
	if err := chutil.WaitMutations(ctx, conn, db, "events"); err != nil {
		t.Fatal(err)
	}

	// The archive holds what the topic held then, but the last 100 records of each partition.
	dir := t.TempDir()
	arch := archivetest.OpenDir(t, dir)
	st := archive.New(arch, codec, archive.EnrichedLayer(), nil)
	reader, err := kgo.NewClient(kgo.SeedBrokers(p.kcfg.Brokers...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{p.topic: {
		0: kgo.NewOffset().AtStart(), 1: kgo.NewOffset().AtStart(), 2: kgo.NewOffset().AtStart(), 3: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	byPart := map[int32][]*kgo.Record{}
	for left := len(all[:2000]); left > 0; {
		fetches := reader.PollFetches(ctx)
		fetches.EachRecord(func(r *kgo.Record) { byPart[r.Partition] = append(byPart[r.Partition], r); left-- })
	}
	reader.Close()
	for part, recs := range byPart {
		if err := st.Write(ctx, p.topic, part, recs[:max(len(recs)-100, 0)]); err != nil {
			t.Fatal(err)
		}
	}

	run := func(dry bool) rebuild.Report {
		t.Helper()
		rd, err := kafkax.NewReader(p.kcfg, p.deps)
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		prod, err := kafkax.NewProducer(p.kcfg, p.deps, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		defer prod.Close()
		report, err := rebuild.Run(ctx, conn, codec, rd.Client, prod.Client, rebuild.Config{TenantID: tenant, Kafka: p.kcfg, Database: db,
			Archive: arch, DryRun: dry, AcceptDiff: true, SwapTimeout: time.Minute})
		if err != nil {
			t.Fatalf("rebuild (dry run %v): %v (%+v)", dry, err, report)
		}
		return report
	}
	dry := run(true)
	if dry.Equal || dry.Swapped || dry.Live.Rows >= dry.Rebuilt.Rows || dry.Archived == 0 {
		t.Fatalf("dry run: %+v", dry)
	}
	var sessions uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM events WHERE tenant_id = ? AND type = ?", tenant, records.TypeSession).Scan(&sessions); err != nil || sessions != 0 {
		t.Fatalf("a dry run changed events: %d sessions, %v", sessions, err)
	}

	var wg sync.WaitGroup
	wg.Go(func() { // new events of every district while the rebuild runs
		for chunk := range slices.Chunk(all[2000:], 100) {
			p.send(t, codec, chunk)
		}
	})
	report := run(false)
	wg.Wait()
	if !report.Swapped || !report.Verified || report.Equal || report.Archived == 0 || len(report.Markers) != 1 {
		t.Errorf("rebuild: %+v", report)
	}
	p.mu.Lock()
	for part, m := range report.Markers { // the markers are records of the topic too
		p.ends[part] = max(p.ends[part], m+1)
	}
	p.mu.Unlock()
	p.waitCaughtUp(t, store)
	assertStoredOnce(t, conn, all)
	if n := count(t, conn, "SELECT count() FROM system.tables WHERE database = ? AND name = ?", db, "rebuild_"+tenant); n != 0 {
		t.Errorf("the staging table was left behind")
	}
	if rb, ok, err := chstore.ReadRebuild(ctx, conn, report.ID); err != nil || !ok || rb.State != chstore.RebuildDone {
		t.Errorf("rebuild state %+v, %v, %v", rb, ok, err)
	}
}

// TestChecksumCoversEveryRow changes one fact of one event of each type in turn and proves the
// district's checksum changes each time, with the row count the same: events without a score count in
// its sum too.
func TestChecksumCoversEveryRow(t *testing.T) {
	store, conn, codec := newStore(t)
	ctx := t.Context()
	db := currentDatabase(t, conn)
	evs, regular := synth.Events(5, 1, 400)
	if err := store.Write(ctx, topic, 0, facts(t, codec, 0, 0, evs)); err != nil {
		t.Fatal(err)
	}
	below := map[int32]int64{0: int64(len(evs))}
	prev, err := chstore.ChecksumOf(ctx, conn, "events", regular.Tenant, topic, below)
	if err != nil || prev.Rows != uint64(len(evs)) {
		t.Fatalf("checksum %+v, %v", prev, err)
	}
	for _, typ := range []string{records.TypeAttendance, records.TypeAssessmentResult, records.TypeAssignmentSubmission, records.TypeSession, records.TypeContentView} {
		i := slices.IndexFunc(evs, func(ev records.EnrichedEvent) bool { return ev.Type == typ })
		if i < 0 {
			t.Fatalf("no %s event in the input", typ)
		}
		if err := conn.Exec(ctx, "ALTER TABLE events UPDATE school_id = 'changed' WHERE event_id = toUUID(?)", evs[i].EventID); err != nil {
			t.Fatal(err)
		}
		if err := chutil.WaitMutations(ctx, conn, db, "events"); err != nil {
			t.Fatal(err)
		}
		next, err := chstore.ChecksumOf(ctx, conn, "events", regular.Tenant, topic, below)
		if err != nil {
			t.Fatal(err)
		}
		if next.Rows != prev.Rows || next.Sum == prev.Sum {
			t.Errorf("after changing a %s event: checksum %+v, before %+v", typ, next, prev)
		}
		prev = next
	}
}
