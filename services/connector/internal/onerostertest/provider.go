// Package onerostertest is a OneRoster 1.2 REST provider for tests, built from the spec: an OAuth 2.0
// token endpoint (client credentials), the rostering collections paged with limit and offset and counted
// by X-Total-Count, the dateLastModified filter; and what tests break it with: revoked tokens (401),
// 500s, answers that never come until the request is given up. And a gateway stub that unpacks the
// OneRoster CSV packages it is sent.
package onerostertest

import (
	"archive/zip"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BasePath is the provider's rostering base under its URL.
const BasePath = "/ims/oneroster/rostering/v1p2"

// Provider is a OneRoster 1.2 REST provider on loopback.
type Provider struct {
	*httptest.Server
	ClientID, ClientSecret string

	mu     sync.Mutex
	data   map[string][]map[string]any
	tokens map[string]bool
	issued int
	fail   int  // answer 500 to this many more collection requests (-1: all)
	hang   bool // collection requests wait until the client gives up
	reqs   []string
}

// NewProvider starts a provider, closed when the test ends.
func NewProvider(t testing.TB) *Provider {
	p := &Provider{ClientID: "cid", ClientSecret: "csecret", data: map[string][]map[string]any{}, tokens: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", p.token)
	mux.HandleFunc("GET "+BasePath+"/{collection}", p.collection)
	p.Server = httptest.NewServer(mux)
	t.Cleanup(p.Close)
	return p
}

// BaseURL is the rostering base URL; TokenURL the token endpoint.
func (p *Provider) BaseURL() string  { return p.URL + BasePath }
func (p *Provider) TokenURL() string { return p.URL + "/token" }

// Put adds or replaces records of a collection (by sourcedId).
func (p *Provider) Put(collection string, recs ...map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range recs {
		i := slices.IndexFunc(p.data[collection], func(x map[string]any) bool { return x["sourcedId"] == r["sourcedId"] })
		if i < 0 {
			p.data[collection] = append(p.data[collection], r)
		} else {
			p.data[collection][i] = r
		}
	}
}

// Delete removes a record, as a provider that no longer has it.
func (p *Provider) Delete(collection, id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.data[collection] = slices.DeleteFunc(p.data[collection], func(x map[string]any) bool { return x["sourcedId"] == id })
}

// RevokeTokens makes every token issued so far answer 401.
func (p *Provider) RevokeTokens() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.tokens)
}

// Fail makes the next n collection requests answer 500 (-1: every one until Fail(0)).
func (p *Provider) Fail(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = n
}

// Hang makes collection requests wait for the client to give up.
func (p *Provider) Hang(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hang = on
}

// Issued is the number of tokens issued.
func (p *Provider) Issued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.issued
}

// Requests returns the collection requests received (path and query), and forgets them.
func (p *Provider) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.reqs
	p.reqs = nil
	return r
}

