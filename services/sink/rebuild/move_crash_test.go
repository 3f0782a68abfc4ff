//go:build unix

package rebuild_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/pgutil"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/services/sink/internal/sinktest"
	"github.com/edtech-analytics/platform/services/sink/rebuild"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Environment of the mover child process (TestMoveChild).
const (
	envChild    = "EDTECH_MOVE_CHILD"
	envControl  = "EDTECH_MOVE_CONTROL_URL"
	envPG2      = "EDTECH_MOVE_PG2_URL"
	envBrokers  = "EDTECH_MOVE_BROKERS"
	envTo       = "EDTECH_MOVE_TO"
	envHold     = "EDTECH_MOVE_HOLD"
	childPrefix = "held at "
)

// TestMoveChild is the mover process of TestMoveSurvivesSIGKILL: it moves north to EDTECH_MOVE_TO and
// stops at the point EDTECH_MOVE_HOLD, announcing it on stdout, until it is killed.
func TestMoveChild(t *testing.T) {
	if os.Getenv(envChild) == "" {
		t.Skip("the mover process of TestMoveSurvivesSIGKILL")
	}
	ctx := context.Background()
	pool, err := pgutil.Connect(ctx, os.Getenv(envControl))
	if err != nil {
		t.Fatal(err)
	}
	instances := fleet.New(pool, func(k string) string {
		if k == "PG2_URL" {
			return os.Getenv(envPG2)
		}
		return ""
	})
	codec, err := records.NewCodec(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	kcfg := kafkax.Config{Brokers: strings.Split(os.Getenv(envBrokers), ","), TopicPrefix: "test.", ClientID: "test", Partitions: 4, ReplicationFactor: 1}
	reader, err := newReader(kcfg)
	if err != nil {
		t.Fatal(err)
	}
	hold := os.Getenv(envHold)
	_, err = rebuild.Move(ctx, instances, codec, reader, rebuild.MoveConfig{TenantID: "north", To: os.Getenv(envTo), Group: group,
		Kafka: kcfg, SwitchLag: 50, BatchRecords: 300, Log: discard()},
		rebuild.MoveHook(func(point string) {
			if point == hold {
				fmt.Printf("\n%s%s\n", childPrefix, point)
				select {} // until killed
			}
		}))
	t.Fatalf("the move ended without reaching %s: %v", hold, err)
}

// TestMoveSurvivesSIGKILL moves north back and forth between main and pg2 while the live sink keeps
// writing every district, SIGKILLing the mover (a child process) at each named point of a move, and
// after each kill checks the district has one live schema where its placement says, or, killed between
// the placement's commit and the target's, none yet: then a rerun of the move rolls the placement back.
// The rerun must recover and finish the move (or report it finished). In the end every district's state
// equals what its records say, exactly: no event lost or applied twice.
func TestMoveSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns mover processes")
	}
	w := newFleetWorld(t)
	w.addTarget(t)
	districts := append(slices.Clone(tenants), w.neighbour(t))
	rng := rand.New(rand.NewPCG(5, 5))
	first := sinktest.GenEvents(rng, districts, 2000)
	ends := w.produce(t, first, nil)
	w.sink(t)
	w.caughtUp(t, ends)

	// Live ingestion throughout.
	var (
		mu   sync.Mutex
		sent = slices.Clone(first)
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	genRng := rand.New(rand.NewPCG(6, 6))
	wg.Go(func() {
		pace := time.NewTicker(20 * time.Millisecond)
		defer pace.Stop()
		for {
			select {
			case <-stop:
				return
			default:
			}
			evs := sinktest.GenEvents(genRng, districts, 50)
			for p, end := range w.produce(t, evs, nil) {
				mu.Lock()
				ends[p] = max(ends[p], end)
				mu.Unlock()
			}
			mu.Lock()
			sent = append(sent, evs...)
			mu.Unlock()
			<-pace.C // pacing, not a signal: the records go on arriving
		}
	})
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})

	to := target
	for _, point := range rebuild.MovePoints {
		from := fleet.MainInstance
		if to == fleet.MainInstance {
			from = target
		}
		w.killMoverAt(t, to, point)
		placed, err := w.fleet.Placement(t.Context(), "north")
		if err != nil {
			t.Fatal(err)
		}
		onTarget, onSource := schemaOn(t, w.poolByName(t, to), "district_north"), schemaOn(t, w.poolByName(t, from), "district_north")
		switch point {
		case rebuild.MovePointPlaced: // placed on the target, whose schema did not commit
			if placed != to || onTarget || !onSource {
				t.Errorf("killed at %s: placed on %s, schema on target %v, on source %v", point, placed, onTarget, onSource)
			}
		case rebuild.MovePointCommitted: // the source's rename did not commit; the placement keeps sinks off it
			if placed != to || !onTarget || !onSource {
				t.Errorf("killed at %s: placed on %s, schema on target %v, on source %v", point, placed, onTarget, onSource)
			}
		default:
			if placed != from || onTarget || !onSource {
				t.Errorf("killed at %s: placed on %s, schema on target %v, on source %v", point, placed, onTarget, onSource)
			}
		}
		report, err := rebuild.Move(t.Context(), w.fleet, w.codec, w.reader(t), rebuild.MoveConfig{TenantID: "north", To: to,
			Group: group, Kafka: w.kcfg, SwitchLag: 50, BatchRecords: 300, Log: discard()})
		if err != nil {
			t.Fatalf("rerun after a kill at %s: %v", point, err)
		}
		wantRecovered := map[string]string{rebuild.MovePointPlaced: "rolled back", rebuild.MovePointCommitted: "finished"}[point]
		if report.Recovered != wantRecovered || report.Moved == (point == rebuild.MovePointCommitted) {
			t.Errorf("rerun after a kill at %s: recovered %q, moved %v", point, report.Recovered, report.Moved)
		}
		if placed, err := w.fleet.Placement(t.Context(), "north"); err != nil || placed != to ||
			!schemaOn(t, w.poolByName(t, to), "district_north") || schemaOn(t, w.poolByName(t, from), "district_north") ||
			schemaOn(t, w.poolByName(t, to), "moving_north") {
			t.Fatalf("after the rerun (killed at %s): placed on %s (%v); want district_north on %s only", point, placed, err, to)
		}
		if _, err := rebuild.DropMoved(t.Context(), w.fleet, "north"); err != nil {
			t.Fatal(err)
		}
		to = from // and back, next time
	}

	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	w.caughtUp(t, maps.Clone(ends))
	sinktest.AssertState(t, w.poolOf(t), districts, sinktest.Expected(sent))
}

