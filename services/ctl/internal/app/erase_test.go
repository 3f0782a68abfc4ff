package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/chutil/chtest"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// platformTopics returns a kfake cluster with the platform's topics.
func platformTopics(t testing.TB) kafkax.Config {
	t.Helper()
	_, kcfg := kafkatest.New(t)
	admin, err := kafkax.NewAdmin(kcfg, kafkax.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := kafkax.EnsureTopics(t.Context(), admin.Client, 4, 1, kafkax.PlatformTopics(kcfg)); err != nil {
		t.Fatal(err)
	}
	return kcfg
}

// TestEraseTenantFromEveryStore erases one of two districts and checks, store by store, that the job's
// verification log shows it found the district and left nothing, that the other district is untouched,
// that running it again is harmless, and that an unknown district makes no job.
func TestEraseTenantFromEveryStore(t *testing.T) {
	pool, url := migratedDB(t)
	ctx := t.Context()
	conn, database, addr := chtest.New(t)
	kcfg := platformTopics(t)
	for _, d := range []string{"d1", "d2"} {
		mustCtl(t, url, "tenant", "create", "--id", d, "--name", "District "+d)
		mustCtl(t, url, "keys", "create", "--tenant", d, "--source", "lms")
		mustCtl(t, url, "token", "create", "--tenant", d, "--role", "district_admin")
	}
	// Sealed data of both districts.
	master, err := keyring.ParseLocalKeys(testMasterKeys)
	if err != nil {
		t.Fatal(err)
	}
	kr := keyring.New(pool, master, keyring.Options{})
	sealed := map[string]string{}
	for _, d := range []string{"d1", "d2"} {
		k, err := kr.SubjectKey(ctx, d, "stu-1")
		if err != nil {
			t.Fatal(err)
		}
		sealed[d] = k.Seal("Ada")
	}
	// ClickHouse: events and a rollup fed by a materialized view, as the aggregator's tables are, and
	// the analyst database of d1.
	for _, q := range []string{
		"CREATE TABLE events (tenant_id String, student String, n UInt32) ENGINE = MergeTree ORDER BY (tenant_id, student)",
		"CREATE MATERIALIZED VIEW daily ENGINE = SummingMergeTree ORDER BY tenant_id AS SELECT tenant_id, sum(n) AS n FROM events GROUP BY tenant_id",
		"CREATE DATABASE " + database + "_analyst_d1",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO events")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		tenant, student string
		n               uint32
	}{{"d1", "a", 1}, {"d1", "b", 2}, {"d2", "a", 5}} {
		if err := batch.Append(r.tenant, r.student, r.n); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"erase", "tenant", "--tenant", "d1", "--confirm", "d1", "--reason", "contract ended",
		"--enricher-wait", "0", "--clickhouse.addr", addr, "--clickhouse.database", database,
		"--analyst.prefix", database + "_analyst_", "--output", "json"}, kafkaArgs(kcfg)...)

	if _, _, err := ctl(t, url, "erase", "tenant", "--tenant", "d1", "--confirm", "d2"); !errors.Is(err, ErrUsage) {
		t.Fatalf("erase without the right --confirm: %v", err)
	}
	unknown := append([]string{}, args...)
	unknown[3], unknown[5] = "nobody", "nobody"
	if _, _, err := ctl(t, url, unknown...); !errors.Is(err, tenancy.ErrNotFound) {
		t.Fatalf("erasing an unknown district: %v", err)
	}

	var job jobs.Job
	if err := json.Unmarshal([]byte(mustCtl(t, url, args...)), &job); err != nil {
		t.Fatal(err)
	}
	if job.Status != jobs.StatusDone || len(job.Steps) != 6 {
		t.Fatalf("job = %+v", job)
	}
	found := map[string][2]int64{}
	for _, st := range job.Steps {
		if st.FoundAfter == nil || st.FoundBefore == nil || !st.Done() {
			t.Fatalf("step %+v not recorded", st)
		}
		found[st.Name] = [2]int64{*st.FoundBefore, *st.FoundAfter}
	}
	want := map[string][2]int64{
		"credentials": {2, 0}, // one key, one token
		"keys":        {4, 0}, // one data key, one KEK, the district's keys row, the plaintext pseudonym key
		"suppress":    {0, 0}, // not waiting for an enricher here
		"postgres":    {1, 0},
		"clickhouse":  {3, 0}, // two events, one rollup row
		"analyst":     {1, 0},
	}
	if fmt.Sprint(found) != fmt.Sprint(want) {
		t.Fatalf("found before/after = %v, want %v", found, want)
	}

	// Every store, from outside the job.
	if _, err := keyring.New(pool, master, keyring.Options{}).Open(ctx, "d1", sealed["d1"]); !errors.Is(err, keyring.ErrShredded) {
		t.Errorf("d1's sealed data still opens: %v", err)
	}
	if got, err := keyring.New(pool, master, keyring.Options{}).Open(ctx, "d2", sealed["d2"]); err != nil || got != "Ada" {
		t.Errorf("d2's sealed data: %q, %v", got, err)
	}
	var rows uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM events WHERE tenant_id = 'd2'").Scan(&rows); err != nil || rows != 1 {
		t.Errorf("d2's events: %d, %v", rows, err)
	}
	if err := conn.QueryRow(ctx, "SELECT count() FROM events WHERE tenant_id = 'd1'").Scan(&rows); err != nil || rows != 0 {
		t.Errorf("d1's events: %d, %v", rows, err)
	}
	var live int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM control.api_keys WHERE tenant_id = 'd2' AND revoked_at IS NULL").Scan(&live); err != nil || live != 1 {
		t.Errorf("d2's live keys: %d, %v", live, err)
	}
	reader, err := kafkax.NewReader(kcfg, kafkax.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	var commands []string
	if err := kafkax.ReadToEnd(ctx, reader.Client, kcfg.Topics().Control, nil, func(r *kgo.Record) error {
		commands = append(commands, string(r.Key))
		return nil
	}); err != nil || strings.Join(commands, ",") != "d1" {
		t.Fatalf("control topic holds commands for %v (%v), want one erase_district of d1", commands, err)
	}

	// Again: a new job that finds nothing, and the status of the first.
	var again jobs.Job
	if err := json.Unmarshal([]byte(mustCtl(t, url, args...)), &again); err != nil || again.ID == job.ID || again.Status != jobs.StatusDone {
		t.Fatalf("erasing again: %+v, %v", again, err)
	}
	if out := mustCtl(t, url, "erase", "status", job.ID); !strings.Contains(out, "erase_tenant of district d1, done") ||
		!strings.Contains(out, "clickhouse") {
		t.Fatalf("erase status printed %q", out)
	}
	if !strings.Contains(mustCtl(t, url, "audit", "list", "--tenant", "d1"), "erase.tenant.done") {
		t.Fatal("the erasure is not in the audit log")
	}
}

