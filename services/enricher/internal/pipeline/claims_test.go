package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/edtech-analytics/platform/libs/keyring/keyringtest"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/ingest"
	"github.com/edtech-analytics/platform/libs/tenancy/privacy"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/tenancy/timezones"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/services/enricher/internal/claims"
	"github.com/edtech-analytics/platform/services/enricher/internal/control"
	"github.com/edtech-analytics/platform/services/enricher/internal/dedup"
	"github.com/edtech-analytics/platform/services/enricher/internal/enrich"
	"github.com/edtech-analytics/platform/services/enricher/internal/identity"
	"github.com/edtech-analytics/platform/services/enricher/internal/pipeline"
	"github.com/edtech-analytics/platform/services/enricher/internal/policy"
	"github.com/edtech-analytics/platform/services/enricher/internal/roster"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
)

// faultyClaims is the shared store with faults: the first Claim is stored and then reported failed (the
// process died between claiming and committing, so the transaction aborts), and onEpoch runs before
// each read of the dedup epoch.
type faultyClaims struct {
	*claims.Store
	mu      sync.Mutex
	failed  int // ids claimed by the failed call
	onEpoch func(call int)
	calls   int
}

func (f *faultyClaims) Claim(ctx context.Context, cs []claims.Claim) ([]bool, error) {
	won, err := f.Store.Claim(ctx, cs)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil && f.failed == 0 {
		f.failed = len(cs)
		return nil, errors.New("connection lost after claiming")
	}
	return won, err
}

func (f *faultyClaims) Epoch(ctx context.Context) (int64, error) {
	f.mu.Lock()
	f.calls++
	call, hook := f.calls, f.onEpoch
	f.mu.Unlock()
	if hook != nil {
		hook(call)
	}
	return f.Store.Epoch(ctx)
}

// claimsRig is a kfake cluster, a migrated database and the enricher's parts, for pipelines that run
// until their commits reach a target.
type claimsRig struct {
	t     *testing.T
	pool  *pgxpool.Pool
	store *tenants.Store
	kcfg  kafkax.Config
	codec *records.Codec
	prod  *kafkax.Client
}

func newClaimsRig(t *testing.T, ids ...string) *claimsRig {
	ctx := t.Context()
	pool, _ := pgtest.New(t)
	if err := tenancy.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	store := tenants.New(fleet.New(pool, os.Getenv))
	for _, id := range ids {
		if _, err := store.Create(ctx, id, "District "+id); err != nil {
			t.Fatal(err)
		}
	}
	_, kcfg := kafkatest.New(t)
	prod, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "", kafkax.ProducerOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	if err := kafkax.EnsureTopics(ctx, prod.Client, 4, 1, kafkax.PlatformTopics(kcfg)); err != nil {
		t.Fatal(err)
	}
	codec, err := stream.NewCodec(ctx, kcfg)
	if err != nil {
		t.Fatal(err)
	}
	return &claimsRig{t: t, pool: pool, store: store, kcfg: kcfg, codec: codec, prod: prod}
}

// produce sends events 0..n-1 of tenant, the i-th keyed key(i).
func (r *claimsRig) produce(tenant string, n int, key func(i int) string) {
	var recs []*kgo.Record
	for i := range n {
		b, err := r.codec.Encode(rawEvent(tenant, i))
		if err != nil {
			r.t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: r.kcfg.Topics().Raw, Key: []byte(key(i)), Value: b, Timestamp: received})
	}
	if err := r.prod.ProduceSync(r.t.Context(), recs...).FirstErr(); err != nil {
		r.t.Fatal(err)
	}
}

