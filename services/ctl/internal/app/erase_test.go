package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/archive/archivetest"
	"github.com/edtech-analytics/platform/libs/chutil/chtest"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/connectors"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/twmb/franz-go/pkg/kgo"
	"gocloud.dev/blob/fileblob"
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
		mustCtl(t, url, "connector", "add", "--tenant", d, "--source", "drop", "--kind", "file-drop")
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
	// The archive: both layers, records of both districts.
	archiveDir, arch := writeArchive(t, []string{"d1", "d2"}, 120)
	archived := map[string]archive.Count{}
	for _, d := range []string{"d1", "d2"} {
		if archived[d], err = archive.CountTenant(ctx, arch, d); err != nil || archived[d].Files == 0 || archived[d].Rows != 2*120 {
			t.Fatalf("archive of %s: %+v, %v", d, archived[d], err)
		}
	}
	args := append([]string{"erase", "tenant", "--tenant", "d1", "--confirm", "d1", "--reason", "contract ended",
		"--enricher-wait", "0", "--clickhouse.addr", addr, "--clickhouse.database", database,
		"--analyst.prefix", database + "_analyst_", "--archive.url", "file://" + archiveDir, "--output", "json"}, kafkaArgs(kcfg)...)

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
	if job.Status != jobs.StatusDone || len(job.Steps) != 7 {
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
		"credentials": {4, 0}, // one key, one token, a connector source and its key
		"keys":        {4, 0}, // one data key, one KEK, the district's keys row, the plaintext pseudonym key
		"suppress":    {0, 0}, // not waiting for an enricher here
		"postgres":    {1, 0},
		"clickhouse":  {3, 0}, // two events, one rollup row
		"analyst":     {1, 0},
		"archive":     {archived["d1"].Files, 0}, // every file of both layers
	}
	if fmt.Sprint(found) != fmt.Sprint(want) {
		t.Fatalf("found before/after = %v, want %v", found, want)
	}
	for d, want := range map[string]int{"d1": 0, "d2": 1} {
		if srcs, err := connectors.New(pool, nil).List(ctx, d); err != nil || len(srcs) != want {
			t.Fatalf("connector sources of %s after erasing d1: %d (%v), want %d", d, len(srcs), err, want)
		}
	}
	if d := job.Steps[6].Detail; !strings.Contains(d, fmt.Sprintf("%d objects deleted", archived["d1"].Files)) || !strings.Contains(d, "(240 rows)") {
		t.Errorf("archive step: %q", d)
	}
	if c, err := archive.CountTenant(ctx, arch, "d2"); err != nil || c != archived["d2"] {
		t.Errorf("d2's archive after: %+v (%v), before %+v", c, err, archived["d2"])
	}
	if keys, err := arch.List(ctx, ""); err != nil || slices.ContainsFunc(keys, func(k string) bool { return strings.Contains(k, "d1") }) {
		t.Errorf("d1's objects left in the archive: %v (%v)", keys, err)
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
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM control.api_keys WHERE tenant_id = 'd2' AND revoked_at IS NULL").Scan(&live); err != nil || live != 2 { // its key and its connector source's
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
	if resumed.ID != stopped.ID || resumed.Status != jobs.StatusDone || len(resumed.Steps) != 7 || !strings.Contains(errOut, "resuming job "+stopped.ID) {
		t.Fatalf("resumed job = %+v (stderr %q), want job %s done", resumed, errOut, stopped.ID)
	}
	if st := resumed.Steps[6]; st.Name != "archive" || st.Detail != noArchive || *st.FoundBefore != 0 || *st.FoundAfter != 0 {
		t.Fatalf("archive step without an archive: %+v", st)
	}
	if !resumed.Steps[0].StartedAt.Equal(stopped.Steps[0].StartedAt) {
		t.Fatal("a finished step ran again")
	}
}

