package app

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
)

// bulkUsers imports a bulk users file of the given students through the import step, as the gateway
// does; each record's value is its sourcedId.
func bulkUsers(t *testing.T, store *rosters.Store, kcfg kafkax.Config, ids []string) *rosters.Result {
	t.Helper()
	up := &rosters.Upload{TenantID: "d1", SourceID: "sis", Kind: "oneroster-csv", ReceivedAt: time.Now(),
		Files: []rosters.File{{Name: "users.csv", Entity: rosters.Users, Mode: rosters.Bulk, Received: len(ids)}}}
	for _, id := range ids {
		up.Items = append(up.Items, rosters.Item{File: "users.csv", Entity: rosters.Users, SourcedID: id, Active: true, Person: id, Hash: []byte(id)})
	}
	plan, err := store.Plan(t.Context(), up)
	if err != nil {
		t.Fatal(err)
	}
	var enc []rosters.Encoded
	for _, it := range plan.Sent {
		enc = append(enc, rosters.Encoded{Key: []byte("d1"), Value: []byte(it.SourcedID)})
	}
	for _, m := range plan.Missing {
		enc = append(enc, rosters.Encoded{Key: []byte("d1"), Value: []byte("tombstone:" + m.SourcedID)})
	}
	producer, err := kafkax.NewProducer(kcfg, kafkax.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	res, err := plan.Commit(t.Context(), "test", func(ctx context.Context, recs []rosters.Encoded) error {
		for _, r := range recs {
			if err := producer.ProduceSync(ctx, &kgo.Record{Topic: kcfg.Topics().Raw, Key: r.Key, Value: r.Value}).FirstErr(); err != nil {
				return err
			}
		}
		return nil
	}, enc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func users(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("u%02d", i)
	}
	return out
}

// TestRosterCommandsDecideHeldUploads: held uploads are listed with their reason and counts, approved
// without naming the district (their tombstones reach raw), rejected, and the thresholds are set.
func TestRosterCommandsDecideHeldUploads(t *testing.T) {
	pool, url := migratedDB(t)
	kcfg := platformTopics(t)
	mustCtl(t, url, "tenant", "create", "--id", "d1", "--name", "District 1")
	store := rosters.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)))
	k := kafkaArgs(kcfg)

	bulkUsers(t, store, kcfg, users(20))
	held := bulkUsers(t, store, kcfg, users(15))
	if held.Status != rosters.StatusHeld {
		t.Fatalf("upload %+v", held)
	}
	out := mustCtl(t, url, "roster", "uploads", "list", "--tenant", "d1")
	if !strings.Contains(out, held.ID) || !strings.Contains(out, "would deactivate 5 of 20 active users (25.0%), over the district's 10%") ||
		!strings.Contains(out, "users.csv (bulk)") {
		t.Fatalf("uploads list:\n%s", out)
	}
	var list []rosters.UploadInfo
	if err := json.Unmarshal([]byte(mustCtl(t, url, "roster", "uploads", "list", "--tenant", "d1", "--status", "held", "--output", "json")), &list); err != nil ||
		len(list) != 1 || list[0].Files[0].Deactivated != 5 || list[0].Files[0].LedgerActive != 20 {
		t.Fatalf("held uploads %+v: %v", list, err)
	}

	out = mustCtl(t, url, append([]string{"roster", "approve", held.ID, "--by", "alice"}, k...)...)
	if !strings.Contains(out, "approved: 5 records sent to raw") {
		t.Fatalf("approve printed %q", out)
	}
	if got := rawValues(t, kcfg, 25)[20:]; strings.Join(got, " ") != "tombstone:u15 tombstone:u16 tombstone:u17 tombstone:u18 tombstone:u19" {
		t.Fatalf("approval sent %v", got)
	}
	if _, _, err := ctl(t, url, append([]string{"roster", "approve", held.ID}, k...)...); err == nil || !strings.Contains(err.Error(), "is approved") {
		t.Fatalf("approving again: %v", err)
	}

	held = bulkUsers(t, store, kcfg, users(5))
	mustCtl(t, url, "roster", "reject", held.ID, "--tenant", "d1")
	if _, _, err := ctl(t, url, "roster", "reject", "00000000-0000-4000-8000-000000000000"); err == nil || !strings.Contains(err.Error(), "in no district") {
		t.Fatalf("rejecting an unknown upload: %v", err)
	}
	if _, _, err := ctl(t, url, "roster", "approve", "--tenant", "d1"); err == nil || !strings.Contains(err.Error(), "give the upload's id") {
		t.Fatalf("approve without an upload: %v", err)
	}

	// A looser threshold lets the same upload through.
	out = mustCtl(t, url, "roster", "settings", "--tenant", "d1", "--max-deleted-pct", "90")
	if !strings.Contains(out, "deactivate over 90%") {
		t.Fatalf("settings printed %q", out)
	}
	if res := bulkUsers(t, store, kcfg, users(5)); res.Status != rosters.StatusApplied || res.Missing != 10 {
		t.Fatalf("upload under the new threshold %+v", res)
	}
	if _, _, err := ctl(t, url, "roster", "settings", "--tenant", "d1", "--max-changed-pct", "120"); err == nil {
		t.Fatal("a threshold over 100% was taken")
	}
	out = mustCtl(t, url, "roster", "settings", "--tenant", "d1", "--max-rejected-pct", "2", "--max-findings-pct", "30", "--min-upload-rows", "50")
	if !strings.Contains(out, "quality gate on uploads of at least 50 rows: over 2% rejected, over 5% waiting for references, over 30 findings per hundred rows") {
		t.Fatalf("settings printed %q", out)
	}
	out = mustCtl(t, url, "roster", "settings", "--tenant", "d1", "--max-findings-pct", "off", "--output", "json")
	if !strings.Contains(out, `"max_findings_pct": null`) || !strings.Contains(out, `"max_rejected_pct": 2`) {
		t.Fatalf("settings printed %q", out)
	}
	if _, _, err := ctl(t, url, "roster", "settings", "--tenant", "d1", "--max-findings-pct", "many"); err == nil || !strings.Contains(err.Error(), "a number or off") {
		t.Fatalf("a findings threshold that is not a number: %v", err)
	}
	audit := mustCtl(t, url, "audit", "list", "--tenant", "d1")
	for _, action := range []string{"roster.approve", "roster.reject", "roster.settings"} {
		if !strings.Contains(audit, action) {
			t.Errorf("audit lacks %s:\n%s", action, audit)
		}
	}
	if out := mustCtl(t, url, "roster", "held", "--tenant", "d1"); !strings.HasPrefix(out, "ENTITY") {
		t.Fatalf("held printed %q", out)
	}

	// The quality report: a held upload, sent against stored (the sink has applied nothing here), and a
	// source silent for longer than expected.
	mustCtl(t, url, "roster", "settings", "--tenant", "d1", "--min-ledger-rows", "1") // 5 users are enough to check
	held = bulkUsers(t, store, kcfg, users(0))                                        // every user gone: over even 90%
	mustCtl(t, url, "roster", "settings", "--tenant", "d1", "--source", "sis", "--expect-every", "1ns")
	// Personal data the enricher found in free text today (its daily counts).
	if _, err := pool.Exec(t.Context(), `INSERT INTO district_d1.quality_pii_daily (day, source_id, field, kind, records)
		VALUES (current_date, 'sis', 'roster_result.comment', 'email', 412)`); err != nil {
		t.Fatal(err)
	}
	var rep rosters.Report
	if err := json.Unmarshal([]byte(mustCtl(t, url, "quality", "report", "--tenant", "d1", "--output", "json")), &rep); err != nil {
		t.Fatal(err)
	}
	checks := map[string]string{}
	for _, f := range rep.Findings {
		checks[f.Check] = f.Message
	}
	if !strings.Contains(checks[rosters.CheckHeldUpload], held.ID) || !strings.Contains(checks[rosters.CheckStored], "users: 5 active sent, 0 stored") ||
		!strings.Contains(checks[rosters.CheckFreshness], "source sis last sent a roster") || rep.Uploads["held"] != 1 || rep.Rows["received"] == 0 ||
		checks[rosters.CheckPII] != "412 records of roster_result.comment from sis held email addresses" {
		t.Fatalf("quality report %+v", rep)
	}
	days := 0
	for _, d := range rep.Days {
		days += d.Received
	}
	if len(rep.Days) == 0 || days != rep.Rows["received"] {
		t.Fatalf("the report's days %+v do not add up to its %d rows received", rep.Days, rep.Rows["received"])
	}
	if out := mustCtl(t, url, "quality", "report", "--tenant", "d1"); !strings.Contains(out, "held_upload") || !strings.Contains(out, "error") ||
		!strings.Contains(out, "DAY") || !strings.Contains(out, rep.Days[0].Day) || !strings.Contains(out, "412 records of roster_result.comment") {
		t.Fatalf("quality report printed %q", out)
	}
}

// rawValues returns the values of raw's first n records, in offset order (one partition holds d1).
func rawValues(t *testing.T, kcfg kafkax.Config, n int) []string {
	t.Helper()
	var out []string
	for _, r := range readAllRecords(t, kcfg.Brokers, kcfg.Topics().Raw, n) {
		out = append(out, string(r.Value))
	}
	return out
}