func (w *fleetWorld) poolByName(t *testing.T, name string) *pgxpool.Pool {
	t.Helper()
	pool, err := w.fleet.Pool(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// killMoverAt runs a mover process that moves north to `to`, SIGKILLs it once it announces it holds at
// point, and waits until PostgreSQL has ended its sessions (and with them its locks and transactions).
func (w *fleetWorld) killMoverAt(t *testing.T, to, point string) {
	t.Helper()
	app := "mover-" + strings.ReplaceAll(point, "-", "")
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestMoveChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envChild+"=1", envControl+"="+withApp(w.controlURL, app), envPG2+"="+withApp(w.pg2URL, app),
		envBrokers+"="+strings.Join(w.kcfg.Brokers, ","), envTo+"="+to, envHold+"="+point)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	held := false
	sc := bufio.NewScanner(out)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if sc.Text() == childPrefix+point {
			held = true
			break
		}
	}
	if held {
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = io.Copy(io.Discard, out)
	err = cmd.Wait()
	if !held {
		t.Fatalf("the mover did not reach %s: %v\n%s\n%s", point, err, strings.Join(lines, "\n"), stderr.String())
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the mover ended with %v, not killed", err)
	}
	sinktest.WaitFor(t, "the killed mover's sessions to end", func() bool {
		var n int
		if err := w.pool.QueryRow(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
}

func withApp(url, app string) string {
	if strings.Contains(url, "?") {
		return url + "&application_name=" + app
	}
	return url + "?application_name=" + app
}
