// Package webhook is the connector's POST /v1/webhooks/{source}: a source that can tell when its roster
// changed asks for a delta sync of itself at once, instead of waiting for its schedule.
//
// A request names its district in X-Edtech-Tenant and carries X-Edtech-Timestamp (Unix seconds) and
// X-Edtech-Signature: "sha256=" and the hex HMAC-SHA256, under the source's webhook key (shown once by
// `ctl connector add`), of the timestamp, a dot and the body. It is refused (401) when the signature does
// not match, when the timestamp is more than Window away from the connector's clock, or when the same
// signature was already taken within the window (a replay); a source that is not a OneRoster REST source
// of the district is refused the same way, so that the answer does not say which sources exist. An
// accepted request triggers the sync and is answered 202.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy/connectors"
	"github.com/edtech-analytics/platform/libs/ttlcache"
)

// Window is how far a request's timestamp may be from the connector's clock.
const Window = 5 * time.Minute

// MaxBody bounds a webhook's body.
const MaxBody = 64 << 10

// Headers of a webhook request.
const (
	HeaderTenant    = "X-Edtech-Tenant"
	HeaderTimestamp = "X-Edtech-Timestamp"
	HeaderSignature = "X-Edtech-Signature"
)

// Sources finds a source and its secrets (connectors.Store).
type Sources interface {
	Get(ctx context.Context, tenant, source string) (connectors.Source, error)
	Open(ctx context.Context, tenant, source string) (connectors.Secrets, error)
}

// Handler serves the webhooks.
type Handler struct {
	sources Sources
	trigger func(tenant, source string) bool
	log     *slog.Logger
	now     func() time.Time

	mu   sync.Mutex
	seen *ttlcache.Cache[string, struct{}]
}

// New returns the handler; trigger asks for a delta sync and reports whether it was taken. now is the
// clock (nil: time.Now).
func New(sources Sources, trigger func(tenant, source string) bool, log *slog.Logger, now func() time.Time) *Handler {
	if now == nil {
		now = time.Now
	}
	// Signatures are remembered for twice the window: a request is refused past the window either way.
	seen := ttlcache.New[string, struct{}](100_000, 2*Window)
	seen.SetClock(now)
	return &Handler{sources: sources, trigger: trigger, log: log, now: now, seen: seen}
}

// Sign returns the X-Edtech-Signature of a body sent at ts under key.
func Sign(key string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
	mac.Write([]byte("."))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Register adds the webhook route to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/webhooks/{source}", h.serve)
}

var errRefused = errors.New("refused")

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	tenant, source := r.Header.Get(HeaderTenant), r.PathValue("source")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		http.Error(w, "body over 64 KiB", http.StatusRequestEntityTooLarge)
		return
	}
	if reason, err := h.check(r, tenant, source, body); err != nil {
		status := http.StatusUnauthorized
		if !errors.Is(err, errRefused) {
			status = http.StatusServiceUnavailable
		}
		h.log.Warn("webhook refused", "tenant_id", tenant, "source_id", source, "reason", reason, "err", err)
		http.Error(w, reason, status)
		return
	}
	if !h.trigger(tenant, source) {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "a sync is already queued", http.StatusTooManyRequests)
		return
	}
	h.log.Info("webhook: delta sync", "tenant_id", tenant, "source_id", source)
	w.WriteHeader(http.StatusAccepted)
}

// check returns why a request is refused, or nil.
func (h *Handler) check(r *http.Request, tenant, source string, body []byte) (string, error) {
	const bad = "bad or missing signature"
	sig := r.Header.Get(HeaderSignature)
	sec, err := strconv.ParseInt(r.Header.Get(HeaderTimestamp), 10, 64)
	if tenant == "" || sig == "" || err != nil {
		return bad, errRefused
	}
	ts := time.Unix(sec, 0)
	if d := h.now().Sub(ts); d > Window || d < -Window {
		return "timestamp outside the 5 minute window", errRefused
	}
	src, err := h.sources.Get(r.Context(), tenant, source)
	if errors.Is(err, connectors.ErrNoSource) || err == nil && src.Kind != connectors.KindOneRosterREST {
		return bad, errRefused
	}
	if err != nil {
		return "unavailable", err
	}
	secrets, err := h.sources.Open(r.Context(), tenant, source)
	if err != nil {
		return "unavailable", err
	}
	want := Sign(secrets.WebhookKey, ts, body)
	if !strings.HasPrefix(sig, "sha256=") || !hmac.Equal([]byte(sig), []byte(want)) {
		return bad, errRefused
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	key := tenant + "/" + source + "/" + sig
	if _, ok := h.seen.Peek(key); ok {
		return "replayed signature", errRefused
	}
	h.seen.Put(key, struct{}{})
	return "", nil
}
