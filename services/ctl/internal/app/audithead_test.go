package app

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/tenancy/audit"
)

// TestPublishedHeadsCatchARemovedTail publishes the audit head outside PostgreSQL, appends more, and
// checks that verify --published passes while the log holds every published head and fails, naming the
// head, once the newest entries are removed.
func TestPublishedHeadsCatchARemovedTail(t *testing.T) {
	pool, url := migratedDB(t)
	kcfg := platformTopics(t)
	mustCtl(t, url, "tenant", "create", "--id", "d1", "--name", "District 1")
	mustCtl(t, url, "token", "create", "--tenant", "d1", "--role", "district_admin")
	var first struct {
		Entries   int64  `json:"entries"`
		Head      string `json:"head"`
		Published bool   `json:"published"`
	}
	out := mustCtl(t, url, append([]string{"audit", "head", "--publish", "--output", "json"}, kafkaArgs(kcfg)...)...)
	if err := json.Unmarshal([]byte(out), &first); err != nil || !first.Published || first.Entries < 1 {
		t.Fatalf("audit head --publish printed %q (%v)", out, err)
	}
	mustCtl(t, url, "token", "create", "--tenant", "d1", "--role", "district_admin")
	second := strings.TrimSpace(mustCtl(t, url, append([]string{"audit", "head", "--publish"}, kafkaArgs(kcfg)...)...))
	if second == first.Head {
		t.Fatalf("the head did not move: %s", second)
	}
	verify := append([]string{"audit", "verify", "--published"}, kafkaArgs(kcfg)...)
	mustCtl(t, url, verify...)

	// Someone who can switch the guard off removes the newest entry.
	h, err := audit.ParseHead(second)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"ALTER TABLE control.audit_log DISABLE TRIGGER USER", "DELETE FROM control.audit_log WHERE seq = $1",
		"ALTER TABLE control.audit_log ENABLE TRIGGER USER"} {
		var args []any
		if strings.Contains(s, "$1") {
			args = append(args, h.Seq)
		}
		if _, err := pool.Exec(t.Context(), s, args...); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := ctl(t, url, "audit", "verify"); err != nil {
		t.Fatalf("without the published heads the removed tail goes unseen, as expected; verify said %v", err)
	}
	_, _, err = ctl(t, url, verify...)
	if !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "recorded head") {
		t.Fatalf("verify --published after the tail was removed: %v", err)
	}
}

// TestAdminActionsAreAudited runs each administrative command and finds its entry with audit list.
func TestAdminActionsAreAudited(t *testing.T) {
	_, url := migratedDB(t)
	mustCtl(t, url, "tenant", "create", "--id", "d1", "--name", "District 1")
	mustCtl(t, url, "tenant", "create", "--id", "d2", "--name", "District 2")
	out := mustCtl(t, url, "keys", "create", "--tenant", "d1", "--source", "lms", "--output", "json")
	var key struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(out), &key); err != nil {
		t.Fatal(err)
	}
	mustCtl(t, url, "keys", "revoke", "--id", key.ID)
	mustCtl(t, url, "policy", "set", "--tenant", "d1", "--template", "coppa")
	mustCtl(t, url, "tenant", "set-limits", "--id", "d1", "--events-per-sec", "100")
	mustCtl(t, url, "tenant", "set-hot", "--id", "d1", "--shards", "4")

	var entries []audit.Entry
	if err := json.Unmarshal([]byte(mustCtl(t, url, "audit", "list", "--tenant", "d1", "--output", "json")), &entries); err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, en := range entries {
		actions = append(actions, en.Action)
		if en.Actor != "ctl" || en.TenantID != "d1" || !en.Keyed {
			t.Errorf("entry %+v", en)
		}
	}
	want := "tenant.create,api_key.create,policy.set,tenant.set_limits,tenant.set_hot"
	if got := strings.Join(actions, ","); got != want {
		t.Fatalf("d1's audit entries = %s, want %s", got, want)
	}
	out = mustCtl(t, url, "audit", "list", "--limit", "2")
	if strings.Count(out, "\n") != 3 || !strings.Contains(out, "tenant.set_hot") || strings.Contains(out, "tenant.create") {
		t.Fatalf("audit list --limit 2 printed %q", out)
	}
	if !strings.Contains(mustCtl(t, url, "audit", "list"), "api_key.revoke") {
		t.Fatal("the revocation is not in the log")
	}
	if out := mustCtl(t, url, "audit", "list", "--since", "2999-01-01"); strings.Contains(out, "tenant.") {
		t.Fatalf("audit list --since the future printed %q", out)
	}
	if _, _, err := ctl(t, url, "audit", "list", "--since", "yesterday"); !errors.Is(err, ErrUsage) {
		t.Fatalf("a bad --since: %v", err)
	}
}
