// Package ui serves the web dashboards at /ui/: a sign-in page that takes a dashboard token and keeps it
// in a Secure, HttpOnly, SameSite=Strict cookie (auth.SessionCookie), and one page shell whose script
// draws the district, school, class, student and benchmark pages from the dashboard API (/v1/...), which
// takes the same cookie. Every number a page shows is what the API answered the signed-in token, so the
// pages have exactly the API's scopes. Every asset is embedded: the pages work with no network beyond
// the service itself.
package ui

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/services/query/internal/auth"
)

//go:embed assets
var assets embed.FS

// Resolver authenticates a dashboard token (auth.Resolver).
type Resolver interface {
	Resolve(ctx context.Context, credential string) (auth.Principal, error)
}

// SessionTTL is how long a sign-in lasts in the browser (the token's own expiry and revocation still
// apply to every request).
const SessionTTL = 12 * time.Hour

// UI serves the pages.
type UI struct {
	log  *slog.Logger
	auth Resolver
}

// New returns the dashboards over the credentials a resolves.
func New(log *slog.Logger, a Resolver) *UI { return &UI{log: log, auth: a} }

// Register adds the pages to mux under /ui/.
func (u *UI) Register(mux *http.ServeMux) {
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree always has it
	}
	files := http.StripPrefix("/ui/assets/", http.FileServerFS(static))
	mux.Handle("GET /ui/assets/", secure(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache") // revalidated; embedded files have no modification time to compare
		files.ServeHTTP(w, r)
	}))
	mux.Handle("GET /ui/login", secure(u.loginPage))
	mux.Handle("POST /ui/login", secure(u.login))
	mux.Handle("POST /ui/logout", secure(u.logout))
	mux.Handle("GET /ui/session", secure(u.session))
	mux.Handle("GET /ui/", secure(u.shell))
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
}

// secure sets the headers every page and asset carries: nothing but this origin's scripts, styles and
// images, no framing, no sniffing, no referrer to other sites.
func secure(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin") // no referrer leaves the service; its own form posts keep their Origin
		hd.Set("X-Frame-Options", "DENY")
		h(w, r)
	})
}

var pages = template.Must(template.New("").Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.}} · edtech-analytics</title>
<link rel="stylesheet" href="/ui/assets/vendor/uplot/uPlot.min.css">
<link rel="stylesheet" href="/ui/assets/app.css">
</head>{{end}}
{{define "login"}}{{template "head" "Sign in"}}
<body class="login"><main id="main">
<h1>Sign in to the dashboards</h1>
<form method="post" action="/ui/login" class="card">
{{if .Error}}<p class="error" role="alert" id="login-error">{{.Error}}</p>{{end}}
<label for="token">Dashboard token</label>
<input id="token" name="token" type="password" autocomplete="off" required spellcheck="false"
  aria-describedby="token-help"{{if .Error}} aria-invalid="true"{{end}}>
<p id="token-help" class="help">The token your district gave you (it starts with <code>edt_</code>). It is kept in this browser only until you sign out or for 12 hours.</p>
<button type="submit">Sign in</button>
</form></main></body></html>{{end}}
{{define "shell"}}{{template "head" "Dashboards"}}
<body>
<a class="skip" href="#main">Skip to content</a>
<header><nav aria-label="Main" id="nav"></nav>
<form method="post" action="/ui/logout"><button type="submit" class="link">Sign out</button></form></header>
<main id="main" tabindex="-1"><p>Loading…</p></main>
<script src="/ui/assets/vendor/uplot/uPlot.iife.min.js"></script>
<script src="/ui/assets/app.js"></script>
</body></html>{{end}}
`))

type loginData struct{ Error string }

func (u *UI) loginPage(w http.ResponseWriter, r *http.Request) {
	u.render(w, http.StatusOK, "login", loginData{})
}

// login checks the token and keeps it in the session cookie. A form posted from another origin is
// refused: the cookie is SameSite=Strict, and the form must be this service's own.
func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "sign in from this service's own page", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	token := strings.TrimSpace(r.PostFormValue("token"))
	if token == "" {
		u.render(w, http.StatusBadRequest, "login", loginData{Error: "Enter your dashboard token."})
		return
	}
	if _, err := u.auth.Resolve(r.Context(), token); err != nil {
		status, msg := http.StatusUnauthorized, "This token is unknown, revoked or expired."
		switch {
		case errors.Is(err, auth.ErrForbidden):
			status, msg = http.StatusForbidden, "This key may not read dashboards."
		case !errors.Is(err, auth.ErrUnauthenticated):
			u.log.ErrorContext(r.Context(), "resolving a sign-in", "err", err)
			status, msg = http.StatusServiceUnavailable, "Cannot check the token now; try again in a moment."
		}
		u.render(w, status, "login", loginData{Error: msg})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: auth.SessionCookie, Value: token, Path: "/", MaxAge: int(SessionTTL / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

func (u *UI) logout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "sign out from this service's own page", http.StatusForbidden)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: auth.SessionCookie, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

// sameOrigin reports whether a form post came from this origin (Origin, or Referer where a browser
// sends no Origin). A request with neither is not a browser's cross-site form and is let through.
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		origin = r.Header.Get("Referer")
	}
	if origin == "" {
		return true
	}
	o, err := url.Parse(origin)
	return err == nil && o.Host == r.Host
}

// principal resolves the session cookie; ok is false when there is none or it no longer resolves.
func (u *UI) principal(r *http.Request) (auth.Principal, bool, error) {
	c, err := r.Cookie(auth.SessionCookie)
	if err != nil || c.Value == "" {
		return auth.Principal{}, false, nil
	}
	p, err := u.auth.Resolve(r.Context(), c.Value)
	if errors.Is(err, auth.ErrUnauthenticated) || errors.Is(err, auth.ErrForbidden) {
		return auth.Principal{}, false, nil
	}
	return p, err == nil, err
}

// shell serves the page shell to a signed-in browser and sends anyone else to the sign-in page.
func (u *UI) shell(w http.ResponseWriter, r *http.Request) {
	_, ok, err := u.principal(r)
	if err != nil {
		u.log.ErrorContext(r.Context(), "resolving a session", "err", err)
		http.Error(w, "cannot check the session now; retry", http.StatusServiceUnavailable)
		return
	}
	if !ok {
		http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	u.render(w, http.StatusOK, "shell", nil)
}

// Session is what the pages know of the signed-in token: its district, role and scope.
type Session struct {
	TenantID  string   `json:"tenant_id"`
	Role      string   `json:"role"`
	Schools   []string `json:"schools,omitempty"`
	TeacherID string   `json:"teacher_id,omitempty"`
	Students  []string `json:"students,omitempty"`
}

func (u *UI) session(w http.ResponseWriter, r *http.Request) {
	p, ok, err := u.principal(r)
	switch {
	case err != nil:
		u.log.ErrorContext(r.Context(), "resolving a session", "err", err)
		http.Error(w, "cannot check the session now; retry", http.StatusServiceUnavailable)
		return
	case !ok:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"signed out"}`))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(Session{TenantID: p.TenantID, Role: p.Role, Schools: p.Schools, TeacherID: p.TeacherID, Students: p.Students})
}

func (u *UI) render(w http.ResponseWriter, status int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		u.log.Error("rendering a page", "page", name, "err", err)
	}
}
