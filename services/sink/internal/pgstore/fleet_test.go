package pgstore_test

import (
	"maps"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/edtech-analytics/platform/services/sink/internal/sinktest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func storedOffset(t *testing.T, pool *pgxpool.Pool, partition int32) int64 {
	t.Helper()
	var next int64
	err := pool.QueryRow(t.Context(), `SELECT next_offset FROM control.consumer_offsets
		WHERE consumer = $1 AND topic = 'enriched' AND partition = $2`, group, partition).Scan(&next)
	if err == pgx.ErrNoRows {
		return -1
	}
	if err != nil {
		t.Fatal(err)
	}
	return next
}

// TestInstanceDownKeepsTheOthersGoing: a partition holds districts of two instances. While one instance
// is down, the other's records are applied and its offset moves; the partition resumes at the lowest
// stored offset, and rewriting the batch then applies the rest exactly once. An instance that receives
// nothing is moved along once it lags IdleAdvance records.
func TestInstanceDownKeepsTheOthersGoing(t *testing.T) {
	fe := setupFleet(t, true)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(11, 12))
	evs := genEvents(rng, []string{"north", "south"}, 400)
	recs := encode(t, fe.codec, "enriched", evs)
	for i, r := range recs {
		r.Offset = int64(i)
	}
	store := fe.store(t, 100)
	if err := store.Write(ctx, "enriched", 0, recs[:100]); err != nil {
		t.Fatal(err)
	}

	t.Cleanup(func() { sinktest.SetConnectable(t, fe.eastName, true) })
	sinktest.SetConnectable(t, fe.eastName, false, fe.east)
	err := store.Write(ctx, "enriched", 0, recs[100:])
	if err == nil || !strings.Contains(err.Error(), "instance east") {
		t.Fatalf("Write with east down = %v, want an error naming instance east", err)
	}
	var north []*records.EnrichedEvent
	for i, ev := range evs {
		if ev.TenantID == "north" || i < 100 {
			north = append(north, ev)
		}
	}
	got, want := readState(t, fe.poolOf, []string{"north"}), expected(north)
	for k := range want {
		if strings.Contains(k, "/south/") {
			delete(want, k)
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("north has %d rows while east is down, want %d", len(got), len(want))
	}
	if next := storedOffset(t, fe.control, 0); next != 400 {
		t.Errorf("main's offset %d, want 400", next)
	}
	resume, err := store.NextOffsets(ctx, "enriched", []int32{0})
	if err == nil {
		t.Errorf("NextOffsets answered without east: %v", resume)
	}

	sinktest.SetConnectable(t, fe.eastName, true)
	resume, err = store.NextOffsets(ctx, "enriched", []int32{0})
	if err != nil || resume[0] != 100 {
		t.Fatalf("resume at %v (%v), want 100: east holds the first 100", resume, err)
	}
	if err := store.Write(ctx, "enriched", 0, recs[100:]); err != nil {
		t.Fatalf("Write after east is back: %v", err)
	}
	assertState(t, fe.poolOf, expected(evs))

	// Records for north only: east is left alone until it lags 100 records, then moved to the end.
	more := encode(t, fe.codec, "enriched", genEvents(rng, []string{"north"}, 150))
	for i, r := range more {
		r.Offset = int64(400 + i)
	}
	if err := store.Write(ctx, "enriched", 0, more[:50]); err != nil {
		t.Fatal(err)
	}
	if next := storedOffset(t, fe.east, 0); next != 400 {
		t.Errorf("east moved to %d after 50 records not its own, want 400", next)
	}
	if err := store.Write(ctx, "enriched", 0, more[50:]); err != nil {
		t.Fatal(err)
	}
	if next := storedOffset(t, fe.east, 0); next != 550 {
		t.Errorf("east at %d after lagging 150 records, want 550", next)
	}
	if resume, err := store.NextOffsets(ctx, "enriched", []int32{0}); err != nil || resume[0] != 550 {
		t.Errorf("resume at %v, %v; want 550", resume, err)
	}
}

// TestBatchesSpanningManyDistrictsCommitInRuns: a batch over more districts than a transaction may
// hold is written as several transactions, each over at most MaxDistrictsPerTx districts, with the same
// result as one.
func TestBatchesSpanningManyDistrictsCommitInRuns(t *testing.T) {
	fe := setupFleet(t, false)
	ctx := t.Context()
	districts := tenants.New(fe.fleet())
	ids := make([]string, 12)
	for i := range ids {
		ids[i] = "many" + string(rune('a'+i))
		if _, err := districts.Create(ctx, ids[i], ids[i]); err != nil {
			t.Fatal(err)
		}
	}
	evs := genEvents(rand.New(rand.NewPCG(5, 5)), ids, 300)
	recs := encode(t, fe.codec, "enriched", evs)
	for i, r := range recs {
		r.Offset = int64(i)
	}
	fl := fe.fleet()
	t.Cleanup(fl.Close)
	store, err := pgstore.New(group, pgstore.Deps{Fleet: fl, Codec: fe.codec, Log: discard(), MaxDistrictsPerTx: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Write(ctx, "enriched", 0, recs); err != nil {
		t.Fatal(err)
	}
	got, want := readState(t, one(fe.control), ids), expected(evs)
	if !maps.Equal(got, want) {
		t.Fatalf("state differs: %d rows, want %d", len(got), len(want))
	}
	// Rows written by one transaction share its id (xmin).
	districtsOf := map[string]map[string]bool{}
	for _, id := range ids {
		rows, err := fe.control.Query(ctx, "SELECT DISTINCT xmin::text FROM "+pgx.Identifier{"district_" + id, "student_activity"}.Sanitize())
		if err != nil {
			t.Fatal(err)
		}
		xids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range xids {
			if districtsOf[x] == nil {
				districtsOf[x] = map[string]bool{}
			}
			districtsOf[x][id] = true
		}
	}
	if len(districtsOf) < 3 {
		t.Errorf("12 districts written by %d transactions, want at least 3", len(districtsOf))
	}
	for x, ds := range districtsOf {
		if len(ds) > 4 {
			t.Errorf("transaction %s wrote %d districts, more than 4", x, len(ds))
		}
	}
}

// TestDistrictFloorSkipsWhatAMoveCopied: a district moved to an instance carries an offset floor there
// (control.district_offsets, written by the move): its records below the floor are in the state the
// move copied and are skipped, also when the instance's own offset is lower; its records from the floor
// on, and other districts' records, are applied.
func TestDistrictFloorSkipsWhatAMoveCopied(t *testing.T) {
	fe := setupFleet(t, true)
	ctx := t.Context()
	evs := genEvents(rand.New(rand.NewPCG(21, 22)), []string{"north", "south"}, 300)
	recs := encode(t, fe.codec, "enriched", evs)
	for i, r := range recs {
		r.Offset = int64(i)
	}
	if _, err := fe.east.Exec(ctx, `INSERT INTO control.district_offsets (consumer, tenant_id, topic, partition, next_offset)
		VALUES ($1, 'south', 'enriched', 0, 150)`, group); err != nil {
		t.Fatal(err)
	}
	if err := fe.store(t, 0).Write(ctx, "enriched", 0, recs); err != nil {
		t.Fatal(err)
	}
	var want []*records.EnrichedEvent
	for i, ev := range evs {
		if ev.TenantID == "north" || i >= 150 {
			want = append(want, ev)
		}
	}
	assertState(t, fe.poolOf, expected(want))
	if next := storedOffset(t, fe.east, 0); next != 300 {
		t.Errorf("east's offset %d, want 300", next)
	}
}