// run runs a fresh pipeline (a new process: empty memory) until its commits add up to want records, and
// returns what they did.
func (r *claimsRig) run(shared pipeline.Claims, want int) pipeline.Stats {
	r.t.Helper()
	registry, err := control.Load(r.t.Context(), r.pool)
	if err != nil {
		r.t.Fatal(err)
	}
	districts := fleet.NewDistrictPools(fleet.New(r.pool, os.Getenv))
	enr := enrich.New(r.codec, enrich.Deps{Tenants: r.store, Policies: policy.Source{Store: privacy.New(r.pool)}, Zones: timezones.New(r.pool),
		Identities: identity.New(districts, 1000), Context: roster.New(districts, 1000), Erased: registry, Keys: keyringtest.Over(r.t, r.pool)})
	var (
		mu    sync.Mutex
		total pipeline.Stats
	)
	reached := make(chan struct{})
	p, sessions := wire(r.t, pipeline.Config{Group: "enricher",
		RetryBackoff: 10 * time.Millisecond,
		OnCommit: func(s pipeline.Stats) {
			mu.Lock()
			defer mu.Unlock()
			before := total.Enriched + total.Duplicates
			total.Enriched, total.Duplicates = total.Enriched+s.Enriched, total.Duplicates+s.Duplicates
			if before < want && total.Enriched+total.Duplicates >= want {
				close(reached)
			}
		}}, r.kcfg, kafkax.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, fmt.Sprintf("enricher-%d", time.Now().UnixNano()),
		r.codec, enr, dedup.New(48*time.Hour), shared, nil, nil, append(kafkatest.GroupOpts(), kgo.TransactionTimeout(2*time.Second))...)
	ctx, cancel := context.WithCancel(r.t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, sessions) }()
	select {
	case <-reached:
	case err := <-done:
		cancel()
		r.t.Fatalf("pipeline stopped: %v", err)
	case <-time.After(2 * time.Minute):
		cancel()
		r.t.Fatalf("pipeline did not commit %d records", want)
	}
	cancel()
	if err := <-done; err != nil {
		r.t.Fatalf("pipeline: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return total
}

// claimed is how many of tenant's ids records claimed (ids copied in at a switch not counted).
func (r *claimsRig) claimed(tenant string) int {
	var n int
	if err := r.pool.QueryRow(r.t.Context(), "SELECT count(*) FROM control.dedup_claims WHERE tenant_id = $1 AND raw_partition >= 0", tenant).Scan(&n); err != nil {
		r.t.Fatal(err)
	}
	return n
}

// TestClaimsSurviveAbortAndRestart: a hot district's ids are claimed; a transaction that aborts after its
// claims were stored is retried and its records pass on their own claims; a new process with empty
// memory then drops every copy of those events arriving under other sub-keys (other partitions), from
// the claims alone. A cool district's ids are never claimed.
func TestClaimsSurviveAbortAndRestart(t *testing.T) {
	r := newClaimsRig(t, "h1", "c1")
	if _, err := ingest.New(r.pool).SetHotShards(t.Context(), "h1", 4); err != nil {
		t.Fatal(err)
	}
	const n = 40
	r.produce("h1", n, func(i int) string { return fmt.Sprintf("h1/%d", i%4) })
	r.produce("c1", n, func(int) string { return "c1" })
	faulty := &faultyClaims{Store: claims.New(r.pool, 48*time.Hour)}
	first := r.run(faulty, 2*n)
	if faulty.failed == 0 {
		t.Fatal("no claim failed: the abort was not exercised")
	}
	if first.Enriched != 2*n || first.Duplicates != 0 {
		t.Fatalf("first run: %+v; want %d enriched, none a duplicate (own claims pass after the abort)", first, 2*n)
	}
	if got := r.claimed("h1"); got != n {
		t.Fatalf("h1 has %d claims, want %d", got, n)
	}
	if got := r.claimed("c1"); got != 0 {
		t.Fatalf("cool c1 has %d claims, want 0", got)
	}

	// A restart, then the client's retry of h1's events under other sub-keys.
	r.produce("h1", n, func(i int) string { return fmt.Sprintf("h1/%d", (i+1)%4) })
	second := r.run(claims.New(r.pool, 48*time.Hour), n)
	if second.Enriched != 0 || second.Duplicates != n {
		t.Fatalf("after restart: %+v; want all %d copies dropped", second, n)
	}
	counts, _, _ := readBack(t, r.kcfg, r.codec)
	if len(counts) != 2*n {
		t.Fatalf("enriched holds %d events, want %d", len(counts), 2*n)
	}
	for id, c := range counts {
		if c != 1 {
			t.Fatalf("%s enriched %d times", id, c)
		}
	}
}

// TestSwitchDuringBatchIsRetriedShared: a district turns hot while a batch judged it cool is open; the
// batch sees the change before committing, aborts, and is judged again in shared mode: the ids are
// claimed, so copies on the district's new sub-keys are dropped.
func TestSwitchDuringBatchIsRetriedShared(t *testing.T) {
	r := newClaimsRig(t, "c1")
	const n = 30
	r.produce("c1", n, func(int) string { return "c1" })
	faulty := &faultyClaims{Store: claims.New(r.pool, 48*time.Hour)}
	faulty.failed = -1 // no failing claim here
	faulty.onEpoch = func(call int) {
		if call == 2 { // the check after the first batch was flushed (the first read is before it)
			if _, err := ingest.New(r.pool).SetHotShards(context.Background(), "c1", 4); err != nil {
				t.Error(err)
			}
		}
	}
	first := r.run(faulty, n)
	if first.Enriched != n {
		t.Fatalf("first run: %+v", first)
	}
	if got := r.claimed("c1"); got != n {
		t.Fatalf("c1's records claimed %d ids after it turned hot mid-batch, want %d (a batch committed as cool)", got, n)
	}
	r.produce("c1", n, func(i int) string { return fmt.Sprintf("c1/%d", i%4) })
	if second := r.run(claims.New(r.pool, 48*time.Hour), n); second.Duplicates != n {
		t.Fatalf("copies after the switch: %+v; want all %d dropped", second, n)
	}
}
