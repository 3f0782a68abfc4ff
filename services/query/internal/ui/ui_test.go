package ui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/services/query/internal/auth"
)

// TestVendoredFilesAreThePinnedOnes checks the vendored charting library against the hashes its
// VENDOR.md records from the pinned npm package.
func TestVendoredFilesAreThePinnedOnes(t *testing.T) {
	notes, err := assets.ReadFile("assets/vendor/uplot/VENDOR.md")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, line := range strings.Split(string(notes), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "sha256" {
			continue
		}
		b, err := assets.ReadFile("assets/vendor/uplot/" + f[2])
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != f[1] {
			t.Errorf("%s: sha256 %x, VENDOR.md pins %s", f[2], sum, f[1])
		}
		checked++
	}
	if checked != 3 {
		t.Fatalf("VENDOR.md pins %d files, want 3", checked)
	}
}

// resolver knows one token.
type resolver struct{}

func (resolver) Resolve(_ context.Context, credential string) (auth.Principal, error) {
	if credential == "edt_good" {
		return auth.Principal{TenantID: "d1", Role: "teacher", TeacherID: "t1"}, nil
	}
	return auth.Principal{}, auth.ErrUnauthenticated
}

func server(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	New(slog.New(slog.DiscardHandler), resolver{}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// answer is a response, read and closed.
type answer struct {
	StatusCode int
	Header     http.Header
	body       []byte
	cookies    []*http.Cookie
}

func (a answer) Cookies() []*http.Cookie { return a.cookies }

func do(t *testing.T, client *http.Client, req *http.Request) answer {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{StatusCode: resp.StatusCode, Header: resp.Header, body: body, cookies: resp.Cookies()}
}

// TestSignInKeepsTheTokenInAStrictCookie proves the session's rules without a browser: the sign-in sets
// the token in a Secure, HttpOnly, SameSite=Strict cookie and sends the browser to /ui/; a bad token is
// answered on the sign-in page; a form posted from another origin is refused; pages without a session
// go to the sign-in page; sign-out clears the cookie; every answer carries the security headers.
func TestSignInKeepsTheTokenInAStrictCookie(t *testing.T) {
	srv := server(t)
	client := &http.Client{CheckRedirect: noRedirect}
	post := func(path, origin string, form url.Values) answer {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+path, strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		return do(t, client, req)
	}
	resp := post("/ui/login", srv.URL, url.Values{"token": {"edt_good"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("sign-in: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var c *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == auth.SessionCookie {
			c = k
		}
	}
	if c == nil || c.Value != "edt_good" || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.MaxAge <= 0 {
		t.Fatalf("session cookie %+v", c)
	}
	if loc := resp.Header.Get("Location"); strings.Contains(loc, "edt_") {
		t.Fatalf("the token is in a URL: %s", loc)
	}

	resp = post("/ui/login", srv.URL, url.Values{"token": {"edt_bad"}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(resp.body), `role="alert"`) || len(resp.Cookies()) != 0 {
		t.Errorf("a bad token: %d, cookies %v, %s", resp.StatusCode, resp.Cookies(), resp.body)
	}
	if resp := post("/ui/login", "https://evil.example", url.Values{"token": {"edt_good"}}); resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Errorf("a sign-in posted from another origin: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}

	get := func(path string, cookie *http.Cookie) answer {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cookie != nil {
			req.AddCookie(cookie)
		}
		return do(t, client, req)
	}
	for _, path := range []string{"/ui/", "/ui/district", "/ui/classes/c1"} {
		if resp := get(path, nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
			t.Errorf("%s signed out: %d to %q", path, resp.StatusCode, resp.Header.Get("Location"))
		}
		if resp := get(path, &http.Cookie{Name: auth.SessionCookie, Value: "edt_revoked"}); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("%s with a dead session: %d", path, resp.StatusCode)
		}
		resp := get(path, c)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("%s signed in: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
	}
	if resp := get("/ui/session", c); resp.StatusCode != http.StatusOK {
		t.Errorf("session: %d", resp.StatusCode)
	}
	for path, ctype := range map[string]string{"/ui/assets/app.js": "text/javascript", "/ui/assets/app.css": "text/css",
		"/ui/assets/vendor/uplot/uPlot.iife.min.js": "text/javascript"} {
		if resp := get(path, nil); resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) ||
			resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: %d %q", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}

	resp = post("/ui/logout", srv.URL, nil)
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 || resp.Cookies()[0].MaxAge >= 0 {
		t.Errorf("sign-out: %d, cookies %+v", resp.StatusCode, resp.Cookies())
	}
}
