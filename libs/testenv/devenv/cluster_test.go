package devenv

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chHTTP runs query on a node through its HTTP interface, with settings given as name=value pairs, and
// returns the answer, trimmed.
func chHTTP(t *testing.T, n *ClusterNode, query string, settings ...string) string {
	t.Helper()
	out, err := chQuery(t.Context(), n, query, settings...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func chQuery(ctx context.Context, n *ClusterNode, query string, settings ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	params := url.Values{"query": {query}}
	for _, s := range settings {
		name, value, _ := strings.Cut(s, "=")
		params.Set(name, value)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+n.HTTPAddr+"/?"+params.Encode(), nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return "", fmt.Errorf("%s on %s: %w", query, n.Name(), err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s on %s: %d %s %v", query, n.Name(), resp.StatusCode, body, err)
	}
	return strings.TrimSpace(string(body)), nil
}

// TestClusterReplicatesAndSurvivesAKilledNode starts two shards of two replicas, creates a replicated
// table on every node with one statement, writes to one replica of each shard and reads the rows from the
// other; then SIGKILLs a node, writes to its shard through its partner, starts it again and finds it
// holding every row of its shard.
func TestClusterReplicatesAndSurvivesAKilledNode(t *testing.T) {
	ctx := t.Context()
	c, err := StartCluster(ctx, t.TempDir(), 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Errorf("stopping the cluster: %v", err)
		}
	})
	if len(c.Nodes) != 4 {
		t.Fatalf("%d nodes, want 4", len(c.Nodes))
	}
	for _, n := range c.Nodes {
		want := fmt.Sprintf("%d\t%s", n.Shard, n.Name())
		if got := chHTTP(t, n, "SELECT (SELECT substitution FROM system.macros WHERE macro = 'shard'), (SELECT substitution FROM system.macros WHERE macro = 'replica')"); got != want {
			t.Errorf("%s macros: %q, want %q", n.Name(), got, want)
		}
		if got := chHTTP(t, n, "SELECT value FROM system.merge_tree_settings WHERE name = 'replicated_max_ratio_of_wrong_parts'"); got != "1" {
			t.Errorf("%s replicated_max_ratio_of_wrong_parts = %s, want 1: a replica killed in the middle of an insert may not start again", n.Name(), got)
		}
	}
	chHTTP(t, c.Nodes[0], "CREATE TABLE default.t ON CLUSTER "+ClusterName+
		" (n UInt64) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/default/t', '{replica}') ORDER BY n")
	chHTTP(t, c.Nodes[0], "INSERT INTO default.t SELECT number FROM system.numbers LIMIT 10")
	chHTTP(t, c.Nodes[2], "INSERT INTO default.t SELECT number FROM system.numbers LIMIT 20")
	for i, want := range []string{"10", "10", "20", "20"} {
		chHTTP(t, c.Nodes[i], "SYSTEM SYNC REPLICA default.t")
		if got := chHTTP(t, c.Nodes[i], "SELECT count() FROM default.t"); got != want {
			t.Errorf("%s holds %s rows, want %s", c.Nodes[i].Name(), got, want)
		}
	}

	if err := c.Kill(ctx, 1); err != nil {
		t.Fatal(err)
	}
	chHTTP(t, c.Nodes[0], "INSERT INTO default.t SELECT number FROM system.numbers LIMIT 5")
	// What a node killed in the middle of merging the shard's two parts (all_0_0_0, all_1_1_0) leaves, with
	// a file written in the second it starts again: ClickHouse 18.16 keeps such a directory on start.
	stale := filepath.Join(c.Nodes[1].base, "data", "data", "default", "t", "tmp_merge_all_0_1_1")
	if err := os.MkdirAll(stale, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "n.bin"), []byte("partial"), 0o640); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(stale, "n.bin"), later, later); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx, 1); err != nil {
		t.Fatal(err)
	}
	chHTTP(t, c.Nodes[1], "SYSTEM SYNC REPLICA default.t")
	if got := chHTTP(t, c.Nodes[1], "SELECT count() FROM default.t"); got != "15" {
		t.Errorf("the restarted replica holds %s rows, want 15", got)
	}
	// The merge the killed node was doing runs again and completes. Had the node kept the directory, the
	// merge would fail for a day and the sync would wait until chQuery's timeout.
	optimize(t, c.Nodes[0], "default.t")
	chHTTP(t, c.Nodes[1], "SYSTEM SYNC REPLICA default.t")
	if got := chHTTP(t, c.Nodes[1], "SELECT groupArray(name) FROM system.parts WHERE database = 'default' AND table = 't' AND active"); got != "['all_0_1_1']" {
		t.Errorf("the restarted replica's parts: %s, want the merged all_0_1_1", got)
	}
}

// optimize merges table's parts (OPTIMIZE ... FINAL) through node, trying again for up to a minute while
// the shard's leader changes: the restarted replica's return can move the leadership in the meantime
// ("Leader was suddenly changed").
func optimize(t *testing.T, n *ClusterNode, table string) {
	t.Helper()
	deadline := time.After(time.Minute)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := chQuery(t.Context(), n, "OPTIMIZE TABLE "+table+" FINAL", "replication_alter_partitions_sync=0")
		if err == nil {
			return
		}
		select {
		case <-deadline:
			t.Fatal(err)
		case <-tick.C:
		}
	}
}
