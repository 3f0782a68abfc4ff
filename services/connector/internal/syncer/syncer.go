// Package syncer keeps each district's OneRoster REST sources in sync: on a schedule per source, a delta
// sync (the records modified since the source's cursor, sent as a delta package) and, on a longer one, a
// full sync (every record, sent as one bulk package, so that the gateway's import step tombstones what the
// provider no longer has).
//
// Each request to the provider or the gateway is retried with exponential backoff and jitter
// (cenkalti/backoff/v5) while its error is retryable; a sync that still fails counts against the source's
// circuit breaker (sony/gobreaker/v2), which, open, skips the source's syncs until its timeout passes and
// one sync is let through to try. Every outcome is recorded in the control schema
// (control.connector_sources: status, failures in a row, last error, cursor) and in the gauges
// connector_sync_failures and connector_last_success_timestamp_seconds.
package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/edtech-analytics/platform/libs/tenancy/connectors"
	"github.com/edtech-analytics/platform/services/connector/internal/gateway"
	"github.com/edtech-analytics/platform/services/connector/internal/oneroster"
)

// Store is what the syncer needs of the control schema (connectors.Store).
type Store interface {
	List(ctx context.Context, tenant string) ([]connectors.Source, error)
	Get(ctx context.Context, tenant, source string) (connectors.Source, error)
	Open(ctx context.Context, tenant, source string) (connectors.Secrets, error)
	Record(ctx context.Context, tenant, source string, a connectors.Attempt) (int, error)
}

// Gateway is where packages go (gateway.Client).
type Gateway interface {
	SendPackage(ctx context.Context, apiKey string, zip []byte) (gateway.Answer, error)
}

// Options tune the syncer; zero values take the defaults.
type Options struct {
	// PageSize and RequestTimeout are the provider's pages and each request's deadline.
	PageSize       int
	RequestTimeout time.Duration
	// Retry bounds the retries of one request: first interval, largest interval, tries.
	RetryInitial, RetryMax time.Duration
	RetryTries             uint
	// BreakerFailures is the syncs failed in a row that open a source's breaker; BreakerTimeout is how long
	// it stays open.
	BreakerFailures uint32
	BreakerTimeout  time.Duration
	// Overlap is subtracted from the cursor of a delta: a record modified in the same second as the newest
	// one seen, but after the provider answered, is not missed. What is sent twice the gateway's ledger
	// drops as unchanged.
	Overlap time.Duration
	// MaxConcurrent bounds the syncs Run runs at once.
	MaxConcurrent int
	// HTTP is the client of the providers (nil: http.DefaultClient).
	HTTP *http.Client
	Now  func() time.Time
}

