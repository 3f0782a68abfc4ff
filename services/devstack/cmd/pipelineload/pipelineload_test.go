package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestIDsAreUniqueUUIDs(t *testing.T) {
	a, b := &ids{prefix: 0x0123456789abcdef}, &ids{prefix: 0x0fedcba987654321}
	seen := map[string]bool{}
	for range 10_000 {
		for _, g := range []*ids{a, b} {
			id := g.uuid()
			u, err := uuid.Parse(id)
			if err != nil || u.Version() != 4 || u.Variant() != uuid.RFC4122 {
				t.Fatalf("%q is not a version 4 UUID: %v", id, err)
			}
			if seen[id] {
				t.Fatalf("%s handed out twice", id)
			}
			seen[id] = true
		}
	}
	// Both halves vary from id to id (ClickHouse hashes a UUID's halves; a constant half makes uniqExact crawl).
	his, los := map[string]bool{}, map[string]bool{}
	for range 1000 {
		id := strings.ReplaceAll(a.uuid(), "-", "")
		his[id[:16]], los[id[16:]] = true, true
	}
	if len(his) != 1000 || len(los) != 1000 {
		t.Fatalf("of 1,000 ids, %d distinct high halves and %d low halves", len(his), len(los))
	}
}

func TestTemplatesRewriteEveryEventID(t *testing.T) {
	ds := []district{{id: "d_0", key: "k0"}, {id: "d_1", key: "k1"}}
	tpls, err := templates(ds, 100)
	if err != nil {
		t.Fatal(err)
	}
	if tpls[0].district == tpls[1].district {
		t.Fatal("districts are not interleaved")
	}
	g := &ids{prefix: 42}
	seen := map[string]bool{}
	for _, tp := range tpls {
		buf := bytes.Clone(tp.body)
		for _, at := range tp.idAt {
			g.put(buf[at : at+36])
		}
		var body struct {
			Events []struct {
				EventID string `json:"event_id"`
			} `json:"events"`
		}
		if err := json.Unmarshal(buf, &body); err != nil {
			t.Fatalf("a rewritten body is not JSON: %v", err)
		}
		if len(body.Events) != len(tp.idAt) {
			t.Fatalf("%d events, %d ids found", len(body.Events), len(tp.idAt))
		}
		for _, e := range body.Events {
			if seen[e.EventID] {
				t.Fatalf("event id %s sent twice", e.EventID)
			}
			seen[e.EventID] = true
		}
	}
}

func TestCountsAreExactOnlyWhenEveryStoreHoldsEachEventOnce(t *testing.T) {
	exact := counts{chEvents: 10, chUnique: 10, chRollup: 10, pgEvents: 10}
	for _, tt := range []struct {
		name string
		c    counts
		want bool
	}{
		{"exact", exact, true},
		{"a duplicate row in ClickHouse", counts{chEvents: 11, chUnique: 10, chRollup: 11, pgEvents: 10}, false},
		{"a duplicate in the rollup only", counts{chEvents: 10, chUnique: 10, chRollup: 11, pgEvents: 10}, false},
		{"counted twice in PostgreSQL", counts{chEvents: 10, chUnique: 10, chRollup: 10, pgEvents: 11}, false},
		{"one lost", counts{chEvents: 9, chUnique: 9, chRollup: 9, pgEvents: 10}, false},
	} {
		if got := tt.c.exact(10); got != tt.want {
			t.Errorf("%s: exact = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestFlagsRefuseAnythingButLoopback(t *testing.T) {
	for _, args := range [][]string{
		{"-target", "http://10.0.0.1:8080", "-database-url", "postgres://127.0.0.1/x", "-clickhouse-addr", "127.0.0.1:9000"},
		{"-target", "http://127.0.0.1:8080", "-database-url", "postgres://db.example.com/x", "-clickhouse-addr", "127.0.0.1:9000"},
		{"-target", "http://127.0.0.1:8080", "-database-url", "postgres://127.0.0.1/x", "-clickhouse-addr", "ch:9000"},
		{"-target", "http://127.0.0.1:8080"},
		{"-mode", "rate"},
		{"-duration", "11m"},
	} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	if _, err := parseFlags([]string{"-target", "http://localhost:8080", "-database-url", "postgres://u@[::1]:5432/x", "-clickhouse-addr", "127.0.0.1:9000"}); err != nil {
		t.Errorf("loopback target refused: %v", err)
	}
}

// TestRunMeasuresTheWholePlatform runs the tool as `pipelineload` does, briefly: the platform in this
// process on fresh databases, a warm-up, a second of load with markers, and the exact check of both stores.
func TestRunMeasuresTheWholePlatform(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole platform")
	}
	cfg, err := parseFlags([]string{"-duration", "1s", "-drain", "3m", "-districts", "2", "-workers", "2", "-batch", "50",
		"-markers", "10", "-poll", "20ms", "-partitions", "2"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := run(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.accepted == 0 || !rep.counts.exact(rep.want) || rep.total <= 0 {
		t.Fatalf("accepted %d, want %d in the stores, counted %s", rep.accepted, rep.want, rep.counts)
	}
	if len(rep.freshCH) == 0 || len(rep.freshCH) != len(rep.freshPG) {
		t.Fatalf("freshness of %d and %d markers", len(rep.freshCH), len(rep.freshPG))
	}
	out := rep.String()
	for _, want := range []string{"end to end:", "exact:", "freshness:", "enricher", "aggregator", "sink", "gateway", "ClickHouse server"} {
		if !strings.Contains(out, want) {
			t.Errorf("the report has no %q:\n%s", want, out)
		}
	}
}
