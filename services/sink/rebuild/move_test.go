package rebuild_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	tenantstore "github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/edtech-analytics/platform/services/sink/internal/sinktest"
	"github.com/edtech-analytics/platform/services/sink/rebuild"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// target is the instance districts move to in these tests.
const target = "pg2"

// fleetWorld is a world whose districts live on two instances: main (the control database) and pg2, a
// database of its own reached through PG2_URL, registered by addTarget.
type fleetWorld struct {
	*world
	pg2        *pgxpool.Pool
	pg2URL     string
	controlURL string
}

func newFleetWorld(t testing.TB) *fleetWorld {
	t.Helper()
	w := &fleetWorld{world: &world{}}
	w.pool, w.controlURL = pgtest.New(t)
	if err := tenancy.Migrate(t.Context(), w.pool); err != nil {
		t.Fatal(err)
	}
	w.pg2, w.pg2URL = pgtest.New(t)
	w.fleet = fleet.New(w.pool, func(k string) string {
		if k == "PG2_URL" {
			return w.pg2URL
		}
		return ""
	})
	t.Cleanup(w.fleet.Close)
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

// addTarget registers pg2; its offsets start where main's stand.
func (w *fleetWorld) addTarget(t testing.TB) {
	t.Helper()
	if _, err := w.fleet.AddInstance(t.Context(), target, "PG2_URL", false); err != nil {
		t.Fatal(err)
	}
}

// neighbour creates a district on pg2 whose records share north's partition, and returns its id.
func (w *fleetWorld) neighbour(t testing.TB) string {
	t.Helper()
	for i := range 1000 {
		id := fmt.Sprintf("n%d", i)
		if rebuild.KeyPartition(id, 4) == rebuild.KeyPartition("north", 4) {
			if _, err := tenantstore.New(w.fleet).CreateOn(t.Context(), id, id, target); err != nil {
				t.Fatal(err)
			}
			return id
		}
	}
	t.Fatal("no id shares north's partition")
	return ""
}

func (w *fleetWorld) poolOf(t testing.TB) func(string) *pgxpool.Pool {
	return func(tenant string) *pgxpool.Pool {
		pool, _, err := w.fleet.DistrictPool(t.Context(), tenant)
		if err != nil {
			t.Fatal(err)
		}
		return pool
	}
}

// caughtUp waits until, on every instance, the stored offset of each district's partition reached ends
// (an instance that holds no district of a partition may lag: it is moved along only every IdleAdvance
// records).
func (w *fleetWorld) caughtUp(t testing.TB, ends map[int32]int64) {
	t.Helper()
	sinktest.WaitFor(t, "the live sink to catch up", func() bool {
		placed, err := w.fleet.Placements(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for tenant, in := range placed {
			p := rebuild.KeyPartition(tenant, 4)
			end, ok := ends[p]
			if !ok {
				continue
			}
			pool, err := w.fleet.Pool(t.Context(), in)
			if err != nil {
				t.Fatal(err)
			}
			if w.storedOffset(t, pool, p) < end {
				return false
			}
		}
		return true
	})
}

func (w *fleetWorld) storedOffset(t testing.TB, pool *pgxpool.Pool, p int32) int64 {
	t.Helper()
	var next int64
	err := pool.QueryRow(context.WithoutCancel(t.Context()), `SELECT next_offset FROM control.consumer_offsets
		WHERE consumer = $1 AND topic = $2 AND partition = $3`, group, w.kcfg.Topics().Enriched, p).Scan(&next)
	if errors.Is(err, pgx.ErrNoRows) {
		return -1
	}
	if err != nil {
		t.Fatal(err)
	}
	return next
}

func schemaOn(t testing.TB, pool *pgxpool.Pool, name string) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(t.Context(), "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// waitingForLock reports whether a transaction on pool's database waits for an advisory lock.
func waitingForLock(t testing.TB, pool *pgxpool.Pool) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database
		WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database())`).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestMoveWhileIngestionGoesOn moves north from main to pg2 while the live sink keeps writing every
// district, and checks every district's state exactly against the records, also after new records
// arrive. The cases put pg2's stored offset of north's partition where the move must deal with it:
//   - behind main's (pg2 holds no district there and lags): the floor keeps pg2 from applying north's
//     records the copy already holds;
//   - ahead of main's (a district of pg2 shares the partition, and the sink wrote its records to pg2 while
//     north's, in the same batch, waited for the move's lock on main): the move applies north's records
//     between the two offsets itself;
//   - a sink transaction on pg2, for a batch routed before the switch with records of north, waiting for
//     north's lock on pg2 during the switch: it must not commit pg2's offset past north's records, which
//     it routed to main.
func TestMoveWhileIngestionGoesOn(t *testing.T) {
	for _, tc := range []struct {
		name      string
		neighbour bool
		hold      string // the move's point where records arrive that the move must deal with
	}{
		{name: "target behind"},
		{name: "target ahead", neighbour: true, hold: rebuild.MovePointSourceLocked},
		{name: "writer waiting on the target", neighbour: true, hold: rebuild.MovePointLocked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newFleetWorld(t)
			districts := slices.Clone(tenants)
			if tc.neighbour {
				w.addTarget(t)
				districts = append(districts, w.neighbour(t))
			}
			rng := rand.New(rand.NewPCG(3, 3))
			first := sinktest.GenEvents(rng, districts, 3000)
			stop := w.startSink(t)
			w.caughtUp(t, w.produce(t, first, nil))
			if !tc.neighbour {
				w.addTarget(t) // pg2's offsets start here, and stay behind
			}
			// Not the sink's: the move copies it.
			w.exec(t, "INSERT INTO district_north.students (internal_id) VALUES ('00000000-0000-4000-8000-0000000000aa')")

			more := sinktest.GenEvents(rng, districts, 2000)
			var wg sync.WaitGroup
			var moreEnds sync.Map
			wg.Go(func() { // live ingestion during the copy and the replay
				pace := time.NewTicker(10 * time.Millisecond) // pacing, not a signal
				defer pace.Stop()
				for chunk := range slices.Chunk(more, 100) {
					for p, end := range w.produce(t, chunk, nil) {
						moreEnds.Store(p, end)
					}
					<-pace.C
				}
			})
			held := sinktest.GenEvents(rng, []string{"north", districts[len(districts)-1]}, 300)
			var heldSent bool
			report, err := rebuild.Move(t.Context(), w.fleet, w.codec, w.reader(t), rebuild.MoveConfig{TenantID: "north", To: target,
				Group: group, Kafka: w.kcfg, SwitchLag: 50, BatchRecords: 300, Log: discard()},
				rebuild.MoveHook(func(point string) {
					switch {
					case point == rebuild.MovePointReplayed && tc.hold != "":
						// The sink idle before the held records arrive, so that they are its next batch.
						wg.Wait()
						ends := map[int32]int64{}
						moreEnds.Range(func(k, v any) bool { ends[k.(int32)] = v.(int64); return true })
						w.caughtUp(t, ends)
					case point == tc.hold:
						w.produce(t, held, nil)
						heldSent = true
						p := rebuild.KeyPartition("north", 4)
						switch point {
						case rebuild.MovePointSourceLocked:
							sinktest.WaitFor(t, "pg2 ahead of main", func() bool { return w.storedOffset(t, w.pg2, p) > w.storedOffset(t, w.pool, p) })
						case rebuild.MovePointLocked:
							sinktest.WaitFor(t, "a sink transaction waiting on pg2", func() bool { return waitingForLock(t, w.pg2) })
						}
					}
				}))
			wg.Wait()
			if err != nil {
				t.Fatalf("Move: %v", err)
			}
			all := slices.Concat(first, more)
			if heldSent {
				all = append(all, held...)
			}
			// A restarted sink resumes each partition at the lowest offset over the instances, pg2's
			// when it is behind: the records the copy holds are read again, and must not count twice.
			stop()
			var err2 error
			if w.store, err2 = pgstore.New(group, pgstore.Deps{Fleet: w.fleet, Codec: w.codec, Log: discard()}); err2 != nil {
				t.Fatal(err2)
			}
			w.sink(t)
			last := sinktest.GenEvents(rng, districts, 300) // after the move: north's go to pg2
			w.caughtUp(t, w.produce(t, last, nil))
			all = append(all, last...)
			sinktest.AssertState(t, w.poolOf(t), districts, sinktest.Expected(all))

			if !report.Moved || report.From != fleet.MainInstance || report.To != target || !report.Verification.OK ||
				len(report.Offsets) != 1 || report.OldSchema != "moved_north" || report.Paused <= 0 {
				t.Errorf("report = %+v", report)
			}
			for _, c := range report.Tables {
				if !c.Equal {
					t.Errorf("table %s differs: %+v", c.Table, c)
				}
			}
			o := report.Offsets[0]
			switch {
			case tc.name == "target behind" && (o.Target >= o.Source || o.Floor != o.Source):
				t.Errorf("offsets %+v, want pg2 behind main", o)
			case tc.name == "target ahead" && (o.Target <= o.Source || o.Floor != o.Target):
				t.Errorf("offsets %+v, want pg2 ahead of main", o)
			}
			if schemaOn(t, w.pool, "district_north") || !schemaOn(t, w.pool, "moved_north") || !schemaOn(t, w.pg2, "district_north") ||
				schemaOn(t, w.pg2, "moving_north") {
				t.Error("schemas after the move: want moved_north on main and district_north on pg2 only")
			}
			var students int
			if err := w.pg2.QueryRow(t.Context(), "SELECT count(*) FROM district_north.students").Scan(&students); err != nil || students != 1 {
				t.Errorf("the enricher's table on pg2 has %d rows, %v", students, err)
			}
			if in, err := w.fleet.Placement(t.Context(), "north"); err != nil || in != target {
				t.Errorf("placement %q, %v", in, err)
			}

			// Moving again is refused until the old copy is dropped; a rerun of the finished move does nothing.
			if again, err := rebuild.Move(t.Context(), w.fleet, w.codec, w.reader(t), rebuild.MoveConfig{TenantID: "north", To: target, Group: group, Kafka: w.kcfg}); err != nil || again.Moved {
				t.Errorf("rerun: %+v, %v", again, err)
			}
			if _, err := rebuild.Move(t.Context(), w.fleet, w.codec, w.reader(t), rebuild.MoveConfig{TenantID: "north", To: fleet.MainInstance, Group: group, Kafka: w.kcfg}); !errors.Is(err, rebuild.ErrMoveRefused) {
				t.Errorf("moving back with the old copy kept: %v", err)
			}
			dropped, err := rebuild.DropMoved(t.Context(), w.fleet, "north")
			if err != nil || dropped.From != fleet.MainInstance || schemaOn(t, w.pool, "moved_north") {
				t.Errorf("DropMoved: %+v, %v", dropped, err)
			}
			if _, err := rebuild.DropMoved(t.Context(), w.fleet, "north"); !errors.Is(err, rebuild.ErrNothingMoved) {
				t.Errorf("second DropMoved: %v", err)
			}
		})
	}
}

// TestMoveFencesTheEnrichersWrites: the enricher's tables are not the sink's and their writers take no
// district lock. A write to one of them on the source during the switch waits for the move, then fails
// (the schema was renamed) rather than landing in the old copy; the one written before is on the target.
func TestMoveFencesTheEnrichersWrites(t *testing.T) {
	w := newFleetWorld(t)
	w.addTarget(t)
	w.sink(t)
	w.caughtUp(t, w.produce(t, sinktest.GenEvents(rand.New(rand.NewPCG(9, 9)), tenants, 300), nil))
	w.exec(t, "INSERT INTO district_north.students (internal_id) VALUES ('00000000-0000-4000-8000-0000000000aa')")
	late := make(chan error, 1)
	_, err := rebuild.Move(t.Context(), w.fleet, w.codec, w.reader(t), rebuild.MoveConfig{TenantID: "north", To: target, Group: group, Kafka: w.kcfg},
		rebuild.MoveHook(func(point string) {
			if point != rebuild.MovePointCompared {
				return
			}
			go func() {
				_, err := w.pool.Exec(context.WithoutCancel(t.Context()), "INSERT INTO district_north.students (internal_id) VALUES ('00000000-0000-4000-8000-0000000000bb')")
				late <- err
			}()
			sinktest.WaitFor(t, "the enricher's write to wait", func() bool {
				var n int
				if err := w.pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
					WHERE l.locktype = 'relation' AND NOT l.granted AND d.datname = current_database()`).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n > 0
			})
		}))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-late; err == nil {
		t.Error("a write to the source during the switch succeeded")
	}
	var moved, copied int
	if err := w.pool.QueryRow(t.Context(), "SELECT count(*) FROM moved_north.students").Scan(&moved); err != nil || moved != 1 {
		t.Errorf("the old copy has %d students (%v), want the one written before the move", moved, err)
	}
	if err := w.pg2.QueryRow(t.Context(), "SELECT count(*) FROM district_north.students").Scan(&copied); err != nil || copied != 1 {
		t.Errorf("the target has %d students (%v), want 1", copied, err)
	}
}