func (o Options) withDefaults() Options {
	if o.PageSize <= 0 {
		o.PageSize = 1000
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.RetryInitial <= 0 {
		o.RetryInitial = time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 30 * time.Second
	}
	if o.RetryTries == 0 {
		o.RetryTries = 5
	}
	if o.BreakerFailures == 0 {
		o.BreakerFailures = 3
	}
	if o.BreakerTimeout <= 0 {
		o.BreakerTimeout = 5 * time.Minute
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 4
	}
	if o.Overlap < 0 {
		o.Overlap = 0
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// ErrBreakerOpen: the source's breaker is open; the sync was not tried.
var ErrBreakerOpen = errors.New("circuit breaker open")

// Syncer syncs sources. It is safe for concurrent use; syncs of one source are serialised.
type Syncer struct {
	store Store
	gw    Gateway
	log   *slog.Logger
	opt   Options

	failures    metric.Int64Gauge
	lastSuccess metric.Float64Gauge

	mu      sync.Mutex
	sources map[string]*sourceState
}

// sourceState is what the syncer keeps per source between syncs.
type sourceState struct {
	mu      sync.Mutex // one sync of the source at a time
	breaker *gobreaker.CircuitBreaker[Result]
	client  *oneroster.Client
	conf    connectors.Source // the settings client was built with
	secret  string
}

// New returns a syncer; its gauges are registered with meter.
func New(store Store, gw Gateway, log *slog.Logger, meter metric.Meter, opt Options) (*Syncer, error) {
	s := &Syncer{store: store, gw: gw, log: log, opt: opt.withDefaults(), sources: map[string]*sourceState{}}
	var err error
	if s.failures, err = meter.Int64Gauge("connector_sync_failures",
		metric.WithDescription("syncs of a connector source that failed in a row (0 after a success), by tenant_id and source_id")); err != nil {
		return nil, err
	}
	if s.lastSuccess, err = meter.Float64Gauge("connector_last_success_timestamp_seconds",
		metric.WithDescription("when a connector source last synced successfully, as a Unix time, by tenant_id and source_id"), metric.WithUnit("s")); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Syncer) state(tenant, source string) *sourceState {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := tenant + "/" + source
	st := s.sources[key]
	if st == nil {
		st = &sourceState{}
		st.breaker = gobreaker.NewCircuitBreaker[Result](gobreaker.Settings{
			Name:        key,
			Timeout:     s.opt.BreakerTimeout,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= s.opt.BreakerFailures },
			IsExcluded:  func(err error) bool { return errors.Is(err, context.Canceled) },
			OnStateChange: func(name string, from, to gobreaker.State) {
				s.log.Warn("connector breaker", "tenant_id", tenant, "source_id", source, "from", from.String(), "to", to.String())
			},
		})
		s.sources[key] = st
	}
	return st
}

// Result is what one sync did.
type Result struct {
	Full bool
	// Records counts the records fetched, by collection.
	Records map[string]int
	// Cursor is the newest dateLastModified fetched.
	Cursor time.Time
	// Sent is false when a delta found nothing to send.
	Sent   bool
	Answer gateway.Answer
}

// Sync runs one sync of a source (full or delta; a delta of a source never synced is full), through the
// source's breaker, and records its outcome.
func (s *Syncer) Sync(ctx context.Context, tenant, source string, full bool) (Result, error) {
	st := s.state(tenant, source)
	st.mu.Lock()
	defer st.mu.Unlock()
	src, err := s.store.Get(ctx, tenant, source)
	if err != nil {
		return Result{}, err
	}
	if src.Kind != connectors.KindOneRosterREST {
		return Result{}, fmt.Errorf("source %s of district %s is a %s, not pulled", source, tenant, src.Kind)
	}
	if src.Cursor == nil || src.LastFullAt == nil {
		full = true
	}
	started := s.opt.Now()
	res, err := st.breaker.Execute(func() (Result, error) { return s.sync(ctx, st, src, full) })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return Result{}, fmt.Errorf("%w: %s of district %s failed %d times in a row", ErrBreakerOpen, source, tenant, src.Failures)
	}
	if err != nil && ctx.Err() != nil {
		return res, err // stopping: not the source's failure (a success is recorded even while stopping)
	}
	attrs := metric.WithAttributes(attribute.String("tenant_id", tenant), attribute.String("source_id", source))
	cursor := res.Cursor
	if err == nil && full && cursor.IsZero() {
		// A full sync that saw no dateLastModified (no records, or a provider that sends none): the next
		// delta asks for what changed since it started.
		cursor = started
	}
	n, rerr := s.store.Record(context.WithoutCancel(ctx), tenant, source, connectors.Attempt{At: started, Full: full, Cursor: cursor, Err: err})
	if rerr != nil {
		return res, errors.Join(err, rerr)
	}
	s.failures.Record(ctx, int64(n), attrs)
	if err != nil {
		s.log.Warn("connector sync failed", "tenant_id", tenant, "source_id", source, "full", full, "failures", n, "err", err)
		return res, err
	}
	s.lastSuccess.Record(ctx, float64(started.UnixNano())/1e9, attrs)
	s.log.Info("connector sync", "tenant_id", tenant, "source_id", source, "full", full, "records", res.Records, "sent", res.Sent,
		"held", res.Answer.Held())
	return res, nil
}

// client returns the source's provider client, built again when its settings or secret changed.
func (s *Syncer) client(ctx context.Context, st *sourceState, src connectors.Source) (*oneroster.Client, string, error) {
	sec, err := s.store.Open(ctx, src.TenantID, src.SourceID)
	if err != nil {
		return nil, "", err
	}
	if st.client == nil || st.conf.BaseURL != src.BaseURL || st.conf.TokenURL != src.TokenURL || st.conf.ClientID != src.ClientID || st.secret != sec.ClientSecret {
		st.client = oneroster.New(oneroster.Config{BaseURL: src.BaseURL, TokenURL: src.TokenURL, ClientID: src.ClientID,
			ClientSecret: sec.ClientSecret, PageSize: s.opt.PageSize, RequestTimeout: s.opt.RequestTimeout, HTTP: s.opt.HTTP})
		st.conf, st.secret = src, sec.ClientSecret
	}
	return st.client, sec.APIKey, nil
}

// retry runs op with exponential backoff and jitter while its error is retryable.
func retry[T any](ctx context.Context, opt Options, op func() (T, error)) (T, error) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = opt.RetryInitial, opt.RetryMax
	return backoff.Retry(ctx, func() (T, error) {
		v, err := op()
		if err != nil && !errors.Is(err, oneroster.ErrRetryable) && !errors.Is(err, gateway.ErrRetryable) {
			return v, backoff.Permanent(err)
		}
		return v, err
	}, backoff.WithBackOff(b), backoff.WithMaxTries(opt.RetryTries), backoff.WithMaxElapsedTime(0))
}

