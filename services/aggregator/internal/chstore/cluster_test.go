package chstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/testenv/devenv"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/services/aggregator/internal/chstore"
	"github.com/edtech-analytics/platform/services/aggregator/internal/synth"
	"github.com/edtech-analytics/platform/services/aggregator/rebuild"
	"github.com/go-zookeeper/zk"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
)

// clusterChildEnv, when set, makes the test binary an aggregator of the cluster layout (runChild) with
// the JSON-encoded childConfig it holds, for the tests to SIGKILL.
const clusterChildEnv = "CHSTORE_CLUSTER_CHILD"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(clusterChildEnv); cfg != "" {
		if err := runChild(cfg); err != nil {
			fmt.Fprintln(os.Stderr, "aggregator child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if shared.c != nil {
		if err := shared.c.Stop(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the cluster:", err)
		}
		if code == 0 {
			_ = os.RemoveAll(shared.dir)
		} else {
			fmt.Fprintln(os.Stderr, "the cluster's logs are kept in", shared.dir)
		}
	}
	os.Exit(code)
}

// shared is the cluster the package's tests share, started by the first that needs it (each test has a
// database of its own) and stopped by TestMain.
var shared struct {
	once sync.Once
	c    *devenv.Cluster
	dir  string
	err  error
}

// clusterEnvs counts the databases newClusterEnv has made in this process.
var clusterEnvs atomic.Int64

// childConfig is what an aggregator child process needs.
type childConfig struct {
	Brokers  []string
	Topic    string
	Addr     string // the cluster's nodes, comma-separated
	Database string
	Keeper   []string
	Batch    int
}

func (c childConfig) kafka() kafkax.Config {
	return kafkax.Config{Brokers: c.Brokers, TopicPrefix: "test.", ClientID: "test", Partitions: 4, ReplicationFactor: 1}
}

// clusterStore opens a store of the cluster layout on database, reading records again through a reader
// of kcfg. It is closed when ctx's test ends, or by the caller.
func clusterStore(ctx context.Context, kcfg kafkax.Config, addr, database string, keeper []string, log *slog.Logger) (*chstore.Store, driver.Conn, error) {
	conn, err := chutil.Open(ctx, chutil.Options{Addr: addr, Database: database})
	if err != nil {
		return nil, nil, err
	}
	codec, err := records.NewCodec(ctx, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	reread := func(ctx context.Context, topic string, p int32, from, through int64) ([]*kgo.Record, error) {
		reader, err := kafkax.NewReader(kcfg, kafkax.Deps{})
		if err != nil {
			return nil, err
		}
		defer reader.Close()
		return kafkax.ReadRange(ctx, reader.Client, topic, p, from, through)
	}
	dial := func(ctx context.Context, addr string) (driver.Conn, error) {
		return chutil.Open(ctx, chutil.Options{Addr: addr, Database: database})
	}
	store, err := chstore.New(conn, codec, chstore.Config{Database: database, Reread: reread, AnalystPrefix: database + "_analyst_",
		Cluster: chstore.ClusterConfig{Name: devenv.ClusterName, Keeper: keeper, Dial: dial}}, chstore.Deps{Log: log})
	return store, conn, err
}

// runChild consumes the topic into the cluster until the process is killed.
func runChild(encoded string) error {
	var cfg childConfig
	if err := json.Unmarshal([]byte(encoded), &cfg); err != nil {
		return err
	}
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, _, err := clusterStore(ctx, cfg.kafka(), cfg.Addr, cfg.Database, cfg.Keeper, log)
	if err != nil {
		return err
	}
	c, err := kafkax.NewStoreConsumer(log, kafkax.ConsumerConfig{
		Group: "aggregator", Topic: cfg.Topic, MaxPollRecords: cfg.Batch,
		RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
	}, store, nil)
	if err != nil {
		return err
	}
	cl, err := kafkax.NewGroupConsumer(cfg.kafka(), kafkax.Deps{Log: log}, "aggregator", cfg.Topic, kafkax.Batching{}, c.Rebalance(), kafkatest.GroupOpts()...)
	if err != nil {
		return err
	}
	return c.Run(ctx, cl)
}

// clusterEnv is a 2-shard, 2-replica cluster with the aggregator's tables, and the pipeline feeding it.
type clusterEnv struct {
	c    *devenv.Cluster
	db   string
	addr string
	zk   *zk.Conn
	p    *pipeline
}

// newClusterEnv prepares a database named db and a number (so that a run with -count finds nothing a
// previous one left, in the tables or in Keeper) on the package's shared cluster.
func newClusterEnv(t testing.TB, db string) *clusterEnv {
	t.Helper()
	ctx := t.Context()
	db = fmt.Sprintf("%s_%d", db, clusterEnvs.Add(1))
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "chstore-cluster-"); shared.err != nil {
			return
		}
		shared.c, shared.err = devenv.StartCluster(context.Background(), shared.dir, 2, 2)
	})
	if errors.Is(shared.err, devenv.ErrNotInstalled) {
		t.Fatalf("%v (the cluster tests need ZooKeeper: run `make deps`)", shared.err)
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	c := shared.c
	e := &clusterEnv{c: c, db: db, addr: strings.Join(c.Addrs(), ",")}
	admin, err := chutil.Open(ctx, chutil.Options{Addr: e.addr})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close() }()
	if err := admin.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+e.db+" ON CLUSTER "+devenv.ClusterName); err != nil {
		t.Fatal(err)
	}
	conn := e.open(t)
	for range 2 { // a second run finds everything there
		if err := chstore.MigrateCluster(ctx, conn, e.db, devenv.ClusterName); err != nil {
			t.Fatal(err)
		}
	}
	zc, _, err := zk.Connect([]string{c.ZooKeeper}, 10*time.Second, zk.WithLogInfo(false), zk.WithLogger(discardZK{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(zc.Close)
	e.zk = zc
	e.p = emptyPipeline(t)
	return e
}

type discardZK struct{}

func (discardZK) Printf(string, ...any) {}

func (e *clusterEnv) open(t testing.TB) driver.Conn {
	t.Helper()
	conn, err := chutil.Open(t.Context(), chutil.Options{Addr: e.addr, Database: e.db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func (e *clusterEnv) store(t testing.TB, log *slog.Logger) *chstore.Store {
	t.Helper()
	store, conn, err := clusterStore(t.Context(), e.p.kcfg, e.addr, e.db, []string{e.c.ZooKeeper}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(); _ = conn.Close() })
	return store
}

// keeperState is a partition's node as the test reads it: its next offset and whether an insert is open.
type keeperState struct {
	Next int64  `json:"next"`
	From *int64 `json:"from"`
}

func (e *clusterEnv) keeper(t *testing.T) map[int32]keeperState {
	t.Helper()
	out := map[int32]keeperState{}
	for _, p := range e.p.parts {
		data, _, err := e.zk.Get(chstore.DefaultKeeperRoot(e.db) + "/" + e.p.topic + "/" + strconv.Itoa(int(p)))
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var st keeperState
		if err := json.Unmarshal(data, &st); err != nil {
			t.Fatal(err)
		}
		out[p] = st
	}
	return out
}

func (e *clusterEnv) caughtUp(t *testing.T) bool {
	t.Helper()
	next := map[int32]int64{}
	for p, st := range e.keeper(t) {
		if st.From != nil {
			return false
		}
		next[p] = st.Next
	}
	e.p.mu.Lock()
	defer e.p.mu.Unlock()
	return maps.Equal(next, e.p.ends)
}

// waitCaughtUp waits until Keeper says every partition is stored up to its end, with nothing open; on
// failure it calls report first, if given.
func (e *clusterEnv) waitCaughtUp(t *testing.T, report ...func()) {
	t.Helper()
	deadline := time.After(3 * time.Minute)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !e.caughtUp(t) {
		select {
		case <-deadline:
			for _, r := range report {
				r()
			}
			t.Fatalf("not caught up within 3 minutes: keeper %v, ends %v", e.keeper(t), e.p.ends)
		case <-tick.C:
		}
	}
}

// startChild starts an aggregator process.
func (e *clusterEnv) startChild(t *testing.T) *exec.Cmd {
	t.Helper()
	cfg, err := json.Marshal(childConfig{Brokers: e.p.kcfg.Brokers, Topic: e.p.topic, Addr: e.addr, Database: e.db,
		Keeper: []string{e.c.ZooKeeper}, Batch: e.p.batch})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), clusterChildEnv+"="+string(cfg))
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// replicaSets are the nodes to read every shard from: the first replicas of each shard, then the second.
func (e *clusterEnv) replicaSets() [][]*devenv.ClusterNode {
	sets := make([][]*devenv.ClusterNode, 2)
	for _, n := range e.c.Nodes {
		sets[n.Replica-1] = append(sets[n.Replica-1], n)
	}
	return sets
}

// TestClusterLayoutStoresEveryEventOnceThroughKills runs the aggregator of the cluster layout as a
// process of its own over a 2-shard, 2-replica cluster, and over 20 trials SIGKILLs it and a ClickHouse
// replica in the middle of the load: in each trial new events of five districts go into the topic, an
// aggregator process starts, and once it has begun to insert, one replica (each in turn) is killed, then
// the aggregator at a random moment after that; the replica is started again. A last aggregator then
// catches up. Every replica must hold its shard's events once each and rollups equal to what the input
// says, and the Distributed tables the whole input.
func TestClusterLayoutStoresEveryEventOnceThroughKills(t *testing.T) {
	const trials = 20
	e := newClusterEnv(t, "agg_cluster_kills")
	codec, err := records.NewCodec(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.p.batch = 1500
	rng := rand.New(rand.NewPCG(19, 26))
	midInsert := 0
	for trial := range trials {
		facts, _ := synth.Events(uint64(2000+trial), 5, 3000)
		e.p.send(t, codec, facts)
		// The child is killed only once it has opened an insert of its own, never while it joins the group:
		// the test broker (kfake) keeps a member whose join answer went to a closed connection without a
		// session timer, so a child killed there would hold partitions that no one consumes, for good.
		before := e.keeper(t)
		child := e.startChild(t)
		deadline := time.After(2 * time.Minute)
		tick := time.NewTicker(5 * time.Millisecond)
		for !e.insertOpenSince(t, before) && !e.caughtUp(t) {
			select {
			case <-deadline:
				t.Fatalf("trial %d: the aggregator opened no insert within 2 minutes (keeper %v)", trial, e.keeper(t))
			case <-tick.C:
			}
		}
		tick.Stop()
		node := trial % len(e.c.Nodes)
		if err := e.c.Kill(t.Context(), node); err != nil {
			t.Fatal(err)
		}
		for range rng.IntN(20) {
			e.keeper(t)
		}
		open := e.insertOpenSince(t, before)
		if err := child.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = child.Wait()
		if open && e.insertOpenSince(t, before) {
			midInsert++
		}
		if err := e.c.Start(t.Context(), node); err != nil {
			t.Fatal(err)
		}
	}
	logs := &repairLog{}
	e.p.deps.Log = slog.New(logs) // the consumer's, with the store's, for a failure's report
	stop := e.p.start(t, e.store(t, slog.New(logs)))
	e.waitCaughtUp(t, func() { logs.report(t) })
	stop()
	t.Logf("%d of %d aggregators killed with an insert open; the last one's log: %v", midInsert, trials, logs.counts())
	if midInsert == 0 {
		t.Fatal("no aggregator was killed with an insert open: the test proves little")
	}
	e.assertEveryReplica(t, e.p.facts)
}

// reportDuplicates logs, per partition, the offsets stored more than once and the rows stored.
func (e *clusterEnv) reportDuplicates(t *testing.T, conn driver.Conn) {
	t.Helper()
	var rows []struct {
		P     uint32   `ch:"kafka_partition"`
		N     uint64   `ch:"n"`
		Dups  []uint64 `ch:"dups"`
		Ids   uint64   `ch:"ids"`
		MinAt uint64   `ch:"lo"`
		MaxAt uint64   `ch:"hi"`
	}
	err := conn.Select(context.Background(), &rows, `SELECT kafka_partition, sum(c) AS n, groupArrayIf(kafka_offset, c > 1) AS dups,
		count() AS ids, min(kafka_offset) AS lo, max(kafka_offset) AS hi
		FROM (SELECT kafka_partition, kafka_offset, count() AS c FROM events GROUP BY kafka_partition, kafka_offset)
		GROUP BY kafka_partition ORDER BY kafka_partition`)
	if err != nil {
		t.Logf("reading duplicates: %v", err)
		return
	}
	for _, r := range rows {
		t.Logf("partition %d: %d rows, %d offsets from %d to %d, stored more than once: %v", r.P, r.N, r.Ids, r.MinAt, r.MaxAt, r.Dups)
	}
	var twice []struct {
		ID    string   `ch:"id"`
		Where []string `ch:"at"`
	}
	if err := conn.Select(context.Background(), &twice, `SELECT toString(event_id) AS id,
		groupArray(concat(toString(kafka_partition), '@', toString(kafka_offset), ' ', toString(occurred_at))) AS at
		FROM events GROUP BY event_id HAVING count() > 1 LIMIT 10`); err != nil {
		t.Logf("reading events stored twice: %v", err)
	}
	for _, r := range twice {
		t.Logf("event %s stored at %v", r.ID, r.Where)
	}
	t.Logf("ends: %v", e.p.ends)
}

// reportQueues logs, for every replica, the state of its replicated tables and what their replication
// queues still hold, with the reason each entry waits or failed.
func (e *clusterEnv) reportQueues(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, n := range e.c.Nodes {
		node, err := chutil.Open(ctx, chutil.Options{Addr: n.Addr, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Logf("%s: %v", n.Name(), err)
			continue
		}
		var replicas []struct {
			Table    string `ch:"table"`
			ReadOnly uint8  `ch:"is_readonly"`
			Expired  uint8  `ch:"is_session_expired"`
			Queue    uint32 `ch:"queue_size"`
			Active   uint8  `ch:"active_replicas"`
		}
		if err := node.Select(ctx, &replicas, `SELECT table, is_readonly, is_session_expired, queue_size, active_replicas
			FROM system.replicas WHERE database = ?`, e.db); err != nil {
			t.Logf("%s: reading system.replicas: %v", n.Name(), err)
		}
		for _, r := range replicas {
			t.Logf("%s: %s: read-only %d, session expired %d, queue %d, active replicas %d", n.Name(), r.Table, r.ReadOnly, r.Expired, r.Queue, r.Active)
		}
		var queue []struct {
			Table     string   `ch:"table"`
			Type      string   `ch:"type"`
			Part      string   `ch:"new_part_name"`
			Source    string   `ch:"source_replica"`
			Merge     []string `ch:"parts_to_merge"`
			Tries     uint32   `ch:"num_tries"`
			Exception string   `ch:"last_exception"`
			Postponed uint32   `ch:"num_postponed"`
			Reason    string   `ch:"postpone_reason"`
		}
		if err := node.Select(ctx, &queue, `SELECT table, type, new_part_name, source_replica, parts_to_merge, num_tries,
			last_exception, num_postponed, postpone_reason FROM system.replication_queue WHERE database = ? LIMIT 20`, e.db); err != nil {
			t.Logf("%s: reading system.replication_queue: %v", n.Name(), err)
		}
		for _, q := range queue {
			t.Logf("%s: %s: %s %s from %q merging %v: %d tries, last %q; postponed %d times: %q",
				n.Name(), q.Table, q.Type, q.Part, q.Source, q.Merge, q.Tries, q.Exception, q.Postponed, q.Reason)
		}
		_ = node.Close()
		if lines := grepLines(n.ErrorLog(), e.db+".", 20); len(lines) > 0 {
			t.Logf("%s: the last errors of its log about %s:\n%s", n.Name(), e.db, strings.Join(lines, "\n"))
		}
	}
}

// grepLines returns the last keep lines of the file at path that contain s.
func grepLines(path, s string, keep int) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for line := range strings.Lines(string(data)) {
		if strings.Contains(line, s) {
			out = append(out, strings.TrimRight(line, "\n"))
		}
	}
	return out[max(0, len(out)-keep):]
}

// insertOpenSince reports whether some partition has an insert open in Keeper that was not open in
// before: one opened since then.
func (e *clusterEnv) insertOpenSince(t *testing.T, before map[int32]keeperState) bool {
	t.Helper()
	for p, st := range e.keeper(t) {
		if st.From == nil {
			continue
		}
		was, ok := before[p]
		if !ok || was.From == nil || *was.From != *st.From || was.Next != st.Next {
			return true
		}
	}
	return false
}

// assertEveryReplica waits until every replica has fetched its shard's parts, then checks the
// Distributed tables hold facts once each and, replica by replica, that each holds exactly its shard's
// share: its events once each and rollups equal to what those events say.
func (e *clusterEnv) assertEveryReplica(t *testing.T, facts []records.EnrichedEvent) {
	t.Helper()
	ctx := t.Context()
	tables := []string{"events", "school_daily", "attendance_daily", "metrics_daily", "metrics_student_daily"}
	// A read through the Distributed tables may pick either replica of a shard: each must have fetched
	// its partner's parts first.
	for _, n := range e.c.Nodes {
		node, err := chutil.Open(ctx, chutil.Options{Addr: n.Addr})
		if err != nil {
			t.Fatal(err)
		}
		for _, table := range tables {
			// Bounded well below the package's limit, so that a replica that never catches up is reported.
			sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			err := node.Exec(sctx, "SYSTEM SYNC REPLICA "+e.db+"."+table+"_local")
			cancel()
			if err != nil {
				e.reportQueues(t)
				t.Fatalf("%s: syncing %s: %v", n.Name(), table, err)
			}
		}
		_ = node.Close()
	}
	conn := e.open(t)
	defer func() {
		if t.Failed() {
			e.reportDuplicates(t, conn)
		}
	}()
	assertStoredOnce(t, conn, facts)
	shardOf := map[string]int{}
	for _, ev := range facts {
		if _, ok := shardOf[ev.TenantID]; !ok {
			shardOf[ev.TenantID] = 1 + int(count(t, conn, "SELECT toUInt64(cityHash64(?) % 2)", ev.TenantID))
		}
	}
	for _, set := range e.replicaSets() {
		for _, n := range set {
			node, err := chutil.Open(ctx, chutil.Options{Addr: n.Addr})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = node.Close() }()
			// One database per replica with views of its local tables under the usual names, for synth.Got.
			check := e.db + "_check_" + strings.ReplaceAll(n.Name(), "-", "_")
			if err := node.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+check); err != nil {
				t.Fatal(err)
			}
			for _, table := range tables {
				if err := node.Exec(ctx, fmt.Sprintf("CREATE VIEW IF NOT EXISTS %s.%s AS SELECT * FROM %s.%s_local", check, table, e.db, table)); err != nil {
					t.Fatal(err)
				}
			}
			view, err := chutil.Open(ctx, chutil.Options{Addr: n.Addr, Database: check})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = view.Close() }()
			mine := slices.DeleteFunc(slices.Clone(facts), func(ev records.EnrichedEvent) bool { return shardOf[ev.TenantID] != n.Shard })
			t.Run(n.Name(), func(t *testing.T) {
				if len(mine) == 0 {
					t.Fatalf("no district of the input is on shard %d: the check proves little", n.Shard)
				}
				assertStoredOnce(t, view, mine)
			})
		}
	}
}

// TestClusterLayoutErasesAStudent writes two partitions of four districts' events into the cluster, each
// with the erasure marker of one student in the middle and more events after it, and proves every replica
// then holds exactly the events left and their rollups. A second erasure is cut short after its intent and
// its delete from events (as an aggregator killed there leaves it); the partition's next owner completes
// it, deriving the rollups of the days the intent names again.
func TestClusterLayoutErasesAStudent(t *testing.T) {
	e := newClusterEnv(t, "agg_cluster_erase")
	ctx := t.Context()
	store := e.store(t, slog.New(slog.DiscardHandler))
	codec, err := records.NewCodec(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	evs, regular := synth.Events(7, 4, 800)
	before, after := evs[:600], evs[600:]
	var kept []records.EnrichedEvent
	next := map[int32]int64{}
	for p := range int32(2) {
		var first []records.EnrichedEvent
		for i := int(p); i < len(before); i += 2 {
			first = append(first, before[i])
		}
		recs := facts(t, codec, p, 0, first)
		marker := records.NewStudentErased(uuid.NewString(), regular.Tenant, regular.Student, time.Now())
		recs = append(recs, record(t, codec, p, int64(len(recs)), marker))
		var later []records.EnrichedEvent
		for i := int(p); i < len(after); i += 2 {
			if after[i].Actor.InternalID != regular.Student {
				later = append(later, after[i])
			}
		}
		recs = append(recs, facts(t, codec, p, int64(len(recs)), later)...)
		if err := store.Write(ctx, topic, p, recs); err != nil {
			t.Fatal(err)
		}
		next[p] = int64(len(recs))
		kept = append(kept, without(first, regular.Student)...)
		kept = append(kept, later...)
	}
	assertNext(t, store, topic, []int32{0, 1}, next)
	e.assertEveryReplica(t, kept)
	e.assertReported(t, next)

	// Each district's analyst views exist on every node and read the whole district from any of them.
	perTenant := map[string]uint64{}
	for _, ev := range kept {
		perTenant[ev.TenantID]++
	}
	for _, n := range e.c.Nodes {
		node, err := chutil.Open(ctx, chutil.Options{Addr: n.Addr})
		if err != nil {
			t.Fatal(err)
		}
		for tenant, want := range perTenant {
			if got := count(t, node, "SELECT count() FROM "+e.db+"_analyst_"+tenant+".events"); got != want {
				t.Errorf("%s: the analyst events view of %s counts %d events, want %d", n.Name(), tenant, got, want)
			}
		}
		_ = node.Close()
	}

	// Cut short: the intent is in Keeper and the student's events of partition 0 are deleted; nothing else.
	var other string
	var days []string
	for _, ev := range kept {
		if ev.TenantID == regular.Tenant && ev.Actor.Role == "student" && ev.Actor.InternalID != regular.Student {
			other = ev.Actor.InternalID
			break
		}
	}
	for _, ev := range kept {
		if ev.Actor.InternalID == other && !slices.Contains(days, synth.Day(&ev)) {
			days = append(days, synth.Day(&ev), ev.OccurredAt.UTC().Format(time.DateOnly))
		}
	}
	node := chstore.DefaultKeeperRoot(e.db) + "/" + topic + "/0"
	_, stat, err := e.zk.Get(node)
	if err != nil {
		t.Fatal(err)
	}
	intent, err := json.Marshal(map[string]any{"next": next[0], "erase": map[string]any{"tenant": regular.Tenant, "student": other, "days": days}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.zk.Set(node, intent, stat.Version); err != nil {
		t.Fatal(err)
	}
	for _, n := range e.c.Nodes {
		if n.Replica != 1 {
			continue
		}
		conn, err := chutil.Open(ctx, chutil.Options{Addr: n.Addr, Database: e.db})
		if err != nil {
			t.Fatal(err)
		}
		err = conn.Exec(ctx, "ALTER TABLE events_local DELETE WHERE kafka_partition = 0 AND student_id = toUUID(?)", other)
		_ = conn.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	next[0]++
	assertNext(t, e.store(t, slog.New(slog.DiscardHandler)), topic, []int32{0, 1}, next)
	kept = slices.DeleteFunc(kept, func(ev records.EnrichedEvent) bool {
		return ev.Actor.InternalID == other && eventPartition(ev, before, after) == 0
	})
	e.assertEveryReplica(t, kept)
	e.assertReported(t, next)

}

// assertReported checks kafka_offsets reports each partition stored up to next, as ctl reads it.
func (e *clusterEnv) assertReported(t *testing.T, next map[int32]int64) {
	t.Helper()
	conn := e.open(t)
	for p, n := range next {
		if got := count(t, conn, "SELECT max(max_offset) FROM kafka_offsets WHERE kafka_topic = ? AND kafka_partition = ?", topic, uint32(p)); got != uint64(n-1) {
			t.Errorf("kafka_offsets reports partition %d stored up to %d, want %d", p, got, n-1)
		}
	}
}

// eventPartition is the partition the test wrote ev to: alternating, in before and then in after.
func eventPartition(ev records.EnrichedEvent, before, after []records.EnrichedEvent) int32 {
	for _, part := range [][]records.EnrichedEvent{before, after} {
		for i := range part {
			if part[i].EventID == ev.EventID {
				return int32(i % 2)
			}
		}
	}
	return -1
}

// cluster reaches every node of the test's cluster, with its database as default.
func (e *clusterEnv) cluster(t *testing.T) *chutil.Cluster {
	t.Helper()
	cl := chutil.NewCluster(e.open(t), devenv.ClusterName, e.db, func(ctx context.Context, addr string) (driver.Conn, error) {
		return chutil.Open(ctx, chutil.Options{Addr: addr, Database: e.db})
	})
	t.Cleanup(cl.Close)
	return cl
}

// rollupParts counts, node by node, the active parts of each closed month of each rollup's local table.
func (e *clusterEnv) rollupParts(t *testing.T, cl *chutil.Cluster) map[string]map[string]uint64 {
	t.Helper()
	out := map[string]map[string]uint64{}
	for _, n := range e.c.Nodes {
		conn, err := cl.Node(t.Context(), n.Addr)
		if err != nil {
			t.Fatal(err)
		}
		var rows []struct {
			Table     string `ch:"table"`
			Partition string `ch:"partition_id"`
			Parts     uint64 `ch:"parts"`
		}
		if err := conn.Select(t.Context(), &rows, `SELECT table, partition_id, count() AS parts FROM system.parts
			WHERE database = ? AND active AND endsWith(table, '_daily_local') AND partition_id < toString(toYYYYMM(today()))
			GROUP BY table, partition_id`, e.db); err != nil {
			t.Fatal(err)
		}
		out[n.Name()] = map[string]uint64{}
		for _, r := range rows {
			out[n.Name()][r.Table+"/"+r.Partition] = r.Parts
		}
	}
	return out
}

// TestClusterLayoutCompactsRollups writes closed months of events into the cluster in several batches and
// proves a compaction round leaves every closed month of every rollup in one part on every replica of
// both shards, with rollups still exact, and that a second round finds nothing to do.
func TestClusterLayoutCompactsRollups(t *testing.T) {
	e := newClusterEnv(t, "agg_cluster_compact")
	ctx := t.Context()
	store := e.store(t, slog.New(slog.DiscardHandler))
	codec, err := records.NewCodec(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	evs, _ := synth.Events(31, 6, 900) // two closed months
	var recs []*kgo.Record
	for _, batch := range [][2]int{{0, 300}, {300, 600}, {600, 900}} {
		more := facts(t, codec, 0, int64(len(recs)), evs[batch[0]:batch[1]])
		if err := store.Write(ctx, topic, 0, more); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, more...)
	}
	cl := e.cluster(t)
	for _, r := range chstore.Rollups {
		if err := cl.SyncReplicas(ctx, r+"_local"); err != nil {
			t.Fatal(err)
		}
	}
	before := e.rollupParts(t, cl)
	split := 0
	for _, parts := range before {
		for _, n := range parts {
			if n > 1 {
				split++
			}
		}
	}
	if split == 0 {
		t.Fatalf("no closed month of a rollup is in several parts on any node before the round: %v", before)
	}
	merged, err := chstore.CompactCluster(ctx, cl, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(merged) == 0 {
		t.Fatal("the round merged nothing")
	}
	for _, r := range chstore.Rollups {
		if err := cl.SyncReplicas(ctx, r+"_local"); err != nil {
			t.Fatal(err)
		}
	}
	after := e.rollupParts(t, cl)
	for node, parts := range after {
		if len(parts) != len(before[node]) {
			t.Errorf("%s: the partitions after %v differ from before %v", node, parts, before[node])
		}
		for p, n := range parts {
			if n != 1 {
				t.Errorf("%s: %s is in %d parts after the round, want 1", node, p, n)
			}
		}
	}
	if again, err := chstore.CompactCluster(ctx, cl, 0); err != nil || len(again) != 0 {
		t.Errorf("a second round merged %v (%v), want nothing", again, err)
	}
	e.assertEveryReplica(t, evs)
}

// TestClusterLayoutRebuildsADistrict: in the cluster layout a district's events lost a type of rows on
// every replica (its rollups did not). With the aggregator consuming and new events of every district
// arriving, a rebuild stages the district's rows, finds them different, and the aggregator swaps them in
// at the marker: afterwards every replica holds every event once and rollups exactly what the events say.
// Then a swap is cut short (its intent in Keeper, the district's rows of the partition half deleted and
// half doubled, as a killed aggregator can leave them): the partition's next owner completes it.
func TestClusterLayoutRebuildsADistrict(t *testing.T) {
	e := newClusterEnv(t, "agg_cluster_rebuild")
	ctx := t.Context()
	codec, err := records.NewCodec(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn := e.open(t)
	cl := e.cluster(t)
	all, _ := synth.Events(21, 5, 3000)
	e.p.send(t, codec, all[:2000])
	stop := e.p.start(t, e.store(t, slog.New(slog.DiscardHandler)))
	e.waitCaughtUp(t)
	const tenant = "district_2"
	if err := cl.OnEachShard(ctx, "ALTER TABLE events_local DELETE WHERE tenant_id = ? AND type = ?", tenant, records.TypeSession); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitMutations(ctx, "events_local"); err != nil {
		t.Fatal(err)
	}
	dial := func(ctx context.Context, addr string) (driver.Conn, error) {
		return chutil.Open(ctx, chutil.Options{Addr: addr, Database: e.db})
	}
	run := func(dry bool) rebuild.Report {
		t.Helper()
		rd, err := kafkax.NewReader(e.p.kcfg, e.p.deps)
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		prod, err := kafkax.NewProducer(e.p.kcfg, e.p.deps, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		defer prod.Close()
		report, err := rebuild.Run(ctx, conn, codec, rd.Client, prod.Client, rebuild.Config{TenantID: tenant, Kafka: e.p.kcfg, Database: e.db,
			DryRun: dry, AcceptDiff: true, SwapTimeout: 2 * time.Minute, Dial: dial})
		if err != nil {
			t.Fatalf("rebuild (dry run %v): %v (%+v)", dry, err, report)
		}
		return report
	}
	if _, err := rebuild.Run(ctx, conn, codec, nil, nil, rebuild.Config{TenantID: tenant, Database: e.db}); err == nil || !strings.Contains(err.Error(), "a dial function, and none was given") {
		t.Errorf("a rebuild in the cluster layout without a way to reach each node: %v", err)
	}
	dry := run(true)
	if dry.Equal || dry.Swapped || dry.Live.Rows >= dry.Rebuilt.Rows {
		t.Fatalf("dry run: %+v", dry)
	}
	if n := count(t, conn, "SELECT count() FROM events WHERE tenant_id = ? AND type = ?", tenant, records.TypeSession); n != 0 {
		t.Fatalf("a dry run changed events: %d sessions", n)
	}

	var wg sync.WaitGroup
	wg.Go(func() { // new events of every district while the rebuild runs
		for chunk := range slices.Chunk(all[2000:], 100) {
			e.p.send(t, codec, chunk)
		}
	})
	report := run(false)
	wg.Wait()
	if !report.Swapped || !report.Verified || report.Equal || len(report.Markers) != 1 {
		t.Errorf("rebuild: %+v", report)
	}
	e.p.mu.Lock()
	for part, m := range report.Markers { // the markers are records of the topic too
		e.p.ends[part] = max(e.p.ends[part], m+1)
	}
	e.p.mu.Unlock()
	e.waitCaughtUp(t)
	stop()
	e.assertEveryReplica(t, all)
	for _, n := range e.c.Nodes {
		node, err := cl.Node(ctx, n.Addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := count(t, node, "SELECT count() FROM system.tables WHERE database = ? AND startsWith(name, 'rebuild_')", e.db); got != 0 {
			t.Errorf("%s: %d staging tables left behind", n.Name(), got)
		}
	}
	if err := cl.SyncReplicas(ctx, "district_rebuilds_local"); err != nil {
		t.Fatal(err)
	}
	if rb, ok, err := chstore.ReadRebuild(ctx, conn, report.ID); err != nil || !ok || rb.State != chstore.RebuildDone {
		t.Errorf("rebuild state %+v, %v, %v", rb, ok, err)
	}

	// Cut short: the district's records of its partition staged, its marker written and the swap's intent
	// in Keeper; on each shard the district's sessions of the partition deleted and its other rows of the
	// partition inserted a second time.
	var part int32
	for p := range report.Markers {
		part = p
	}
	rd, err := kafkax.NewReader(e.p.kcfg, e.p.deps)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	recs, err := kafkax.ReadRange(ctx, rd.Client, e.p.topic, part, 0, e.p.ends[part]-1)
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	st, err := chstore.NewStager(ctx, conn, codec, e.db, tenant, id, cl)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Add(ctx, e.p.topic, recs); err != nil {
		t.Fatal(err)
	}
	if err := st.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	marker := record(t, codec, part, 0, records.NewClickHouseRebuild(id, tenant, time.Now()))
	marker.Topic, marker.Key = e.p.topic, []byte(tenant)
	e.p.send(t, codec, nil, marker)
	at := e.p.ends[part] - 1
	node := chstore.DefaultKeeperRoot(e.db) + "/" + e.p.topic + "/" + strconv.Itoa(int(part))
	_, stat, err := e.zk.Get(node)
	if err != nil {
		t.Fatal(err)
	}
	intent, err := json.Marshal(map[string]any{"next": at, "swap": map[string]any{"rebuild": id, "tenant": tenant, "staging": st.Table()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.zk.Set(node, intent, stat.Version); err != nil {
		t.Fatal(err)
	}
	if err := cl.OnEachShard(ctx, "ALTER TABLE events_local DELETE WHERE tenant_id = ? AND kafka_partition = ? AND type = ?", tenant, uint32(part), records.TypeSession); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitMutations(ctx, "events_local"); err != nil {
		t.Fatal(err)
	}
	again := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1, "insert_deduplicate": 0}))
	if err := conn.Exec(again, "INSERT INTO events_input SELECT * FROM events WHERE tenant_id = ? AND kafka_partition = ? AND type != ?",
		tenant, uint32(part), records.TypeSession); err != nil {
		t.Fatal(err)
	}
	assertNext(t, e.store(t, slog.New(slog.DiscardHandler)), e.p.topic, []int32{part}, map[int32]int64{part: at + 1})
	if err := st.Finish(ctx, true); err != nil {
		t.Fatal(err)
	}
	e.assertEveryReplica(t, all)
}

// TestClusterLayoutAnalystViewsWaitForANodeThatIsDown: a district's first write while a node does not
// answer stores its events and makes the analyst views on the other nodes; its next writes, and a call
// once the node answers again, do not try again before the retry is due (each try at a node that does not
// answer would cost a write its timeout).
func TestClusterLayoutAnalystViewsWaitForANodeThatIsDown(t *testing.T) {
	e := newClusterEnv(t, "agg_cluster_analyst")
	ctx := t.Context()
	down := e.c.Nodes[3].Addr
	var mu sync.Mutex
	refused, dials := true, 0
	conn := e.open(t)
	codec, err := records.NewCodec(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := chstore.New(conn, codec, chstore.Config{Database: e.db, AnalystPrefix: e.db + "_analyst_",
		Cluster: chstore.ClusterConfig{Name: devenv.ClusterName, Keeper: []string{e.c.ZooKeeper},
			Dial: func(ctx context.Context, addr string) (driver.Conn, error) {
				mu.Lock()
				defer mu.Unlock()
				if addr == down {
					dials++
					if refused {
						return nil, errors.New("connection refused (as the test says)")
					}
				}
				return chutil.Open(ctx, chutil.Options{Addr: addr, Database: e.db})
			}}}, chstore.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	evs, _ := synth.Events(3, 1, 40)
	tenant := evs[0].TenantID
	views := func(addr string) uint64 {
		t.Helper()
		node, err := chutil.Open(ctx, chutil.Options{Addr: addr})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = node.Close() }()
		return count(t, node, "SELECT count() FROM system.tables WHERE database = ?", e.db+"_analyst_"+tenant)
	}
	for i, batch := range [][2]int{{0, 20}, {20, 40}} {
		if err := store.Write(ctx, topic, 0, facts(t, codec, 0, int64(batch[0]), evs[batch[0]:batch[1]])); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	mu.Lock()
	if dials != 1 {
		t.Errorf("the node that does not answer was dialled %d times over two writes, want once", dials)
	}
	mu.Unlock()
	want := views(e.c.Nodes[0].Addr)
	if want == 0 || views(e.c.Nodes[2].Addr) != want || views(down) != 0 {
		t.Errorf("analyst views by node: %d, %d, and %d on the node that did not answer", want, views(e.c.Nodes[2].Addr), views(down))
	}
	if got := count(t, conn, "SELECT count() FROM events WHERE tenant_id = ?", tenant); got != uint64(len(evs)) {
		t.Errorf("%d events stored, want %d", got, len(evs))
	}
	mu.Lock()
	refused = false
	mu.Unlock()
	if err := store.EnsureAnalystViews(ctx, tenant); err != nil || views(down) != 0 {
		t.Errorf("before the retry is due: %v, %d views on the node", err, views(down))
	}
}

// TestCheckNodesFindsWhatTheClusterLayoutNeeds reads the server settings the cluster layout needs: the
// test cluster's nodes have them; a server on ClickHouse's defaults (the single test server) lacks one,
// and the check says which and why.
func TestCheckNodesFindsWhatTheClusterLayoutNeeds(t *testing.T) {
	_, conn, _ := newStore(t)
	problems, err := chstore.CheckNode(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || !strings.Contains(problems[0], "replicated_max_ratio_of_wrong_parts is 0.5, want 1 or more") {
		t.Errorf("a server on the defaults: %q, want replicated_max_ratio_of_wrong_parts named", problems)
	}

	e := newClusterEnv(t, "agg_cluster_check")
	problems, err = e.store(t, nil).CheckNodes(t.Context())
	if err != nil || len(problems) != 0 {
		t.Errorf("the test cluster: %q, %v; want nothing lacking", problems, err)
	}
}
