package stack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"

	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/tenancy/ingest"
	"github.com/edtech-analytics/platform/libs/testenv/sampledata"
	"github.com/edtech-analytics/platform/services/devstack/internal/stack"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// enricherGroup is the enricher's consumer group in the stack (its default).
const enricherGroup = "edtech-enricher"

// TestRetryAfterHotSwitchIsCountedOnce runs the whole platform and, for one district per case, sends a
// batch through the gateway, changes how the gateway keys the district's records (cool to hot with 4
// shards, hot to cool, 4 shards to 2; and cool to hot, or 4 shards to 2, while a second enricher joins or
// leaves the group), waits until the gateway keys a probe event the new way, and sends the same batch
// again. The copies land on other raw partitions than the first ones; ClickHouse must hold each event id
// once and PostgreSQL must count each event once.
func TestRetryAfterHotSwitchIsCountedOnce(t *testing.T) {
	t.Setenv("GATEWAY_TENANT_REFRESH", "100ms") // how often the gateway reloads settings; the test waits for the effect
	ctx := context.Background()
	tel := &obs.Telemetry{Tracer: tracenoop.NewTracerProvider(), Meter: noop.NewMeterProvider(), Propagator: propagation.TraceContext{}}
	st, pgURL, chAddr, chDB := testStack(t, tel, slog.New(slog.NewTextHandler(io.Discard, nil)))

	admin := openPG(t, pgURL)
	ch := openCH(t, chAddr, chDB)
	codec, err := stream.NewCodec(ctx, st.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name          string
		before, after int    // hot shards for the first send, and for the resend
		between       func() // what else happens between the two sends
	}{
		{name: "cool to hot", before: 0, after: 4},
		{name: "hot to cool", before: 4, after: 0},
		{name: "4 shards to 2", before: 4, after: 2},
		{name: "cool to hot while an enricher joins", before: 0, after: 4, between: func() {
			if err := st.StartService(stack.Enricher + "-2"); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "the second enricher to get partitions", func() bool { return enrichersWithPartitions(t, st.Kafka) == 2 })
		}},
		{name: "4 shards to 2 while an enricher leaves", before: 4, after: 2, between: func() {
			if err := st.StopService(stack.Enricher + "-2"); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "one enricher to hold every partition", func() bool { return enrichersWithPartitions(t, st.Kafka) == 1 })
		}},
	}
	ids := make([]string, len(cases))
	for i := range cases {
		ids[i] = "hs" + strconv.Itoa(i+1)
	}
	keys, all, bodies, owners := seedDistricts(t, admin, ids, 500, func(i int, id string) sampledata.Spec {
		return sampledata.Spec{TenantID: id, Schools: 1, ClassesPerSchool: 2, StudentsPerClass: 6, Days: 1, EventsPerStudent: 4,
			Start: time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC), Seed: uint64(40 + i)}
	})
	for i, c := range cases {
		tenant := ids[i]
		t.Run(c.name, func(t *testing.T) {
			probes := 0
			probe := func(shards int) {
				probes += awaitKeying(t, st, codec, keys[tenant], tenant, shards)
			}
			if c.before > 0 {
				if _, err := ingest.New(admin).SetHotShards(ctx, tenant, c.before); err != nil {
					t.Fatal(err)
				}
				probe(c.before)
			}
			send := func() {
				for j, body := range bodies {
					if owners[j] == tenant {
						if a := post(t, st.GatewayURL, keys[tenant], body); len(a.Rejected) > 0 {
							t.Fatalf("batch of %s: %d events rejected", tenant, len(a.Rejected))
						}
					}
				}
			}
			send()
			// The first copies are enriched and committed before the switch, as when a client's retry
			// comes late: only what the enricher remembers can catch the copies.
			waitEnricherCommitted(t, st.Kafka)
			if _, err := ingest.New(admin).SetHotShards(ctx, tenant, c.after); err != nil {
				t.Fatal(err)
			}
			if c.between != nil {
				c.between()
			}
			probe(c.after)
			send() // the client's retry of the whole batch

			// The retry really moved: some event's two copies are on different raw partitions.
			parts := map[string]map[int32]bool{}
			for _, r := range readTopic(t, st.Kafka, st.Kafka.Topics().Raw) {
				var ev records.RawEvent
				if err := codec.Decode(r.Value, &ev); err != nil || ev.TenantID != tenant {
					continue
				}
				if parts[ev.EventID] == nil {
					parts[ev.EventID] = map[int32]bool{}
				}
				parts[ev.EventID][r.Partition] = true
			}
			moved := 0
			for _, ev := range all[tenant] {
				if len(parts[ev.EventID]) > 1 {
					moved++
				}
			}
			if moved == 0 {
				t.Fatalf("no event of %s was resent to another raw partition; the case proves nothing", tenant)
			}

			want := len(all[tenant]) + probes
			assertCountedOnce(t, st, codec, ch, admin, tenant, want)
			t.Logf("%s: %d events (%d resent to another partition, %d probes) counted once", tenant, want, moved, probes)
		})
	}
}

