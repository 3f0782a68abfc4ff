package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
)

// district is a bulk OneRoster package of one school: a term, a course, two classes, the users given
// (students, plus a teacher) and each user's enrollment in class cls-1.
func district(t *testing.T, users []string, extra ...zipFile) []byte {
	t.Helper()
	var u, e strings.Builder
	u.WriteString("sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,givenName,familyName\n")
	e.WriteString("sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate\n")
	for _, id := range users {
		fmt.Fprintf(&u, "%s,,,true,sch-1,student,%s,Given %s,Family\n", id, id, id)
		fmt.Fprintf(&e, "enr-%s,,,cls-1,sch-1,%s,student,false,,\n", id, id)
	}
	files := []zipFile{
		{name: "manifest.csv", body: strings.NewReader("propertyName,value\nmanifest.version,1.0\noneroster.version,1.2\n" +
			"file.orgs,bulk\nfile.academicSessions,bulk\nfile.courses,bulk\nfile.classes,bulk\nfile.users,bulk\nfile.enrollments,bulk\n")},
		{name: "orgs.csv", body: strings.NewReader("sourcedId,name,type\nsch-1,Lincoln High,school\n")},
		{name: "academicSessions.csv", body: strings.NewReader("sourcedId,title,type,startDate,endDate,schoolYear\nterm-1,Fall,term,2026-08-15,2026-12-20,2027\n")},
		{name: "courses.csv", body: strings.NewReader("sourcedId,title,orgSourcedId\ncrs-1,Algebra,sch-1\n")},
		{name: "classes.csv", body: strings.NewReader("sourcedId,title,courseSourcedId,classType,schoolSourcedId,termSourcedIds\n" +
			"cls-1,Algebra P1,crs-1,scheduled,sch-1,term-1\ncls-2,Algebra P2,crs-1,scheduled,sch-1,term-1\n")},
		{name: "users.csv", body: strings.NewReader(u.String())},
		{name: "enrollments.csv", body: strings.NewReader(e.String())},
	}
	for _, x := range extra {
		files = slices.DeleteFunc(files, func(f zipFile) bool { return f.name == x.name })
		files = append(files, x)
	}
	return packageOf(t, files...)
}

func studentIDs(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("stu-%02d", i))
	}
	return out
}

// rawRoster is a roster record of raw, as the tests look at it.
type rawRoster struct {
	entity, id, status, deactivatedBy string
}

func (r rawRoster) String() string { return r.entity + ":" + r.id + ":" + r.status }

// rosterSince returns the roster records raw holds after the first n, and the count now.
func (f *fixture) rosterSince(t *testing.T, n int) ([]rawRoster, int) {
	t.Helper()
	recs := f.readTopic(t, f.kcfg.Topics().Raw)
	slices.SortStableFunc(recs, func(a, b *kgo.Record) int { return int(a.Offset - b.Offset) }) // one partition: the district's
	var out []rawRoster
	for _, r := range recs[n:] {
		ev := f.rawEvent(t, r)
		p := ev.Payloads()
		c, ok := p.RosterCommon()
		if !ok {
			t.Fatalf("raw record %s is not a roster record", ev.Type)
		}
		rr := rawRoster{entity: strings.TrimPrefix(ev.Type, "roster."), id: *c.SourcedID, status: *c.Status}
		if ev.RosterUser != nil {
			rr.deactivatedBy = ev.RosterUser.Metadata["deactivatedBy"]
		}
		if ev.RosterEnrollment != nil {
			rr.deactivatedBy = ev.RosterEnrollment.Metadata["deactivatedBy"]
		}
		out = append(out, rr)
	}
	return out, len(recs)
}

func (f *fixture) upload(t *testing.T, body []byte) map[string]any {
	t.Helper()
	code, out := f.postRaw(t, "/v1/roster/csv", "roster", "application/zip", body)
	if code != http.StatusAccepted {
		t.Fatalf("answer %d %v", code, out)
	}
	return out["upload"].(map[string]any)
}

// fileCounts returns the upload's counts of a file.
func fileCounts(t *testing.T, up map[string]any, name string) map[string]float64 {
	t.Helper()
	for _, f := range up["files"].([]any) {
		m := f.(map[string]any)
		if m["file"] == name {
			out := map[string]float64{}
			for k, v := range m {
				if n, ok := v.(float64); ok {
					out[k] = n
				}
			}
			return out
		}
	}
	t.Fatalf("upload %v has no file %s", up, name)
	return nil
}

func count(recs []rawRoster, entity, status string) int {
	n := 0
	for _, r := range recs {
		if r.entity == entity && r.status == status {
			n++
		}
	}
	return n
}

