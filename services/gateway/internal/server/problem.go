package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
)

// Problem is an RFC 9457 problem details body, the one shape of every error answer.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Offset locates a syntax error in the body.
	Offset *int64 `json:"offset,omitempty"`
	// Errors are the field errors of a request refused as a whole (xAPI statements).
	Errors []ingest.FieldError `json:"errors,omitempty"`
}

func writeProblem(w http.ResponseWriter, status int, slug, title, detail string, retryAfter time.Duration) {
	writeProblemBody(w, Problem{Type: "/problems/" + slug, Title: title, Status: status, Detail: detail}, retryAfter)
}

func writeProblemBody(w http.ResponseWriter, p Problem, retryAfter time.Duration) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((retryAfter+time.Second-1)/time.Second)))
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
