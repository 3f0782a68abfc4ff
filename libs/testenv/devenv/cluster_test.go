package devenv

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// chHTTP runs query on a node through its HTTP interface and returns the answer, trimmed.
func chHTTP(t *testing.T, n *ClusterNode, query string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+n.HTTPAddr+"/?"+url.Values{"query": {query}}.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		t.Fatalf("%s on %s: %v", query, n.Name(), err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s on %s: %d %s %v", query, n.Name(), resp.StatusCode, body, err)
	}
	return strings.TrimSpace(string(body))
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
	if err := c.Start(ctx, 1); err != nil {
		t.Fatal(err)
	}
	chHTTP(t, c.Nodes[1], "SYSTEM SYNC REPLICA default.t")
	if got := chHTTP(t, c.Nodes[1], "SELECT count() FROM default.t"); got != "15" {
		t.Errorf("the restarted replica holds %s rows, want 15", got)
	}
}
