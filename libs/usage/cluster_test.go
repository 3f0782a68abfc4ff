package usage_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/testenv/devenv"
	"github.com/edtech-analytics/platform/libs/usage"
)

// TestReportInClusterLayout: in the replicated cluster layout (two shards of two replicas) a district's
// ClickHouse bytes are its share of its own shard's tables, measured on one replica of the shard: a
// district on the shard of the node the report is connected to and one on the other shard each get, to
// the byte, the share its rows make of its shard's tables. A report that cannot reach each node fails
// rather than apportion one node's tables.
func TestReportInClusterLayout(t *testing.T) {
	ctx := t.Context()
	c, err := devenv.StartCluster(ctx, devenv.PrivateDir(t), 2, 2)
	if err != nil {
		t.Fatalf("%v (the cluster tests need ZooKeeper: run `make deps`)", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Errorf("stopping the cluster: %v", err)
		}
	})
	const db = "usage_cluster"
	admin, err := chutil.Open(ctx, chutil.Options{Addr: c.Nodes[0].Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close() }()
	if err := admin.Exec(ctx, "CREATE DATABASE "+db+" ON CLUSTER "+devenv.ClusterName); err != nil {
		t.Fatal(err)
	}
	dial := func(ctx context.Context, addr string) (driver.Conn, error) {
		return chutil.Open(ctx, chutil.Options{Addr: addr, Database: db})
	}
	conn, err := dial(ctx, c.Nodes[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	rendered, err := chutil.RenderMigrations(os.DirFS("../../services/aggregator/internal/chstore/cluster"), db, devenv.ClusterName)
	if err != nil {
		t.Fatal(err)
	}
	if err := chutil.Migrate(ctx, conn, db, rendered); err != nil {
		t.Fatal(err)
	}

	// Two districts on each shard, with different numbers of events received in November.
	shardOf := map[string]int{}
	var districts []string
	for i := 0; len(districts) < 4; i++ {
		d := fmt.Sprintf("d%d", i)
		var slot uint64
		if err := conn.QueryRow(ctx, "SELECT toUInt64(cityHash64(?) % 2)", d).Scan(&slot); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, other := range districts {
			if shardOf[other] == int(slot)+1 {
				n++
			}
		}
		if n < 2 {
			districts, shardOf[d] = append(districts, d), int(slot)+1
		}
	}
	pool, _ := pgtest.New(t)
	if err := tenancy.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	f := fleet.New(pool, os.Getenv)
	t.Cleanup(f.Close)
	ictx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
	batch, err := conn.PrepareBatch(ictx, `INSERT INTO events_input (tenant_id, event_id, source_id, type, occurred_at, received_at,
		student_id, role, kafka_topic, kafka_partition, kafka_offset)`)
	if err != nil {
		t.Fatal(err)
	}
	events := map[string]int64{}
	for i, d := range districts {
		if _, err := tenants.New(f).Create(ctx, d, "District "+d); err != nil {
			t.Fatal(err)
		}
		for j := range 20 * (i + 1) {
			at := time.Date(2026, 11, 2+j%20, 9, 0, 0, 0, time.UTC)
			if err := batch.Append(d, uuid.New(), "lms", "session", at, at, uuid.New(), "student", "edtech.enriched", uint32(i), uint64(j)); err != nil {
				t.Fatal(err)
			}
			events[d]++
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "UPDATE control.tenants SET created_at = '2026-01-01T00:00:00Z'"); err != nil { // existed in November
		t.Fatal(err)
	}
	// Every replica holds its shard's rows: one insert, one part of each table, so sizes stay put.
	cl := chutil.NewCluster(conn, devenv.ClusterName, db, dial)
	defer cl.Close()
	tables := []string{"events_local", "metrics_daily_local", "metrics_student_daily_local", "school_daily_local"}
	for _, table := range tables {
		if err := cl.SyncReplicas(ctx, table); err != nil {
			t.Fatal(err)
		}
	}

	month, err := usage.Month("2026-11")
	if err != nil {
		t.Fatal(err)
	}
	r := usage.New(pool, fleet.NewDistrictPools(f), conn)
	if _, err := r.Report(ctx, month); err == nil || !strings.Contains(err.Error(), "dial function") {
		t.Errorf("a report of the cluster layout without a way to reach each node: %v", err)
	}
	rep, err := r.WithNodes(dial).Report(ctx, month)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Districts) != len(districts) {
		t.Fatalf("report of %d districts, want %d", len(rep.Districts), len(districts))
	}
	for _, d := range rep.Districts {
		if d.EventsTotal != events[d.TenantID] {
			t.Errorf("%s: %d events, want %d", d.TenantID, d.EventsTotal, events[d.TenantID])
		}
		// What the first replica of the district's shard holds (the report measures the first that answers).
		var node *devenv.ClusterNode
		for _, n := range c.Nodes {
			if n.Shard == shardOf[d.TenantID] && n.Replica == 1 {
				node = n
			}
		}
		local, err := cl.Node(ctx, node.Addr)
		if err != nil {
			t.Fatal(err)
		}
		sizes := tableSizes(t, local)
		var sum int64
		for _, table := range tables {
			mine, all := tenantRows(t, local, table, d.TenantID)
			want := share(sizes[table], mine, all)
			if got := d.ClickHouseTables[strings.TrimSuffix(table, "_local")]; got != want || want == 0 {
				t.Errorf("%s (shard %d): %d bytes of %s, want %d (%d of %d rows of %d bytes)", d.TenantID, shardOf[d.TenantID], got,
					table, want, mine, all, sizes[table])
			}
			sum += want
		}
		if d.ClickHouseBytesApportioned != sum {
			t.Errorf("%s: %d bytes apportioned, want %d", d.TenantID, d.ClickHouseBytesApportioned, sum)
		}
	}
}
