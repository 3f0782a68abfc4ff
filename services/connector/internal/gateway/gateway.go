// Package gateway sends what the connector fetched to the gateway's roster API: a OneRoster CSV package
// to POST /v1/roster/csv, or a source's own export to POST /v1/sources/{source}/uploads, with the source's
// API key. The gateway's import step does the rest (bulk semantics, the safety hold, the quality gate).
package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// ErrRetryable matches the answers worth retrying: the gateway was unreachable, or answered 5xx or 429.
var ErrRetryable = errors.New("retryable")

// Client posts to one gateway.
type Client struct {
	base string
	http *http.Client
}

// New returns a client of the gateway at base (e.g. http://gateway:8080); hc nil is http.DefaultClient.
func New(base string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(base, "/"), http: hc}
}

// Answer is the gateway's answer to an upload.
type Answer struct {
	Status int
	// Upload is the answer's "upload" object: what the import step did (its "status" is "held" when the
	// upload waits for an operator).
	Upload json.RawMessage
	// Body is the whole answer, kept as the report of a dropped file.
	Body []byte
}

// Held reports whether the import step held the upload.
func (a Answer) Held() bool {
	var u struct {
		Status string `json:"status"`
	}
	return json.Unmarshal(a.Upload, &u) == nil && u.Status == "held"
}

// SendPackage posts a OneRoster CSV package.
func (c *Client) SendPackage(ctx context.Context, apiKey string, zip []byte) (Answer, error) {
	return c.post(ctx, apiKey, c.base+"/v1/roster/csv", "application/zip", zip)
}

// SendExport posts a source's own export (a CSV, JSON or zip file named name) to be mapped by the
// source's rules; bulk makes each file its entity's whole truth.
func (c *Client) SendExport(ctx context.Context, apiKey, source, name, contentType string, body []byte, bulk bool) (Answer, error) {
	q := url.Values{"file": {name}}
	if bulk {
		q.Set("mode", "bulk")
	}
	return c.post(ctx, apiKey, c.base+"/v1/sources/"+url.PathEscape(source)+"/uploads?"+q.Encode(), contentType, body)
}

func (c *Client) post(ctx context.Context, apiKey, u, contentType string, body []byte) (Answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return Answer{}, err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := c.http.Do(req)
	if err != nil {
		return Answer{}, fmt.Errorf("POST %s: %w: %w", req.URL.Path, ErrRetryable, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Answer{}, fmt.Errorf("POST %s: reading the answer: %w: %w", req.URL.Path, ErrRetryable, err)
	}
	a := Answer{Status: resp.StatusCode, Body: b}
	if resp.StatusCode/100 != 2 {
		err := fmt.Errorf("POST %s: %s: %s", req.URL.Path, resp.Status, strings.TrimSpace(string(b)))
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			err = fmt.Errorf("%w: %w", ErrRetryable, err)
		}
		return a, err
	}
	var v struct {
		Upload json.RawMessage `json:"upload"`
	}
	_ = json.Unmarshal(b, &v)
	a.Upload = v.Upload
	return a, nil
}