func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostFormValue("client_id"), r.PostFormValue("client_secret")
	}
	if r.PostFormValue("grant_type") != "client_credentials" || id != p.ClientID || secret != p.ClientSecret {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"invalid_client"}`)
		return
	}
	p.mu.Lock()
	p.issued++
	tok := fmt.Sprintf("tok-%d", p.issued)
	p.tokens[tok] = true
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "bearer", "expires_in": 3600})
}

func (p *Provider) collection(w http.ResponseWriter, r *http.Request) {
	collection := r.PathValue("collection")
	p.mu.Lock()
	p.reqs = append(p.reqs, r.URL.Path+"?"+r.URL.RawQuery)
	auth, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	valid := p.tokens[auth]
	hang := p.hang
	fail := p.fail != 0
	if fail && p.fail > 0 {
		p.fail--
	}
	recs := slices.Clone(p.data[collection])
	p.mu.Unlock()
	switch {
	case !valid:
		http.Error(w, `{"imsx_codeMajor":"failure","imsx_description":"invalid token"}`, http.StatusUnauthorized)
		return
	case hang:
		<-r.Context().Done()
		return
	case fail:
		http.Error(w, "provider down", http.StatusInternalServerError)
		return
	}
	q := r.URL.Query()
	if f := q.Get("filter"); f != "" {
		v, ok := strings.CutPrefix(f, "dateLastModified>'")
		since, err := time.Parse(time.RFC3339, strings.TrimSuffix(v, "'"))
		if !ok || err != nil || !strings.HasSuffix(v, "'") {
			http.Error(w, "unsupported filter "+f, http.StatusBadRequest)
			return
		}
		recs = slices.DeleteFunc(recs, func(x map[string]any) bool {
			m, _ := time.Parse(time.RFC3339, x["dateLastModified"].(string))
			return !m.After(since)
		})
	}
	limit, offset := 100, 0
	if v := q.Get("limit"); v != "" {
		limit, _ = strconv.Atoi(v)
	}
	if v := q.Get("offset"); v != "" {
		offset, _ = strconv.Atoi(v)
	}
	total := len(recs)
	recs = recs[min(offset, total):min(offset+limit, total)]
	if recs == nil {
		recs = []map[string]any{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Total-Count", strconv.Itoa(total))
	_ = json.NewEncoder(w).Encode(map[string]any{collection: recs})
}

// Package is a OneRoster CSV package the gateway stub received.
type Package struct {
	APIKey string
	// Modes are the manifest's file.* entries; Files the rows of each CSV file, by column.
	Modes map[string]string
	Files map[string][]map[string]string
}

// Gateway is a stub of the gateway's POST /v1/roster/csv and POST /v1/sources/{source}/uploads.
type Gateway struct {
	*httptest.Server
	mu       sync.Mutex
	packages []Package
	uploads  []Upload
	fail     int
	received chan struct{}
	hold     chan struct{} // non-nil: requests wait until it is closed
	arrived  chan struct{}
}

// Hold makes the stub's next requests wait, signalling Arrived as each comes in, until release is
// called.
func (g *Gateway) Hold() (release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	h := make(chan struct{})
	g.hold = h
	return func() {
		g.mu.Lock()
		g.hold = nil
		g.mu.Unlock()
		close(h)
	}
}

// Arrived is signalled when a request arrives while the stub holds requests.
func (g *Gateway) Arrived() <-chan struct{} { return g.arrived }

func (g *Gateway) wait(r *http.Request) {
	g.mu.Lock()
	h := g.hold
	g.mu.Unlock()
	if h == nil {
		return
	}
	g.arrived <- struct{}{}
	select {
	case <-h:
	case <-r.Context().Done():
	}
}

// Received is signalled (without blocking) on every package or upload the stub takes.
func (g *Gateway) Received() <-chan struct{} { return g.received }

func (g *Gateway) signal() {
	select {
	case g.received <- struct{}{}:
	default:
	}
}

// Upload is a mapped export the stub received.
type Upload struct {
	APIKey, Source, File, Mode string
	Body                       []byte
}

// NewGateway starts a gateway stub, closed when the test ends.
func NewGateway(t testing.TB) *Gateway {
	g := &Gateway{received: make(chan struct{}, 16), arrived: make(chan struct{}, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/roster/csv", func(w http.ResponseWriter, r *http.Request) {
		g.wait(r)
		if g.failing() {
			http.Error(w, `{"title":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		pkg, err := unpack(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		pkg.APIKey, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		g.mu.Lock()
		g.packages = append(g.packages, pkg)
		g.mu.Unlock()
		g.signal()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"accepted":1,"upload":{"id":"u1","status":"sent"}}`)
	})
	mux.HandleFunc("POST /v1/sources/{source}/uploads", func(w http.ResponseWriter, r *http.Request) {
		if g.failing() {
			http.Error(w, `{"title":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		key, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		u := Upload{APIKey: key, Source: r.PathValue("source"), File: r.URL.Query().Get("file"), Mode: r.URL.Query().Get("mode"), Body: body}
		if bytes.Contains(body, []byte("REJECT")) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"title":"no mapping rule matches the file"}`)
			return
		}
		g.mu.Lock()
		g.uploads = append(g.uploads, u)
		g.mu.Unlock()
		g.signal()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"accepted":1,"upload":{"id":"u2","status":"sent"}}`)
	})
	g.Server = httptest.NewServer(mux)
	t.Cleanup(g.Close)
	return g
}

func (g *Gateway) failing() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fail > 0 {
		g.fail--
		return true
	}
	return false
}

// Fail makes the next n requests answer 503.
func (g *Gateway) Fail(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fail = n
}

// Packages returns the packages received so far.
func (g *Gateway) Packages() []Package {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.packages)
}

// Uploads returns the mapped exports received so far.
func (g *Gateway) Uploads() []Upload {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.uploads)
}

func unpack(body []byte) (Package, error) {
	zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		return Package{}, err
	}
	pkg := Package{Modes: map[string]string{}, Files: map[string][]map[string]string{}}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			return Package{}, err
		}
		rows, err := csv.NewReader(rc).ReadAll()
		_ = rc.Close()
		if err != nil || len(rows) == 0 {
			return Package{}, fmt.Errorf("%s: %v", f.Name, err)
		}
		if f.Name == "manifest.csv" {
			for _, r := range rows[1:] {
				if name, ok := strings.CutPrefix(r[0], "file."); ok {
					pkg.Modes[name] = r[1]
				}
			}
			continue
		}
		var out []map[string]string
		for _, r := range rows[1:] {
			m := map[string]string{}
			for i, c := range rows[0] {
				if r[i] != "" {
					m[c] = r[i]
				}
			}
			out = append(out, m)
		}
		pkg.Files[strings.TrimSuffix(f.Name, ".csv")] = out
	}
	return pkg, nil
}
