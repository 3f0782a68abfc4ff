package app

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
	"github.com/edtech-analytics/platform/libs/testenv/devenv"
)

// sharedCluster is the ClickHouse cluster (2 shards × 2 replicas) the package's cluster tests share,
// started by the first that needs it and stopped by TestMain.
var sharedCluster struct {
	once sync.Once
	c    *devenv.Cluster
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedCluster.c != nil {
		if err := sharedCluster.c.Stop(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the cluster:", err)
		}
	}
	if sharedCluster.dir != "" {
		_ = os.RemoveAll(sharedCluster.dir)
	}
	os.Exit(code)
}

// testCluster returns the shared cluster and a fresh database created on every node of it.
func testCluster(t *testing.T) (*devenv.Cluster, string) {
	t.Helper()
	sharedCluster.once.Do(func() {
		if sharedCluster.dir, sharedCluster.err = os.MkdirTemp("", "ctl-cluster-"); sharedCluster.err != nil {
			return
		}
		sharedCluster.c, sharedCluster.err = devenv.StartCluster(context.Background(), sharedCluster.dir, 2, 2)
	})
	if sharedCluster.err != nil {
		t.Fatalf("%v (the cluster tests need ZooKeeper: run `make deps`)", sharedCluster.err)
	}
	db := "ctl_" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "_")
	admin, err := chutil.Open(t.Context(), chutil.Options{Addr: sharedCluster.c.Nodes[0].Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close() }()
	for _, q := range []string{"DROP DATABASE IF EXISTS " + db + " ON CLUSTER " + devenv.ClusterName,
		"CREATE DATABASE " + db + " ON CLUSTER " + devenv.ClusterName} {
		if err := admin.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	return sharedCluster.c, db
}

// nodeCluster reaches every node of c with database db as default.
func nodeCluster(t *testing.T, c *devenv.Cluster, db string) *chutil.Cluster {
	t.Helper()
	conn, err := chutil.Open(t.Context(), chutil.Options{Addr: c.Nodes[0].Addr, Database: db})
	if err != nil {
		t.Fatal(err)
	}
	cl := chutil.NewCluster(conn, devenv.ClusterName, db, func(ctx context.Context, addr string) (driver.Conn, error) {
		return chutil.Open(ctx, chutil.Options{Addr: addr, Database: db})
	})
	t.Cleanup(func() { cl.Close(); _ = conn.Close() })
	return cl
}

// perNode counts a query's rows on every node, by node name.
func perNode(t *testing.T, c *devenv.Cluster, cl *chutil.Cluster, query string, args ...any) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, n := range c.Nodes {
		conn, err := cl.Node(t.Context(), n.Addr)
		if err != nil {
			t.Fatal(err)
		}
		var count uint64
		if err := conn.QueryRow(t.Context(), query, args...).Scan(&count); err != nil {
			t.Fatalf("%s on %s: %v", query, n.Name(), err)
		}
		out[n.Name()] = count
	}
	return out
}