// TestEraseTenantResumesWhereItStopped stops an erasure in its middle (no enricher applies the command
// within the bound) and checks that the next run resumes the same job from its first unfinished step.
func TestEraseTenantResumesWhereItStopped(t *testing.T) {
	_, url := migratedDB(t)
	_, database, addr := chtest.New(t)
	kcfg := platformTopics(t)
	mustCtl(t, url, "tenant", "create", "--id", "d1", "--name", "District 1")
	base := append([]string{"erase", "tenant", "--tenant", "d1", "--confirm", "d1", "--clickhouse.addr", addr,
		"--clickhouse.database", database, "--output", "json"}, kafkaArgs(kcfg)...)

	// No enricher runs here: waiting for it to apply the command ends the run after the first steps.
	out, _, err := ctl(t, url, append(base, "--enricher-wait", "100ms")...)
	if err == nil || !strings.Contains(err.Error(), "for the enricher to apply it") {
		t.Fatalf("first run: %v", err)
	}
	var stopped jobs.Job
	if err := json.Unmarshal([]byte(out), &stopped); err != nil {
		t.Fatal(err)
	}
	if stopped.Status != jobs.StatusRunning || len(stopped.Steps) != 3 || !stopped.Steps[1].Done() || stopped.Steps[2].Done() {
		t.Fatalf("stopped job = %+v", stopped)
	}
	out, errOut, err := ctl(t, url, append(base, "--enricher-wait", "0")...)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, errOut)
	}
	var resumed jobs.Job
	if err := json.Unmarshal([]byte(out), &resumed); err != nil {
		t.Fatal(err)
	}
	if resumed.ID != stopped.ID || resumed.Status != jobs.StatusDone || len(resumed.Steps) != 6 || !strings.Contains(errOut, "resuming job "+stopped.ID) {
		t.Fatalf("resumed job = %+v (stderr %q), want job %s done", resumed, errOut, stopped.ID)
	}
	if !resumed.Steps[0].StartedAt.Equal(stopped.Steps[0].StartedAt) {
		t.Fatal("a finished step ran again")
	}
}