// TestMoveBackBeforeTheSinkPassedTheFloor: north moves to pg2 while pg2's offset of its partition is
// behind (no sink runs: the offsets stand still), so pg2 holds north's records below the floor without
// its offset being there. Moved back at once, the copy stands at the floor, not at pg2's offset: the
// sink, started while the copy is made, skips north's records below the floor on pg2, and the move must
// not apply them to the copy either.
func TestMoveBackBeforeTheSinkPassedTheFloor(t *testing.T) {
	w := newFleetWorld(t)
	rng := rand.New(rand.NewPCG(4, 4))
	first := sinktest.GenEvents(rng, tenants, 1000)
	stop := w.startSink(t)
	w.caughtUp(t, w.produce(t, first, nil))
	w.addTarget(t)
	more := sinktest.GenEvents(rng, tenants, 1000)
	ends := w.produce(t, more, nil)
	w.caughtUp(t, ends)
	stop()
	report, err := rebuild.Move(t.Context(), w.fleet, w.codec, w.reader(t), rebuild.MoveConfig{TenantID: "north", To: target, Group: group, Kafka: w.kcfg})
	if err != nil {
		t.Fatal(err)
	}
	if o := report.Offsets[0]; o.Target >= o.Source {
		t.Fatalf("offsets %+v, want pg2 behind", o)
	}
	if _, err := rebuild.DropMoved(t.Context(), w.fleet, "north"); err != nil {
		t.Fatal(err)
	}
	p := rebuild.KeyPartition("north", 4)
	_, err = rebuild.Move(t.Context(), w.fleet, w.codec, w.reader(t), rebuild.MoveConfig{TenantID: "north", To: fleet.MainInstance, Group: group, Kafka: w.kcfg},
		rebuild.MoveHook(func(point string) {
			if point == rebuild.MovePointCopied {
				// The sink resumes at pg2's offset, below the floor, and reads north's records again.
				var err error
				if w.store, err = pgstore.New(group, pgstore.Deps{Fleet: w.fleet, Codec: w.codec, Log: discard()}); err != nil {
					t.Fatal(err)
				}
				w.sink(t)
				sinktest.WaitFor(t, "the sink to catch up on pg2", func() bool { return w.storedOffset(t, w.pg2, p) >= ends[p] })
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	last := sinktest.GenEvents(rng, tenants, 200)
	w.caughtUp(t, w.produce(t, last, nil))
	sinktest.AssertState(t, w.poolOf(t), tenants, sinktest.Expected(slices.Concat(first, more, last)))
}