// TestEraseTenantOnEveryReplica erases a district in the replicated cluster layout, connected to a node
// of the shard that does not hold the district: its events and rollup rows are deleted on both replicas
// of its shard, its analyst database on every node, and the other district's rows stay.
func TestEraseTenantOnEveryReplica(t *testing.T) {
	_, url := migratedDB(t)
	ctx := t.Context()
	c, db := testCluster(t)
	kcfg := platformTopics(t)
	cl := nodeCluster(t, c, db)
	conn, err := cl.Node(ctx, c.Nodes[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	on := " ON CLUSTER " + devenv.ClusterName
	for _, q := range []string{
		"CREATE TABLE " + db + ".events_local" + on + " (tenant_id String, student String, n UInt32) " +
			"ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/" + db + "/events_local', '{replica}') ORDER BY (tenant_id, student)",
		"CREATE TABLE " + db + ".events" + on + " AS " + db + ".events_local ENGINE = Distributed(" + devenv.ClusterName + ", " + db + ", events_local, cityHash64(tenant_id))",
		"CREATE TABLE " + db + ".daily_local" + on + " (tenant_id String, n UInt64) " +
			"ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/" + db + "/daily_local', '{replica}') ORDER BY tenant_id",
		"CREATE MATERIALIZED VIEW " + db + ".daily_mv" + on + " TO " + db + ".daily_local AS SELECT tenant_id, toUInt64(sum(n)) AS n FROM " + db + ".events_local GROUP BY tenant_id",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// The erased district lives on shard 2, the node ctl connects to is on shard 1; the kept one on shard 1.
	var erased, kept string
	for i := 0; erased == "" || kept == ""; i++ {
		d := fmt.Sprintf("d%d", i)
		var slot uint64
		if err := conn.QueryRow(ctx, "SELECT toUInt64(cityHash64(?) % 2)", d).Scan(&slot); err != nil {
			t.Fatal(err)
		}
		switch {
		case slot == 1 && erased == "":
			erased = d
		case slot == 0 && kept == "":
			kept = d
		}
	}
	mustCtl(t, url, "tenant", "create", "--id", erased, "--name", "District "+erased)
	analyst := db + "_analyst_" + erased
	if err := conn.Exec(ctx, "CREATE DATABASE "+analyst+on); err != nil {
		t.Fatal(err)
	}
	batch, err := conn.PrepareBatch(clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1})), "INSERT INTO events")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		tenant, student string
		n               uint32
	}{{erased, "a", 1}, {erased, "b", 2}, {kept, "a", 5}} {
		if err := batch.Append(r.tenant, r.student, r.n); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	for _, tb := range []string{"events_local", "daily_local"} {
		if err := cl.SyncReplicas(ctx, tb); err != nil {
			t.Fatal(err)
		}
	}
	held := "SELECT (SELECT count() FROM events_local WHERE tenant_id = ?) + (SELECT count() FROM daily_local WHERE tenant_id = ?)"
	if got, want := fmt.Sprint(perNode(t, c, cl, held, erased, erased)), "map[r1-1:0 r1-2:0 r2-1:3 r2-2:3]"; got != want {
		t.Fatalf("the district's rows by node before: %s, want %s", got, want)
	}

	args := append([]string{"erase", "tenant", "--tenant", erased, "--confirm", erased, "--enricher-wait", "0",
		"--clickhouse.addr", c.Nodes[0].Addr, "--clickhouse.database", db, "--analyst.prefix", db + "_analyst_", "--output", "json"}, kafkaArgs(kcfg)...)
	var job jobs.Job
	if err := json.Unmarshal([]byte(mustCtl(t, url, args...)), &job); err != nil {
		t.Fatal(err)
	}
	found := map[string][2]int64{}
	for _, st := range job.Steps {
		if st.FoundBefore != nil && st.FoundAfter != nil {
			found[st.Name] = [2]int64{*st.FoundBefore, *st.FoundAfter}
		}
	}
	// What every replica held: two events and a rollup row on each of shard 2's replicas; the analyst
	// database on all four nodes.
	if found["clickhouse"] != [2]int64{6, 0} || found["analyst"] != [2]int64{4, 0} {
		t.Fatalf("found before/after: %v, want clickhouse [6 0] and analyst [4 0]", found)
	}
	if got, want := fmt.Sprint(perNode(t, c, cl, held, erased, erased)), "map[r1-1:0 r1-2:0 r2-1:0 r2-2:0]"; got != want {
		t.Errorf("the district's rows by node after: %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(perNode(t, c, cl, held, kept, kept)), "map[r1-1:2 r1-2:2 r2-1:0 r2-2:0]"; got != want {
		t.Errorf("the other district's rows by node after: %s, want %s", got, want)
	}
	if got := fmt.Sprint(perNode(t, c, cl, "SELECT count() FROM system.databases WHERE name = ?", analyst)); got != "map[r1-1:0 r1-2:0 r2-1:0 r2-2:0]" {
		t.Errorf("the analyst database by node after: %s", got)
	}
}

// clusterTables creates the aggregator's tables of the replicated cluster layout in db on every node of
// the cluster (its migrations, rendered as the aggregator renders them).
func clusterTables(t *testing.T, conn driver.Conn, db string) {
	t.Helper()
	rendered, err := chutil.RenderMigrations(os.DirFS("../../../aggregator/internal/chstore/cluster"), db, devenv.ClusterName)
	if err != nil {
		t.Fatal(err)
	}
	if err := chutil.Migrate(t.Context(), conn, db, rendered); err != nil {
		t.Fatal(err)
	}
}

// TestExportTenantInClusterLayout exports a district from the replicated cluster layout, connected to a
// node of the shard that does not hold it: the events file holds every event of the district once and
// the manifest the offsets the aggregator's inserts recorded.
func TestExportTenantInClusterLayout(t *testing.T) {
	_, url := migratedDB(t)
	ctx := t.Context()
	c, db := testCluster(t)
	cl := nodeCluster(t, c, db)
	conn, err := cl.Node(ctx, c.Nodes[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	clusterTables(t, conn, db)
	var tenant string
	for i := 0; tenant == ""; i++ {
		d := fmt.Sprintf("d%d", i)
		var slot uint64
		if err := conn.QueryRow(ctx, "SELECT toUInt64(cityHash64(?) % 2)", d).Scan(&slot); err != nil {
			t.Fatal(err)
		}
		if slot == 1 {
			tenant = d
		}
	}
	mustCtl(t, url, "tenant", "create", "--id", tenant, "--name", "District "+tenant)
	var evs []testEvent
	for p := range uint32(4) {
		evs = append(evs, makeEvents(tenant, ada, "ps", 300, p, 0)...)
	}
	// As the aggregator inserts: into events_input, whose views fill events_local and kafka_offsets_local.
	ictx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
	insertEventsInto(t, ictx, conn, "events_input", evs)

	dir := filepath.Join(t.TempDir(), "export")
	mustCtl(t, url, "export", "tenant", "--tenant", tenant, "--format", "ndjson", "--out", dir,
		"--clickhouse.addr", c.Nodes[0].Addr, "--clickhouse.database", db)
	m := readManifest(t, dir)
	if want := wantCHOffsets(evs); !slices.Equal(m.Offsets.ClickHouse, want) {
		t.Errorf("clickhouse offsets %v, want %v", m.Offsets.ClickHouse, want)
	}
	found := false
	for _, f := range m.Files {
		if f.Store != "clickhouse" {
			continue
		}
		found = true
		events, err := chutil.Open(ctx, chutil.Options{Addr: c.Nodes[0].Addr, Database: db})
		if err != nil {
			t.Fatal(err)
		}
		checkEventsFile(t, events, "ndjson", readGz(t, dir, f), evs)
		_ = events.Close()
	}
	if !found {
		t.Fatalf("no events file in the manifest: %+v", m.Files)
	}
}