// writeArchive archives n raw and n enriched events of each of tenants (those of archivetest, over its
// three days, each given to one of tenants in turn) into a new file archive, partition 0, in batches of
// 25 records. It returns the archive's directory and the bucket.
func writeArchive(t *testing.T, tenants []string, n int) (string, archive.Bucket) {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	bb, err := fileblob.OpenBucket(dir, archive.FileOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := bb.Close(); err != nil {
			t.Error(err)
		}
	})
	b := archive.Blob{B: bb}
	codec, err := records.NewCodec(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	total := n * len(tenants)
	raws, enricheds := archivetest.RawEvents(total), archivetest.EnrichedEvents(total)
	var raw, enriched []*kgo.Record
	for i := range total {
		tenant := tenants[i%len(tenants)]
		raws[i].TenantID, enricheds[i].TenantID = tenant, tenant
		for _, e := range []any{raws[i], enricheds[i]} {
			v, err := codec.Encode(e)
			if err != nil {
				t.Fatal(err)
			}
			r := &kgo.Record{Offset: int64(i), Value: v, Key: []byte(tenant)}
			if _, ok := e.(*records.RawEvent); ok {
				raw = append(raw, r)
			} else {
				enriched = append(enriched, r)
			}
		}
	}
	rawStore, enrichedStore := archive.New(b, codec, archive.RawLayer(), nil), archive.New(b, codec, archive.EnrichedLayer(), nil)
	for off := 0; off < total; off += 25 {
		end := min(off+25, total)
		if err := rawStore.Write(ctx, "raw", 0, raw[off:end]); err != nil {
			t.Fatal(err)
		}
		if err := enrichedStore.Write(ctx, "enriched", 0, enriched[off:end]); err != nil {
			t.Fatal(err)
		}
	}
	return dir, b
}

// TestEraseStudentArchiveStep runs the archive step of a student's erasure: it waits for the archiver's
// index to pass the erasure markers, then the student's rows leave the district's enriched files and
// nothing else does; with no archive configured the step says so and finds nothing.
func TestEraseStudentArchiveStep(t *testing.T) {
	ctx := t.Context()
	_, arch := writeArchive(t, []string{"d1", "d2"}, 100)
	events := archivetest.EnrichedEvents(200)
	student, other := events[0].Actor.InternalID, events[2].Actor.InternalID // both of d1 (even offsets)
	count := func(tenant, id string) int64 {
		t.Helper()
		c, err := archive.CountStudent(ctx, arch, tenant, id)
		if err != nil {
			t.Fatal(err)
		}
		return c.Rows
	}
	otherRows := count("d1", other)
	d2, err := archive.CountTenant(ctx, arch, "d2")
	if err != nil {
		t.Fatal(err)
	}
	s := &studentEraser{arch: arch, tenant: "d1", student: student, wait: 100 * time.Millisecond}
	var step eraseStep
	for _, st := range s.steps() {
		if st.name == "archive" {
			step = st
		}
	}
	before, err := step.count(ctx)
	if err != nil || before != 4 { // events 0, 50, 100 and 150 are of d1 and the student
		t.Fatalf("count before = %d, %v; want 4", before, err)
	}

	// The archiver has not passed the markers: the step waits, then stops, touching nothing.
	s.markers = map[int32]int64{0: 200}
	if _, err := step.act(ctx); err == nil || !strings.Contains(err.Error(), "the archiver to pass the erasure markers") {
		t.Fatalf("act before the archiver passed the markers: %v", err)
	}
	if n, _ := step.count(ctx); n != before {
		t.Fatalf("the step erased before the archiver passed the markers: %d left", n)
	}

	s.markers = map[int32]int64{0: 199}
	detail, err := step.act(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(detail, "without the student's 4 rows") {
		t.Errorf("detail %q", detail)
	}
	if after, err := step.count(ctx); err != nil || after != 0 {
		t.Fatalf("count after = %d, %v", after, err)
	}
	if got := count("d1", other); got != otherRows || got == 0 {
		t.Errorf("another student of d1: %d rows, before %d", got, otherRows)
	}
	if got, err := archive.CountTenant(ctx, arch, "d2"); err != nil || got != d2 {
		t.Errorf("d2: %+v (%v), before %+v", got, err, d2)
	}

	none := &studentEraser{tenant: "d1", student: student}
	if n, err := none.countArchive(ctx); n != 0 || err != nil {
		t.Fatalf("count with no archive: %d, %v", n, err)
	}
	if d, err := none.eraseArchive(ctx); d != noArchive || err != nil {
		t.Fatalf("act with no archive: %q, %v", d, err)
	}
}
