package obs

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Latest computes a report per district at an interval and keeps the last one of each, for gauges to
// observe (a Prometheus scrape must not wait on a district's queries). A district whose report fails
// keeps its last one, and the failure is logged; the others go on. A district no longer listed is
// dropped.
type Latest[R any] struct {
	name      string
	districts func(ctx context.Context) ([]string, error)
	compute   func(ctx context.Context, tenantID string) (R, error)
	log       *slog.Logger

	mu   sync.Mutex
	last map[string]R
}

// NewLatest returns a Latest that lists the districts with districts and computes each one's report
// with compute; name says what the reports are in logs.
func NewLatest[R any](name string, districts func(ctx context.Context) ([]string, error),
	compute func(ctx context.Context, tenantID string) (R, error), log *slog.Logger) *Latest[R] {
	return &Latest[R]{name: name, districts: districts, compute: compute, log: log, last: map[string]R{}}
}

// Collect computes every district's report once.
func (l *Latest[R]) Collect(ctx context.Context) error {
	ids, err := l.districts(ctx)
	if err != nil {
		return err
	}
	next := make(map[string]R, len(ids))
	for _, id := range ids {
		rep, err := l.compute(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			l.log.WarnContext(ctx, l.name, "tenant_id", id, "err", err)
			l.mu.Lock()
			last, ok := l.last[id]
			l.mu.Unlock()
			if !ok {
				continue
			}
			rep = last
		}
		next[id] = rep
	}
	l.mu.Lock()
	l.last = next
	l.mu.Unlock()
	return nil
}

// Run collects every interval until ctx is done.
func (l *Latest[R]) Run(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := l.Collect(ctx); err != nil && ctx.Err() == nil {
			l.log.WarnContext(ctx, l.name, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Each calls fn with every district's last report (under the lock: fn must not call Collect).
func (l *Latest[R]) Each(fn func(tenantID string, rep R)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, rep := range l.last {
		fn(id, rep)
	}
}
