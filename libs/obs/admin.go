package obs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Health tracks liveness and readiness. A service is ready only when every named check is ready; checks
// start not ready. Call SetReady(name, false) before draining so load balancers stop sending work.
type Health struct {
	mu       sync.Mutex
	checks   map[string]bool
	degraded map[string]func() any // non-nil answers are listed by /readyz, which stays 200
}

// SetDegraded adds a report to /readyz: while report returns non-nil, a ready service answers 200 with
// status "degraded" and the report under name, saying what is wrong without taking it out of service.
func (h *Health) SetDegraded(name string, report func() any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.degraded == nil {
		h.degraded = map[string]func() any{}
	}
	h.degraded[name] = report
}

// Degraded returns the non-nil reports by name.
func (h *Health) Degraded() map[string]any {
	h.mu.Lock()
	reports := maps.Clone(h.degraded)
	h.mu.Unlock()
	out := map[string]any{}
	for name, report := range reports {
		if v := report(); v != nil {
			out[name] = v
		}
	}
	return out
}

// NewHealth returns a Health with the named checks, all not ready.
func NewHealth(checks ...string) *Health {
	h := &Health{checks: map[string]bool{}}
	for _, c := range checks {
		h.checks[c] = false
	}
	return h
}

// SetReady marks one check.
func (h *Health) SetReady(check string, ready bool) {
	h.mu.Lock()
	h.checks[check] = ready
	h.mu.Unlock()
}

// Ready reports whether every check is ready, and the names of those that are not.
func (h *Health) Ready() (bool, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var waiting []string
	for c, ok := range h.checks {
		if !ok {
			waiting = append(waiting, c)
		}
	}
	return len(waiting) == 0, waiting
}

// Register mounts /healthz, /readyz and, when metrics is non-nil, /metrics on mux.
func (h *Health) Register(mux *http.ServeMux, metrics http.Handler) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		ok, waiting := h.Ready()
		if !ok {
			sort.Strings(waiting)
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(struct {
				Status  string   `json:"status"`
				Waiting []string `json:"waiting"`
			}{"not ready", waiting})
			return
		}
		if degraded := h.Degraded(); len(degraded) > 0 {
			_ = json.NewEncoder(w).Encode(struct {
				Status   string         `json:"status"`
				Degraded map[string]any `json:"degraded"`
			}{"degraded", degraded})
			return
		}
		_, _ = w.Write([]byte(`{"status":"ready"}`))
	})
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
}

// Serve runs srv on ln until ctx is done, then shuts it down gracefully within grace.
func Serve(ctx context.Context, log *slog.Logger, srv *http.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("http server listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serving http on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down http server: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ServeAdmin listens on addr and serves health, readiness and metrics until ctx is done.
func ServeAdmin(ctx context.Context, log *slog.Logger, addr string, h *Health, metrics http.Handler) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on admin address %s: %w", addr, err)
	}
	log.Info("admin listening", "addr", ln.Addr().String())
	mux := http.NewServeMux()
	h.Register(mux, metrics)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return Serve(ctx, log, srv, ln, 5*time.Second)
}
