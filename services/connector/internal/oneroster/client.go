// Package oneroster pulls a district's roster from a OneRoster 1.2 REST provider (the rostering
// service) and packs it as a OneRoster CSV package for the gateway.
//
// The provider is read with OAuth 2.0 client credentials (golang.org/x/oauth2/clientcredentials): a token
// is fetched once and reused until it expires (oauth2.Token.Valid, which leaves a margin before expiry); a 401 on a token the client still holds valid (a provider
// that revoked or rotated it) drops it and retries the request once with a new one. Collections are read
// page by page with limit and offset until the X-Total-Count the provider announces is reached (or a short
// page ends the collection when it announces none); a delta adds filter=dateLastModified>'<since>'.
// Every request has its own deadline. 5xx, 429 and network errors are Retryable; the caller retries.
package oneroster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Collections are the rostering collections pulled, in dependency order (as the gateway reads a package).
var Collections = []string{"orgs", "academicSessions", "courses", "classes", "users", "enrollments", "demographics"}

// ErrRetryable matches the errors worth retrying: the provider was unreachable, slow, or answered 5xx or
// 429.
var ErrRetryable = errors.New("retryable")

// Config is how to reach a provider.
type Config struct {
	BaseURL, TokenURL, ClientID, ClientSecret string
	// PageSize is the limit of each page; RequestTimeout bounds each request (token requests included).
	PageSize       int
	RequestTimeout time.Duration
	// HTTP is the client requests and token requests go through (nil: http.DefaultClient).
	HTTP *http.Client
}

// Client reads one provider. It is safe for concurrent use.
type Client struct {
	cfg Config
	cc  clientcredentials.Config

	mu  sync.Mutex
	tok *oauth2.Token
}

// New returns a client of the provider.
func New(cfg Config) *Client {
	if cfg.PageSize <= 0 {
		cfg.PageSize = 1000
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.HTTP == nil {
		cfg.HTTP = http.DefaultClient
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	return &Client{cfg: cfg, cc: clientcredentials.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, TokenURL: cfg.TokenURL}}
}

// token returns a valid token: the one held until it expires, a new one when there is none or fresh is set.
// Concurrent callers share one token request.
func (c *Client) token(ctx context.Context, fresh bool) (*oauth2.Token, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok != nil && c.tok.Valid() && !fresh {
		return c.tok, nil
	}
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, c.cfg.HTTP), c.cfg.RequestTimeout)
	defer cancel()
	tok, err := c.cc.Token(ctx)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 && re.Response.StatusCode != http.StatusTooManyRequests {
			return nil, fmt.Errorf("getting a token from %s: %w", c.cfg.TokenURL, err)
		}
		return nil, fmt.Errorf("getting a token from %s: %w: %w", c.cfg.TokenURL, ErrRetryable, err)
	}
	c.tok = tok
	return tok, nil
}

// Page is one page of a collection.
type Page struct {
	Records []json.RawMessage
	// Total is the provider's X-Total-Count (-1 when it sent none).
	Total int
}

// Fetch reads one page of a collection: records modified after since (all when since is zero), from
// offset.
func (c *Client) Fetch(ctx context.Context, collection string, since time.Time, offset int) (Page, error) {
	q := url.Values{"limit": {strconv.Itoa(c.cfg.PageSize)}, "offset": {strconv.Itoa(offset)}}
	if !since.IsZero() {
		q.Set("filter", "dateLastModified>'"+since.UTC().Format(time.RFC3339)+"'")
	}
	u := c.cfg.BaseURL + "/" + collection + "?" + q.Encode()
	for attempt := 0; ; attempt++ {
		tok, err := c.token(ctx, attempt > 0)
		if err != nil {
			return Page{}, err
		}
		page, status, err := c.get(ctx, u, collection, tok)
		if status == http.StatusUnauthorized && attempt == 0 {
			continue // a token the provider no longer takes: once more with a new one
		}
		return page, err
	}
}

func (c *Client) get(ctx context.Context, u, collection string, tok *oauth2.Token) (Page, int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Page{}, 0, err
	}
	req.Header.Set("Accept", "application/json")
	tok.SetAuthHeader(req)
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return Page{}, 0, fmt.Errorf("GET %s: %w: %w", u, ErrRetryable, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		err := fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(msg)))
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			err = fmt.Errorf("%w: %w", ErrRetryable, err)
		}
		return Page{}, resp.StatusCode, err
	}
	var body map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return Page{}, resp.StatusCode, fmt.Errorf("GET %s: reading the answer: %w: %w", u, ErrRetryable, err)
	}
	page := Page{Total: -1}
	if raw, ok := body[collection]; ok {
		if err := json.Unmarshal(raw, &page.Records); err != nil {
			return Page{}, resp.StatusCode, fmt.Errorf("GET %s: %q is not an array: %w", u, collection, err)
		}
	}
	if h := resp.Header.Get("X-Total-Count"); h != "" {
		n, err := strconv.Atoi(h)
		if err != nil || n < 0 {
			return Page{}, resp.StatusCode, fmt.Errorf("GET %s: X-Total-Count %q is not a count", u, h)
		}
		page.Total = n
	}
	return page, resp.StatusCode, nil
}

// PageSize is the limit of the client's pages.
func (c *Client) PageSize() int { return c.cfg.PageSize }

// All reads a whole collection (modified after since when it is not zero), page by page, calling fetch for
// each page so that the caller can retry it.
func All(ctx context.Context, pageSize int, fetch func(ctx context.Context, offset int) (Page, error)) ([]json.RawMessage, error) {
	var out []json.RawMessage
	for offset := 0; ; {
		page, err := fetch(ctx, offset)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Records...)
		offset += len(page.Records)
		if len(page.Records) == 0 || (page.Total >= 0 && offset >= page.Total) || (page.Total < 0 && len(page.Records) < pageSize) {
			return out, nil
		}
	}
}
