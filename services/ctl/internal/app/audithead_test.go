package app

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/tenancy/audit"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
)

// TestPublishedHeadsCatchARemovedTail publishes the audit head outside PostgreSQL, appends more, and
// checks that verify --published passes while the log holds every published head and fails, naming the
// head, once the newest entries are removed.
func TestPublishedHeadsCatchARemovedTail(t *testing.T) {
	pool, url := migratedDB(t)
	_, kcfg := kafkatest.New(t)
	cl, err := kafkax.NewAdmin(kcfg, kafkax.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkax.EnsureTopics(t.Context(), cl.Client, 4, 1, kafkax.PlatformTopics(kcfg)); err != nil {
		t.Fatal(err)
	}
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