// awaitKeying posts probe events of the district until the gateway keys one the way its settings now say
// (tenant alone, or tenant/shard by student over shards sub-keys), and returns how many it posted (each is
// an accepted event, counted like the others).
func awaitKeying(t *testing.T, st *stack.Stack, codec *records.Codec, key, tenant string, shards int) int {
	t.Helper()
	// A probe student whose sub-key differs under 2 and 4 shards, so that every switch changes its key.
	sis := ""
	for i := 0; sis == ""; i++ {
		if s := "probe-" + strconv.Itoa(i); shardOf(s, 4) >= 2 {
			sis = s
		}
	}
	want := tenant
	if shards > 0 {
		want = tenant + "/" + strconv.Itoa(shardOf(sis, shards))
	}
	n := 0
	waitUntil(t, fmt.Sprintf("the gateway to key %s's records %q", tenant, want), func() bool {
		n++
		id := fmt.Sprintf("0b0b0b0b-0000-4000-8000-%012d", time.Now().UnixNano()%1_000_000_000_000)
		body, err := json.Marshal(map[string]any{"events": []sampledata.Event{{EventID: id, Type: "assessment_result",
			OccurredAt: "2026-11-16T09:00:00Z", Actor: sampledata.Actor{SISID: sis, Role: "student"}, SchoolID: tenant + "-school-000",
			Payload: map[string]any{"assessment_id": "probe", "score": 5.0, "max_score": 10.0}}}})
		if err != nil {
			t.Fatal(err)
		}
		if a := post(t, st.GatewayURL, key, body); a.Accepted != 1 {
			t.Fatalf("probe not accepted: %+v", a)
		}
		for _, r := range readTopic(t, st.Kafka, st.Kafka.Topics().Raw) {
			var ev records.RawEvent
			if err := codec.Decode(r.Value, &ev); err == nil && ev.EventID == id {
				return string(r.Key) == want
			}
		}
		t.Fatalf("probe %s accepted but not in raw", id)
		return false
	})
	return n
}

// shardOf is the gateway's choice of sub-key for a student: FNV-1a (32-bit) of the SIS id, modulo n.
func shardOf(sisID string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(sisID)) // writes to a hash never fail
	return int(h.Sum32() % uint32(n))
}

// assertCountedOnce waits until the enricher group has committed every raw record, then checks that
// enriched holds each of the district's want events once, that both stores reach exactly want events
// (never more), and that ClickHouse holds one row per event id.
func assertCountedOnce(t *testing.T, st *stack.Stack, codec *records.Codec, ch driver.Conn, pg *pgxpool.Pool, tenant string, want int) {
	t.Helper()
	waitEnricherCommitted(t, st.Kafka)
	copies := map[string]int{}
	for _, r := range readTopic(t, st.Kafka, st.Kafka.Topics().Enriched) {
		var ev records.EnrichedEvent
		if err := codec.Decode(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.TenantID == tenant {
			copies[ev.EventID]++
		}
	}
	total := 0
	for _, n := range copies {
		total += n
	}
	if len(copies) != want || total != want {
		t.Fatalf("%s: enriched holds %d records of %d event ids, want %d once each", tenant, total, len(copies), want)
	}
	where := " FROM events WHERE tenant_id = '" + tenant + "'"
	waitUntil(t, tenant+"'s events in both stores", func() bool {
		chN, pgN := countCH(t, ch, "SELECT count()"+where), sumPG(t, pg, tenant)
		if chN > uint64(want) || pgN > int64(want) {
			t.Fatalf("%s double counted: ClickHouse holds %d events, PostgreSQL counts %d, want %d", tenant, chN, pgN, want)
		}
		return chN == uint64(want) && pgN == int64(want)
	})
	if n := countCH(t, ch, "SELECT uniqExact(event_id)"+where); n != uint64(want) {
		t.Fatalf("%s: ClickHouse holds %d distinct event ids, want %d", tenant, n, want)
	}
}

// waitEnricherCommitted waits until the enricher group has committed every record raw holds now.
func waitEnricherCommitted(t *testing.T, kcfg kafkax.Config) {
	t.Helper()
	raw := kcfg.Topics().Raw
	cl, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl.Client)
	ends, err := adm.ListEndOffsets(t.Context(), raw)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the enricher to commit every raw record", func() bool {
		committed, err := adm.FetchOffsets(t.Context(), enricherGroup)
		if err != nil {
			return false
		}
		done := true
		ends.Each(func(o kadm.ListedOffset) {
			if c, ok := committed.Lookup(raw, o.Partition); o.Offset > 0 && (!ok || c.At < o.Offset) {
				done = false
			}
		})
		return done
	})
}

// enrichersWithPartitions is the number of members of the enricher group that hold raw partitions, once
// the group is stable (0 while it rebalances).
func enrichersWithPartitions(t *testing.T, kcfg kafkax.Config) int {
	t.Helper()
	cl, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	groups, err := kadm.NewClient(cl.Client).DescribeGroups(t.Context(), enricherGroup)
	if err != nil {
		return 0
	}
	g, ok := groups[enricherGroup]
	if !ok || g.Err != nil || g.State != "Stable" {
		return 0
	}
	n := 0
	for _, m := range g.Members {
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, tp := range a.Topics {
				if tp.Topic == kcfg.Topics().Raw && len(tp.Partitions) > 0 {
					n++
					break
				}
			}
		}
	}
	return n
}