func (f *fixture) produceTo(topic string) rosters.Produce {
	return func(ctx context.Context, recs []rosters.Encoded) error {
		out := make([]*kgo.Record, len(recs))
		for i, r := range recs {
			out[i] = &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value}
		}
		return f.cl.ProduceSync(ctx, out...).FirstErr()
	}
}

// TestBulkUploadsTombstoneWhatTheyLackAndHoldWhatPassesTheThresholds walks a district's roster through
// the import step: a first bulk upload, the same again (nothing sent), one student fewer (tombstones for
// the student and the enrollment), six fewer of 19 (held: over 10% deleted), approval of that upload,
// a held upload superseded by a later one, and a rejected one.
func TestBulkUploadsTombstoneWhatTheyLackAndHoldWhatPassesTheThresholds(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()

	up := f.upload(t, district(t, studentIDs(1, 20)))
	recs, n := f.rosterSince(t, 0)
	if up["status"] != rosters.StatusApplied || up["sent"] != float64(len(recs)) || len(recs) != 1+1+1+2+20+20 {
		t.Fatalf("first upload %v sent %d records", up, len(recs))
	}
	if c := fileCounts(t, up, "users.csv"); c["received"] != 20 || c["accepted"] != 20 || c["added"] != 20 || c["ledger_active"] != 0 {
		t.Fatalf("first upload's users.csv %v", c)
	}

	up = f.upload(t, district(t, studentIDs(1, 20)))
	if recs, _ := f.rosterSince(t, n); up["sent"] != 0.0 || len(recs) != 0 {
		t.Fatalf("the same package again: %v, sent %v", up, recs)
	}
	if c := fileCounts(t, up, "users.csv"); c["unchanged"] != 20 || c["ledger_active"] != 20 {
		t.Fatalf("unchanged users.csv %v", c)
	}

	// stu-20 left; stu-01 got a new name; one row of users.csv is bad and must not count as missing.
	body := district(t, studentIDs(1, 19), zipFile{name: "users.csv", body: strings.NewReader(
		"sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,givenName,familyName\n" +
			"stu-01,,,true,sch-1,student,stu-01,Renamed,Family\n" + usersRows(2, 18) +
			"stu-19,,,maybe,sch-1,student,stu-19,Given stu-19,Family\n")})
	up = f.upload(t, body)
	recs, n = f.rosterSince(t, n)
	if up["status"] != rosters.StatusApplied || up["missing"] != 2.0 {
		t.Fatalf("one student fewer: %v", up)
	}
	want := []string{"user:stu-01:active", "enrollment:enr-stu-20:tobedeleted", "user:stu-20:tobedeleted"} // dependents first
	if got := fmt.Sprint(recs); got != fmt.Sprint(want) {
		t.Fatalf("sent %v, want %v", got, want)
	}
	if recs[2].deactivatedBy != "upload "+up["id"].(string) {
		t.Fatalf("tombstone's reason %q", recs[1].deactivatedBy)
	}
	if c := fileCounts(t, up, "users.csv"); c["received"] != 19 || c["rejected"] != 1 || c["changed"] != 1 || c["deactivated"] != 1 || c["unchanged"] != 17 {
		t.Fatalf("users.csv %v", c)
	}

	// Six of the 19 active students gone at once: held, nothing sent.
	held := f.upload(t, district(t, studentIDs(1, 13)))
	if recs, _ := f.rosterSince(t, n); held["status"] != rosters.StatusHeld || len(recs) != 0 ||
		!strings.Contains(held["reason"].(string), "would deactivate 6 of 19 active enrollments") {
		t.Fatalf("held upload %v sent %v", held, recs)
	}
	list, err := f.rosters.Uploads(ctx, "d1", time.Time{}, 10)
	if err != nil || len(list) != 4 || list[0].Status != rosters.StatusHeld || len(list[0].Files) != 6 {
		t.Fatalf("uploads %+v: %v", list, err)
	}
	res, err := f.rosters.Approve(ctx, "d1", held["id"].(string), "ops@example.org", f.produceTo(f.kcfg.Topics().Raw))
	if err != nil || res.Sent != 13 { // six students, their enrollments, and stu-01 named as before
		t.Fatalf("approve: %+v %v", res, err)
	}
	recs, _ = f.rosterSince(t, n)
	if count(recs, "user", "tobedeleted") != 6 || count(recs, "enrollment", "tobedeleted") != 6 || len(recs) != 13 {
		t.Fatalf("approval sent %v", recs)
	}
	if _, err := f.rosters.Approve(ctx, "d1", held["id"].(string), "ops", f.produceTo(f.kcfg.Topics().Raw)); !errors.Is(err, rosters.ErrNotHeld) {
		t.Fatalf("approving twice: %v", err)
	}

	// A held upload that a later upload overtakes cannot be approved as it was compared.
	held = f.upload(t, district(t, studentIDs(1, 2)))
	if held["status"] != rosters.StatusHeld {
		t.Fatalf("upload %v", held)
	}
	if up := f.upload(t, district(t, studentIDs(1, 14))); up["status"] != rosters.StatusApplied {
		t.Fatalf("upload %v", up)
	}
	if _, err := f.rosters.Approve(ctx, "d1", held["id"].(string), "ops", f.produceTo(f.kcfg.Topics().Raw)); !errors.Is(err, rosters.ErrSuperseded) {
		t.Fatalf("approving a superseded upload: %v", err)
	}
	_, n = f.rosterSince(t, 0)

	held = f.upload(t, district(t, nil))
	if err := f.rosters.Reject(ctx, "d1", held["id"].(string), "ops"); err != nil {
		t.Fatal(err)
	}
	if recs, _ := f.rosterSince(t, n); len(recs) != 0 {
		t.Fatalf("a rejected upload sent %v", recs)
	}
	list, err = f.rosters.Uploads(ctx, "d1", time.Time{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	var statuses []string
	for _, u := range list {
		statuses = append(statuses, u.Status)
	}
	if want := []string{"rejected", "applied", "superseded", "approved", "applied", "applied", "applied"}; !slices.Equal(statuses, want) {
		t.Fatalf("statuses %v, want %v", statuses, want)
	}
}

func usersRows(from, to int) string {
	var b strings.Builder
	for _, id := range studentIDs(from, to) {
		fmt.Fprintf(&b, "%s,,,true,sch-1,student,%s,Given %s,Family\n", id, id, id)
	}
	return b.String()
}

// TestUnknownReferencesAreHeldUntilTheyArrive: enrollments of a user and a class never sent are held,
// the user's arrival alone releases nothing, the class's arrival releases both enrollments (after the
// class), and a hold past its bound expires.
func TestUnknownReferencesAreHeldUntilTheyArrive(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.upload(t, district(t, studentIDs(1, 2)))
	_, n := f.rosterSince(t, 0)

	enr := `{"enrollments":[
	 {"sourcedId":"enr-new-1","status":"active","dateLastModified":"2026-09-01T08:00:00Z","user":{"sourcedId":"stu-new"},"class":{"sourcedId":"cls-new"},"school":{"sourcedId":"sch-1"},"role":"student"},
	 {"sourcedId":"enr-new-2","status":"active","dateLastModified":"2026-09-01T08:00:00Z","user":{"sourcedId":"stu-01"},"class":{"sourcedId":"cls-new"},"school":{"sourcedId":"sch-1"},"role":"student"},
	 {"sourcedId":"enr-ok","status":"active","dateLastModified":"2026-09-01T08:00:00Z","user":{"sourcedId":"stu-02"},"class":{"sourcedId":"cls-2"},"school":{"sourcedId":"sch-1"},"role":"student"}]}`
	code, out := f.postRaw(t, "/v1/roster/enrollments", "roster", "application/json", []byte(enr))
	up := out["upload"].(map[string]any)
	if code != http.StatusAccepted || up["held"] != 2.0 || up["sent"] != 1.0 {
		t.Fatalf("enrollments: %d %v", code, out)
	}
	refs, err := f.rosters.HeldRefs(ctx, "d1", 10)
	if err != nil || len(refs) != 2 || !slices.Equal(refs[0].Missing, []string{"users:stu-new", "classes:cls-new"}) || refs[1].Status != rosters.RefOpen {
		t.Fatalf("held refs %+v: %v", refs, err)
	}

	user := `{"users":[{"sourcedId":"stu-new","status":"active","dateLastModified":"2026-09-01T08:00:00Z","enabledUser":true,"givenName":"N","familyName":"N",
	  "roles":[{"roleType":"primary","role":"student","org":{"sourcedId":"sch-1"}}]}]}`
	if code, out := f.postRaw(t, "/v1/roster/users", "roster", "application/json", []byte(user)); code != http.StatusAccepted ||
		out["upload"].(map[string]any)["released"] != 0.0 {
		t.Fatalf("user: %d %v", code, out)
	}
	class := `{"classes":[{"sourcedId":"cls-new","status":"active","dateLastModified":"2026-09-01T08:00:00Z","title":"New","classType":"scheduled",
	  "course":{"sourcedId":"crs-1"},"school":{"sourcedId":"sch-1"},"terms":[{"sourcedId":"term-1"}]}]}`
	code, out = f.postRaw(t, "/v1/roster/classes", "roster", "application/json", []byte(class))
	if code != http.StatusAccepted || out["upload"].(map[string]any)["released"] != 2.0 {
		t.Fatalf("class: %d %v", code, out)
	}
	recs, n := f.rosterSince(t, n)
	if got, want := fmt.Sprint(recs), "[enrollment:enr-ok:active user:stu-new:active class:cls-new:active enrollment:enr-new-1:active enrollment:enr-new-2:active]"; got != want {
		t.Fatalf("raw got %s, want %s", got, want)
	}
	if refs, err := f.rosters.HeldRefs(ctx, "d1", 10); err != nil || len(refs) != 0 {
		t.Fatalf("held refs after release %+v: %v", refs, err)
	}

	// A hold past its bound expires: the next upload marks it, and it is never sent.
	orphan := `{"enrollments":[{"sourcedId":"enr-orphan","status":"active","dateLastModified":"2026-09-01T08:00:00Z","user":{"sourcedId":"stu-ghost"},"class":{"sourcedId":"cls-1"},"school":{"sourcedId":"sch-1"},"role":"student"}]}`
	if code, out := f.postRaw(t, "/v1/roster/enrollments", "roster", "application/json", []byte(orphan)); code != http.StatusAccepted {
		t.Fatalf("orphan: %d %v", code, out)
	}
	if err := f.rosters.SetSettings(ctx, "d1", rosters.Settings{MaxDeletedPct: 10, MaxChangedPct: 75, MinLedgerRows: 10, HoldRefsFor: time.Hour}); err != nil {
		t.Fatal(err)
	}
	later := rosters.New(f.pools).WithClock(func() time.Time { return time.Now().Add(8 * 24 * time.Hour) })
	plan, err := later.Plan(ctx, &rosters.Upload{TenantID: "d1", SourceID: "sis", Kind: "test", ReceivedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Expired != 1 || plan.Released != 0 {
		t.Fatalf("plan expired %d released %d", plan.Expired, plan.Released)
	}
	if _, err := plan.Commit(ctx, "test", f.produceTo(f.kcfg.Topics().Raw), nil, nil); err != nil {
		t.Fatal(err)
	}
	refs, err = f.rosters.HeldRefs(ctx, "d1", 10)
	if err != nil || len(refs) != 1 || refs[0].Status != rosters.RefExpired || refs[0].SourcedID != "enr-orphan" {
		t.Fatalf("held refs %+v: %v", refs, err)
	}
	if recs, _ := f.rosterSince(t, n); len(recs) != 0 {
		t.Fatalf("sent %v", recs)
	}
}

// TestApprovalComparesHeldReferencesAgain: an upload the quality gate held (most of its enrollments
// reference a student nobody sent) is approved after another source sent the student: its enrollments
// go out with it instead of waiting for a later upload.
func TestApprovalComparesHeldReferencesAgain(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.upload(t, district(t, studentIDs(1, 2)))
	_, n := f.rosterSince(t, 0)

	var enr []string
	for i := range 10 {
		user := "stu-late"
		if i == 0 {
			user = "stu-01"
		}
		enr = append(enr, fmt.Sprintf(`{"sourcedId":"enr-late-%d","status":"active","dateLastModified":"2026-09-01T08:00:00Z","user":{"sourcedId":%q},`+
			`"class":{"sourcedId":"cls-2"},"school":{"sourcedId":"sch-1"},"role":"student"}`, i, user))
	}
	code, out := f.postRaw(t, "/v1/roster/enrollments", "roster", "application/json", []byte(`{"enrollments":[`+strings.Join(enr, ",")+`]}`))
	up := out["upload"].(map[string]any)
	if hold, _ := up["hold"].(map[string]any); code != http.StatusAccepted || up["status"] != "held" || hold["gate"] != "held_references" {
		t.Fatalf("enrollments: %d %v", code, out)
	}

	user := `{"users":[{"sourcedId":"stu-late","status":"active","dateLastModified":"2026-09-01T08:00:00Z","enabledUser":true,"givenName":"L","familyName":"L",
	  "roles":[{"roleType":"primary","role":"student","org":{"sourcedId":"sch-1"}}]}]}`
	if code, out := f.postRaw(t, "/v1/roster/users", "hr", "application/json", []byte(user)); code != http.StatusAccepted {
		t.Fatalf("user from another source: %d %v", code, out)
	}
	res, err := f.rosters.Approve(ctx, "d1", up["id"].(string), "ops@example.org", f.produceTo(f.kcfg.Topics().Raw))
	if err != nil || res.Sent != 10 || res.Held != 0 {
		t.Fatalf("approving: %+v, %v", res, err)
	}
	recs, _ := f.rosterSince(t, n)
	if got := fmt.Sprint(recs); len(recs) != 11 || !strings.HasPrefix(got, "[user:stu-late:active enrollment:enr-late-0:active") || !strings.HasSuffix(got, "enrollment:enr-late-9:active]") {
		t.Fatalf("raw got %v", recs)
	}
	if refs, err := f.rosters.HeldRefs(ctx, "d1", 10); err != nil || len(refs) != 0 {
		t.Fatalf("held refs %+v: %v", refs, err)
	}
}

var timeZero time.Time

func itoa(n int) string { return fmt.Sprint(n) }

func fmtJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