func (s *Syncer) sync(ctx context.Context, st *sourceState, src connectors.Source, full bool) (Result, error) {
	cl, apiKey, err := s.client(ctx, st, src)
	if err != nil {
		return Result{}, err
	}
	var since time.Time
	if !full {
		since = src.Cursor.Add(-s.opt.Overlap)
	}
	res := Result{Full: full, Records: map[string]int{}}
	records := map[string][]json.RawMessage{}
	for _, c := range oneroster.Collections {
		recs, err := oneroster.All(ctx, cl.PageSize(), func(ctx context.Context, offset int) (oneroster.Page, error) {
			return retry(ctx, s.opt, func() (oneroster.Page, error) { return cl.Fetch(ctx, c, since, offset) })
		})
		if err != nil {
			return Result{}, fmt.Errorf("reading %s: %w", c, err)
		}
		res.Records[c] = len(recs)
		for _, r := range recs {
			if m := oneroster.Modified(r); m.After(res.Cursor) {
				res.Cursor = m
			}
		}
		if full || len(recs) > 0 {
			records[c] = recs
		}
	}
	if !full && len(records) == 0 {
		return res, nil
	}
	zip, err := oneroster.Package(records, full)
	if err != nil {
		return Result{}, err
	}
	res.Answer, err = retry(ctx, s.opt, func() (gateway.Answer, error) { return s.gw.SendPackage(ctx, apiKey, zip) })
	if err != nil {
		return Result{}, fmt.Errorf("sending to the gateway: %w", err)
	}
	res.Sent = true
	return res, nil
}

// Due says which sync a source needs at now: none until DeltaEvery has passed since its last attempt (a
// failing source is tried again at the delta's pace, its breaker permitting); then a full sync when it never
// had one or FullEvery has passed since the last, a delta otherwise.
func Due(src connectors.Source, now time.Time) (due, full bool) {
	if src.LastAttemptAt != nil && now.Sub(*src.LastAttemptAt) < src.DeltaEvery {
		return false, false
	}
	return true, src.LastFullAt == nil || now.Sub(*src.LastFullAt) >= src.FullEvery
}

// Run syncs every due OneRoster REST source on each tick, and a source named on trigger (a webhook) at
// once, until ctx is done. At most MaxConcurrent syncs run at a time, and one per source: a tick that finds
// its source syncing skips it, while a trigger that does is remembered and runs a delta once the sync
// ends (the change it announces may have come after the sync read the provider).
func (s *Syncer) Run(ctx context.Context, tick <-chan time.Time, trigger <-chan [2]string) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, s.opt.MaxConcurrent)
	var mu sync.Mutex
	busy, again := map[string]bool{}, map[string]bool{}
	start := func(tenant, source string, full, queue bool) {
		key := tenant + "/" + source
		mu.Lock()
		defer mu.Unlock()
		if busy[key] {
			again[key] = again[key] || queue
			return
		}
		busy[key] = true
		wg.Go(func() {
			for {
				select {
				case sem <- struct{}{}:
					if _, err := s.Sync(ctx, tenant, source, full); err != nil && ctx.Err() == nil {
						s.log.Debug("connector sync not done", "tenant_id", tenant, "source_id", source, "err", err)
					}
					<-sem
				case <-ctx.Done():
				}
				mu.Lock()
				if !again[key] || ctx.Err() != nil {
					delete(busy, key)
					delete(again, key)
					mu.Unlock()
					return
				}
				delete(again, key)
				full = false
				mu.Unlock()
			}
		})
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case t := <-trigger:
			start(t[0], t[1], false, true)
		case <-tick:
			srcs, err := s.store.List(ctx, "")
			if err != nil {
				s.log.Warn("listing connector sources", "err", err)
				continue
			}
			now := s.opt.Now()
			for _, src := range srcs {
				if src.Kind != connectors.KindOneRosterREST {
					continue
				}
				if due, full := Due(src, now); due {
					start(src.TenantID, src.SourceID, full, false)
				}
			}
		}
	}
}
