package enrich_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/keyring/keyringtest"
	"os"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/privacy"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/tenancy/timezones"
	"github.com/edtech-analytics/platform/services/enricher/internal/enrich"
	"github.com/edtech-analytics/platform/services/enricher/internal/identity"
	"github.com/edtech-analytics/platform/services/enricher/internal/policy"
	"github.com/edtech-analytics/platform/services/enricher/internal/roster"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
)

var now = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// erased is an in-memory erasure set (the service's is loaded from PostgreSQL and fed by the control topic).
type erased struct {
	districts map[string]bool
	students  map[string]bool // tenant/internal id
}

func (e erased) District(tenant string) bool { return e.districts[tenant] }
func (e erased) Student(tenant, id string) bool {
	return e.districts[tenant] || e.students[tenant+"/"+id]
}

type env struct {
	t         testing.TB
	districts *tenants.Store
	policy    *privacy.Store
	codec     *records.Codec
	enr       *enrich.Enricher
	erased    erased
	keys      *keyring.Keyring
	zones     *timezones.Store
	pool      *pgxpool.Pool
	seq       int
}

func newEnv(t testing.TB, ids ...string) *env {
	t.Helper()
	pool, _ := pgtest.New(t)
	ctx := t.Context()
	if err := tenancy.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	store := tenants.New(fleet.New(pool, os.Getenv))
	for _, id := range ids {
		if _, err := store.Create(ctx, id, "District "+id); err != nil {
			t.Fatal(err)
		}
	}
	codec, err := records.NewCodec(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, districts: store, policy: privacy.New(pool), codec: codec, erased: erased{map[string]bool{}, map[string]bool{}},
		keys: keyringtest.Over(t, pool), zones: timezones.New(pool), pool: pool}
	e.enr = enrich.New(codec, enrich.Deps{Tenants: store, Policies: policy.Source{Store: e.policy}, Zones: e.zones,
		Identities: identity.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 1000), Context: roster.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 1000), Erased: e.erased, Keys: e.keys})
	return e
}

func (e *env) setPolicy(tenant, template string, edit func(*privacy.Policy)) {
	e.t.Helper()
	p, err := privacy.Template(template)
	if err != nil {
		e.t.Fatal(err)
	}
	if edit != nil {
		edit(&p)
	}
	if _, err := e.policy.SetPolicy(e.t.Context(), tenant, p, "test"); err != nil {
		e.t.Fatal(err)
	}
}

// event builds a raw record of tenant about sis with the given payload.
func (e *env) event(tenant, source, sis string, payload any) *records.RawEvent {
	e.t.Helper()
	e.seq++
	ev := &records.RawEvent{EventID: fmt.Sprintf("00000000-0000-4000-8000-%012d", e.seq), TenantID: tenant, SourceID: source,
		OccurredAt: now, ReceivedAt: now, SchemaVersion: 1, Actor: records.Actor{SISID: sis, Role: "student"}}
	if err := ev.SetPayload(payload); err != nil {
		e.t.Fatal(err)
	}
	return ev
}

func (e *env) record(ev *records.RawEvent) *kgo.Record {
	e.t.Helper()
	b, err := e.codec.Encode(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	return &kgo.Record{Topic: "raw", Partition: 2, Offset: 41, Key: []byte(ev.TenantID), Value: b,
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-abc-def-01")}}}
}

func (e *env) run(rec *kgo.Record) enrich.Outcome {
	e.t.Helper()
	out, err := e.enr.Enrich(context.Background(), rec)
	if err != nil {
		e.t.Fatalf("Enrich: %v", err)
	}
	return out
}

// enriched enriches ev and fails unless it was enriched.
func (e *env) enriched(ev *records.RawEvent) *records.EnrichedEvent {
	e.t.Helper()
	out := e.run(e.record(ev))
	if out.Enriched == nil {
		e.t.Fatalf("%s of %s not enriched: %+v", ev.Type, ev.Actor.SISID, out)
	}
	return out.Enriched
}

func userRecord(sourced string, birth *time.Time, modified time.Time, role string, meta map[string]string) *records.RosterUser {
	return &records.RosterUser{SourcedID: sourced, Status: records.RosterActive, DateLastModified: modified, EnabledUser: true,
		GivenName: "Given", FamilyName: "Family", Email: ptr(sourced + "@example.org"), BirthDate: birth,
		Roles: []records.RosterRole{{RoleType: "primary", Role: role, OrgSourcedID: "sch1"}}, Grades: []string{"05"}, Metadata: meta}
}

func session(device string) *records.SessionEvent {
	return &records.SessionEvent{Action: records.SessionLogin, Device: &device}
}

func TestDeadLetterReasons(t *testing.T) {
	e := newEnv(t, "d1", "d2")
	e.setPolicy("d2", privacy.TemplateFERPA, func(p *privacy.Policy) {
		p.Template = privacy.TemplateCustom
		p.Fields["attendance.reason"] = privacy.ActionReject
	})
	valid := func(tenant string) *records.RawEvent {
		return e.event(tenant, "sis", "S1", &records.Attendance{Status: "absent", Date: now, Reason: ptr("flu")})
	}
	encode := func(ev *records.RawEvent) []byte {
		return e.record(ev).Value
	}
	unknownID := append([]byte{0, 0, 1, 0x86, 0x9f}, encode(valid("d1"))[5:]...)
	v2 := valid("d1")
	v2.SchemaVersion = 2
	noSIS := valid("d1")
	noSIS.Actor.SISID = ""
	badStatus := e.event("d1", "sis", "S1", userRecord("S1", nil, now, "student", nil))
	badStatus.RosterUser.Status = "deleted"
	mismatch := valid("d1")
	mismatch.ContentView = &records.ContentView{ContentID: "c", ContentType: "video"}
	before1970 := valid("d1")
	before1970.OccurredAt = records.MinTime.Add(-time.Millisecond)
	after2105 := valid("d1")
	after2105.OccurredAt = records.EndTime
	nulSIS := valid("d1") // PostgreSQL refuses a NUL byte: it must never reach the identity tables
	nulSIS.Actor.SISID = "seca-st9\x00x"
	nulSchool := valid("d1")
	nulSchool.SchoolID = ptr("sch\x00ool")
	badName := e.event("d1", "sis", "S1", userRecord("S1", nil, now, "student", nil))
	badName.RosterUser.GivenName = "Ada\xff"

	tests := []struct {
		name, reason, field string
		value               []byte
		decodable           bool
		message             string // of the first error, when given
	}{
		{"not avro", records.ReasonUndecodable, "", []byte("not avro"), false, ""},
		{"unknown schema id", records.ReasonUnknownSchema, "", unknownID, false, ""},
		{"unsupported schema version", records.ReasonUnknownSchema, "schema_version", encode(v2), true, ""},
		{"missing sis id", records.ReasonInvalidField, "actor.sis_id", encode(noSIS), true, ""},
		{"bad roster status", records.ReasonInvalidField, "roster_user.status", encode(badStatus), true, ""},
		{"two payloads", records.ReasonInvalidField, "type", encode(mismatch), true, ""},
		{"occurred before 1970", records.ReasonInvalidField, "occurred_at", encode(before1970), true, records.OutOfRange},
		{"occurred after 2105", records.ReasonInvalidField, "occurred_at", encode(after2105), true, records.OutOfRange},
		{"NUL in the sis id", records.ReasonInvalidField, "actor.sis_id", encode(nulSIS), true, "must not contain control characters"},
		{"NUL in the school id", records.ReasonInvalidField, "school_id", encode(nulSchool), true, "must not contain control characters"},
		{"invalid UTF-8 in a roster name", records.ReasonInvalidField, "roster_user.given_name", encode(badName), true, "must be valid UTF-8"},
		{"unknown tenant", records.ReasonOther, "tenant_id", encode(valid("nowhere")), true, ""},
		{"policy violation", records.ReasonPolicyViolation, "attendance.reason", encode(valid("d2")), true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &kgo.Record{Topic: "raw", Partition: 3, Offset: 77, Key: []byte("d1"), Value: tt.value,
				Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-1-2-01")}}}
			out := e.run(rec)
			d := out.DLQ
			if d == nil || out.Enriched != nil {
				t.Fatalf("outcome = %+v, want a dead letter", out)
			}
			if d.Reason != tt.reason || d.Stage != records.StageEnricher || !bytes.Equal(d.Original, tt.value) ||
				len(d.Headers) != 1 || string(d.Headers[0].Value) != "00-1-2-01" || *d.SourceOffset != 77 || *d.SourcePartition != 3 {
				t.Fatalf("dead letter = %+v", d)
			}
			if tt.field != "" && (len(d.Errors) == 0 || d.Errors[0].Field != tt.field) {
				t.Fatalf("errors = %+v, want field %s", d.Errors, tt.field)
			}
			if tt.message != "" && d.Errors[0].Message != tt.message {
				t.Fatalf("error message = %q, want %q", d.Errors[0].Message, tt.message)
			}
			if (d.TenantID != nil) != tt.decodable {
				t.Fatalf("tenant id = %v", d.TenantID)
			}
			if _, err := e.codec.Encode(d); err != nil {
				t.Fatalf("dead letter does not encode: %v", err)
			}
		})
	}
	// The same event without the rejected field passes.
	ok := valid("d2")
	ok.Attendance.Reason = nil
	if got := e.enriched(ok); got.PolicyVersion != 1 {
		t.Fatalf("policy version = %d", got.PolicyVersion)
	}
}

func TestRosterContextAndDerivedFields(t *testing.T) {
	e := newEnv(t, "d1")
	birth := time.Date(2013, 6, 15, 0, 0, 0, 0, time.UTC) // 13 on the event day
	due := now.Add(-time.Hour)
	e.enriched(e.event("d1", "sis", "sys", &records.RosterAcademicSession{SourcedID: "fall", Status: records.RosterActive, DateLastModified: now,
		Type: "semester", StartDate: now.AddDate(0, 0, -30), EndDate: now.AddDate(0, 0, 60), SchoolYear: "2027"}))
	e.enriched(e.event("d1", "sis", "sys", &records.RosterClass{SourcedID: "c1", Status: records.RosterActive, DateLastModified: now,
		SchoolSourcedID: "sch1", CourseSourcedID: "math7", Grades: []string{"07"}, TermSourcedIds: []string{"fall"}}))
	e.enriched(e.event("d1", "sis", "sys", &records.RosterLineItem{SourcedID: "hw1", Status: records.RosterActive, DateLastModified: now,
		ClassSourcedID: "c1", DueDate: due}))
	userEv := e.event("d1", "sis", "S1", userRecord("S1", &birth, now, "student", nil))
	userEv.RosterUser.Grades = []string{"08"}
	user := e.enriched(userEv)
	if user.RosterUser == nil || user.RosterUser.SourcedID != "S1" || *user.Derived.AgeBand != "13_17" || *user.Derived.Under13 {
		t.Fatalf("roster user = %+v derived %+v", user.RosterUser, user.Derived)
	}

	att := e.event("d1", "lms", "S1", &records.Attendance{Status: "present", Date: now})
	att.SourceID, att.ClassID = "sis", ptr("c1")
	got := e.enriched(att)
	d := got.Derived
	if got.Actor.InternalID != user.Actor.InternalID || *got.Actor.SISID != "S1" {
		t.Fatalf("event actor %+v, roster actor %+v", got.Actor, user.Actor)
	}
	if *got.SchoolID != "sch1" || *d.GradeLevel != "08" || *d.AgeBand != "13_17" || *d.Under13 || !*d.Under18 ||
		d.AcademicSessionID == nil || *d.AcademicSessionID != "fall" {
		t.Fatalf("joined context: school %v derived %+v", got.SchoolID, d)
	}
	if b, err := e.codec.Encode(got); err != nil || len(b) == 0 {
		t.Fatalf("the enriched record with its academic session does not encode: %v", err)
	}

	late := []struct {
		name string
		sub  *records.AssignmentSubmission
		want bool
	}{
		{"due from the line item", &records.AssignmentSubmission{AssignmentID: "hw1", SubmittedAt: now, Status: "submitted"}, true},
		{"own due time wins", &records.AssignmentSubmission{AssignmentID: "hw1", DueAt: ptr(now.Add(time.Hour)), SubmittedAt: now, Status: "submitted"}, false},
	}
	for _, tt := range late {
		got := e.enriched(e.event("d1", "sis", "S1", tt.sub))
		if got.Derived.Late == nil || *got.Derived.Late != tt.want {
			t.Errorf("%s: late = %v", tt.name, got.Derived.Late)
		}
	}
	if got := e.enriched(e.event("d1", "sis", "S1", &records.AssignmentSubmission{AssignmentID: "unknown", SubmittedAt: now, Status: "submitted"})); got.Derived.Late != nil {
		t.Errorf("late without a due time = %v", *got.Derived.Late)
	}
	logout := e.enriched(e.event("d1", "sis", "S1", &records.SessionEvent{Action: records.SessionLogout, DurationSeconds: ptr(int64(1800))}))
	if logout.Derived.SessionSeconds == nil || *logout.Derived.SessionSeconds != 1800 {
		t.Errorf("session seconds = %v", logout.Derived.SessionSeconds)
	}

	// A student not yet rostered is not dropped: it gets an id, without context.
	stranger := e.enriched(e.event("d1", "sis", "S9", &records.Attendance{Status: "present", Date: now, MinutesPresent: ptr(30)}))
	if stranger.Actor.InternalID == "" || stranger.Actor.InternalID == user.Actor.InternalID || stranger.Derived.AgeBand != nil ||
		stranger.Derived.Under13 != nil || stranger.SchoolID != nil {
		t.Fatalf("unrostered student = %+v", stranger)
	}
	// ...and keeps it when its roster arrives.
	if later := e.enriched(e.event("d1", "sis", "S9", userRecord("S9", nil, now, "student", nil))); later.Actor.InternalID != stranger.Actor.InternalID {
		t.Fatalf("roster gave S9 a new id %s (was %s)", later.Actor.InternalID, stranger.Actor.InternalID)
	}
	// Records about no person carry the nil id.
	class := e.enriched(e.event("d1", "sis", "sys", &records.RosterCourse{SourcedID: "math7", Status: records.RosterActive, DateLastModified: now, Grades: []string{"07"}}))
	if class.Actor.InternalID != enrich.NoPerson || class.Actor.Pseudonym != "" {
		t.Fatalf("course actor = %+v", class.Actor)
	}
	// A deleted user takes its context with it.
	gone := userRecord("S1", nil, now.Add(time.Minute), "student", nil)
	gone.Status = records.RosterToBeDeleted
	e.enriched(e.event("d1", "sis", "S1", gone))
	if after := e.enriched(e.event("d1", "sis", "S1", &records.Attendance{Status: "present", Date: now})); after.Derived.AgeBand != nil {
		t.Fatalf("deleted user's birth date still joined: %v", *after.Derived.AgeBand)
	}
}

func TestPolicyTemplatesThroughTheEnricher(t *testing.T) {
	e := newEnv(t, "ferpa", "coppa", "dpdp")
	for _, tmpl := range []string{privacy.TemplateFERPA, privacy.TemplateCOPPA, privacy.TemplateDPDP} {
		e.setPolicy(tmpl, tmpl, nil)
	}
	years := func(n int) *time.Time { b := now.AddDate(-n, 0, -1); return &b }
	granted := map[string]string{privacy.DefaultConsentKey: "granted"}
	people := []struct {
		sis   string
		birth *time.Time
		role  string
		meta  map[string]string
	}{
		{"child", years(10), "student", nil},
		{"teen", years(15), "student", granted},
		{"adult", years(19), "student", nil},
		{"unknown", nil, "student", nil},
		{"teacher", nil, "teacher", nil},
	}
	// kept reports whether a login of sis was enriched, and its actor's SIS id and device if so.
	type seen struct {
		kept        bool
		sis, device string
	}
	login := func(tenant, sis, role string) seen {
		ev := e.event(tenant, "sis", sis, session("ipad-1"))
		ev.Actor.Role = role
		out := e.run(e.record(ev))
		if out.Enriched == nil {
			if out.Suppressed != enrich.SuppressedNoConsent {
				t.Fatalf("%s/%s: outcome %+v", tenant, sis, out)
			}
			return seen{}
		}
		got := seen{kept: true, sis: *out.Enriched.Actor.SISID}
		if d := out.Enriched.Session.Device; d != nil {
			got.device = *d
		}
		if out.Enriched.PolicyVersion != 1 {
			t.Fatalf("policy version %d", out.Enriched.PolicyVersion)
		}
		return got
	}
	clear, hidden := func(sis string) seen { return seen{true, sis, "ipad-1"} }, seen{kept: true}
	tests := []struct {
		tenant string
		want   map[string]seen // by person; hidden means pseudonymised SIS id and no device
	}{
		{"ferpa", map[string]seen{"child": clear("child"), "teen": clear("teen"), "adult": clear("adult"),
			"unknown": clear("unknown"), "teacher": clear("teacher")}},
		{"coppa", map[string]seen{"child": hidden, "teen": clear("teen"), "adult": clear("adult"),
			"unknown": hidden, "teacher": clear("teacher")}},
		// DPDP: minors (and students of unknown age) are shown only pseudonymised, and their behavioural
		// events need recorded consent.
		{"dpdp", map[string]seen{"child": {}, "teen": hidden, "adult": clear("adult"), "unknown": {},
			"teacher": clear("teacher")}},
	}
	for _, tt := range tests {
		t.Run(tt.tenant, func(t *testing.T) {
			for _, p := range people {
				roster := e.enriched(e.event(tt.tenant, "sis", p.sis, userRecord(p.sis, p.birth, now.Add(-time.Hour), p.role, p.meta)))
				if want := tt.want[p.sis]; want == hidden || want == (seen{}) && p.role == "student" {
					if roster.RosterUser.Email != nil || roster.RosterUser.GivenName != "G***" {
						t.Errorf("%s roster record not protected: %+v", p.sis, roster.RosterUser)
					}
				}
				got := login(tt.tenant, p.sis, p.role)
				want := tt.want[p.sis]
				if want == hidden {
					if !got.kept || got.sis != keyring.Pseudonym(mustTenant(t, e, tt.tenant).PseudonymKey, p.sis) || got.device != "" {
						t.Errorf("%s: %+v, want pseudonymised without device", p.sis, got)
					}
					continue
				}
				if got != want {
					t.Errorf("%s: %+v, want %+v", p.sis, got, want)
				}
			}
		})
	}

	// DPDP: an attendance mark (an educational record) of the child is kept without consent...
	att := e.enriched(e.event("dpdp", "sis", "child", &records.Attendance{Status: "present", Date: now}))
	if *att.Actor.SISID == "child" || !*att.Derived.Under13 {
		t.Fatalf("dpdp child attendance = %+v", att.Actor)
	}
	// ...and once the SIS records consent, the child's behavioural events are kept too.
	e.enriched(e.event("dpdp", "sis", "child", userRecord("child", years(10), now, "student", granted)))
	if got := login("dpdp", "child", "student"); !got.kept || got.device != "" {
		t.Fatalf("after consent: %+v", got)
	}
}

func mustTenant(t *testing.T, e *env, id string) tenants.Tenant {
	t.Helper()
	tn, err := e.districts.Tenant(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

func TestVendorSwitchThroughTheEnricher(t *testing.T) {
	e := newEnv(t, "d1")
	e.setPolicy("d1", privacy.TemplateFERPA, func(p *privacy.Policy) {
		p.Identity = privacy.Identity{MatchKey: "user_id:state_id", Namespaces: map[string]string{"canvas": "ps", "schoology": "ic"}}
	})
	withState := func(sourced string) *records.RosterUser {
		u := userRecord(sourced, nil, now, "student", nil)
		u.UserIds = []records.RosterUserID{{Type: "state_id", Identifier: "ST-1"}}
		return u
	}
	first := e.enriched(e.event("d1", "ps", "PS-1", withState("PS-1")))
	// The LMS, rostered from the SIS, sends the SIS's ids.
	if lms := e.enriched(e.event("d1", "canvas", "PS-1", session("x"))); lms.Actor.InternalID != first.Actor.InternalID {
		t.Fatalf("LMS event resolved to %s, roster to %s", lms.Actor.InternalID, first.Actor.InternalID)
	}
	// The district moves to another SIS (and LMS): the state id links the new ids to the same student.
	switched := e.enriched(e.event("d1", "ic", "IC-7", withState("IC-7")))
	after := e.enriched(e.event("d1", "schoology", "IC-7", session("x")))
	if switched.Actor.InternalID != first.Actor.InternalID || after.Actor.InternalID != first.Actor.InternalID {
		t.Fatalf("after the switch: roster %s, event %s, want %s", switched.Actor.InternalID, after.Actor.InternalID, first.Actor.InternalID)
	}
}

func TestErasedRecordsAreSuppressed(t *testing.T) {
	e := newEnv(t, "d1")
	a := e.enriched(e.event("d1", "sis", "A", session("x")))
	e.erased.students["d1/"+a.Actor.InternalID] = true
	for _, payload := range []any{session("x"), userRecord("A", nil, now, "student", nil),
		&records.RosterEnrollment{SourcedID: "e1", Status: records.RosterActive, DateLastModified: now, ClassSourcedID: "c1",
			SchoolSourcedID: "sch1", UserSourcedID: "A", Role: "student"}} {
		if out := e.run(e.record(e.event("d1", "sis", "A", payload))); out.Suppressed != enrich.SuppressedErased {
			t.Fatalf("record of an erased student: %+v", out)
		}
	}
	e.enriched(e.event("d1", "sis", "B", session("x")))
	// An erased district's records are suppressed before anything else, even once its tenant is gone.
	e.erased.districts["gone"] = true
	if out := e.run(e.record(e.event("gone", "sis", "B", session("x")))); out.Suppressed != enrich.SuppressedErased {
		t.Fatalf("record of an erased district: %+v", out)
	}
}

// seal seals ev's identifying fields under its actor's data key, as the gateway does.
func (e *env) seal(ev *records.RawEvent) *records.RawEvent {
	e.t.Helper()
	k, err := e.keys.SubjectKey(e.t.Context(), ev.TenantID, ev.Actor.SISID)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := ev.PackSealed(); err != nil {
		e.t.Fatal(err)
	}
	ev.IdentifyingStrings(func(_ string, p *string) { *p = k.Seal(*p) })
	return ev
}

// opened checks that the enriched record's identifying fields are sealed again, and opens them.
func (e *env) opened(ev *records.EnrichedEvent) *records.EnrichedEvent {
	e.t.Helper()
	ev.IdentifyingStrings(func(path string, p *string) {
		if !keyring.IsSealed(*p) {
			e.t.Fatalf("enriched %s is not sealed: %q", path, *p)
		}
		plain, err := e.keys.Open(e.t.Context(), ev.TenantID, *p)
		if err != nil {
			e.t.Fatalf("opening enriched %s: %v", path, err)
		}
		*p = plain
	})
	if err := ev.UnpackSealed(); err != nil {
		e.t.Fatal(err)
	}
	return ev
}

// TestSealedFieldsAreOpenedAndShreddedOnesSuppressed proves the enricher opens the fields the gateway
// sealed, seals the enriched record's identifying fields again under the same person's key, reads
// plaintext records as they are, dead-letters a value sealed for another district, and suppresses the
// records of a person whose key is shredded.
func TestSealedFieldsAreOpenedAndShreddedOnesSuppressed(t *testing.T) {
	e := newEnv(t, "d1", "d2")
	user := e.opened(e.enriched(e.seal(e.event("d1", "sis", "A", userRecord("A", nil, now, "student", nil)))))
	if u := user.RosterUser; user.Actor.SISID == nil || *user.Actor.SISID != "A" || u.GivenName != "Given" || *u.Email != "A@example.org" {
		t.Fatalf("sealed user enriched as actor %v, %+v", user.Actor.SISID, u)
	}
	a := e.opened(e.enriched(e.seal(e.event("d1", "sis", "A", session("tablet-7")))))
	if a.Actor.InternalID != user.Actor.InternalID || *a.Session.Device != "tablet-7" {
		t.Fatalf("sealed event enriched as %s (user %s), device %v", a.Actor.InternalID, user.Actor.InternalID, a.Session.Device)
	}
	birth := time.Date(2015, 2, 3, 0, 0, 0, 0, time.UTC)
	demo := e.opened(e.enriched(e.seal(e.event("d1", "sis", "A", &records.RosterDemographics{SourcedID: "A", Status: records.RosterActive,
		DateLastModified: now, BirthDate: &birth, Asian: ptr(true), Sex: ptr("female")}))))
	if d := demo.RosterDemographics; d.BirthDate == nil || !d.BirthDate.Equal(birth) || d.Asian == nil || !*d.Asian || *d.Sex != "female" {
		t.Fatalf("sealed demographics enriched as %+v", d)
	}
	// Plaintext records written before sealing began are read as they are.
	if b := e.enriched(e.event("d1", "sis", "B", session("x"))); *b.Actor.SISID != "B" {
		t.Fatalf("plaintext record enriched as %v", b.Actor.SISID)
	}

	// A record sealed for another district is a dead letter, not a silent mix-up.
	moved := e.seal(e.event("d1", "sis", "C", session("x")))
	moved.TenantID = "d2"
	if out := e.run(e.record(moved)); out.DLQ == nil || out.DLQ.Errors[0].Field != "actor.sis_id" {
		t.Fatalf("record sealed for another district: %+v", out)
	}

	// Once the student's key is shredded, every record of theirs, old or replayed, is suppressed.
	old := e.record(e.seal(e.event("d1", "sis", "A", session("x"))))
	if found, err := e.keys.ShredSubject(t.Context(), "d1", "A"); err != nil || !found {
		t.Fatalf("ShredSubject = %v, %v", found, err)
	}
	if out := e.run(old); out.Suppressed != enrich.SuppressedErased || out.Enriched != nil {
		t.Fatalf("record of a shredded student: %+v", out)
	}
	e.enriched(e.seal(e.event("d1", "sis", "B", session("x"))))
}

// Custom and generic events pass the enricher like any event: their payloads are carried, a policy
// that drops custom.properties removes the properties and keeps the name, and the free-text rule masks
// personal data in extension values.
func TestCustomAndGenericThroughTheEnricher(t *testing.T) {
	e := newEnv(t, "keeps", "drops")
	e.setPolicy("keeps", privacy.TemplateFERPA, nil)
	e.setPolicy("drops", privacy.TemplateFERPA, func(p *privacy.Policy) {
		if p.Fields == nil {
			p.Fields = map[string]string{}
		}
		p.Fields["custom.properties"] = privacy.ActionDrop
	})
	custom := func() *records.CustomEvent {
		return &records.CustomEvent{Name: "checkout.step", PropertyKeys: []string{"plan", "step"}, PropertyValues: []string{"pro", "2"}}
	}
	kept := e.enriched(e.event("keeps", "app", "s1", custom()))
	if kept.Type != records.TypeCustom || kept.Custom == nil || kept.Custom.Name != "checkout.step" ||
		fmt.Sprint(kept.Custom.PropertyKeys, kept.Custom.PropertyValues) != "[plan step] [pro 2]" {
		t.Fatalf("custom event kept as %+v", kept.Custom)
	}
	dropped := e.enriched(e.event("drops", "app", "s1", custom()))
	if dropped.Custom == nil || dropped.Custom.Name != "checkout.step" || len(dropped.Custom.PropertyKeys) != 0 || len(dropped.Custom.PropertyValues) != 0 {
		t.Fatalf("custom event under a policy dropping its properties: %+v", dropped.Custom)
	}
	g := e.enriched(e.event("keeps", "caliper", "s1", &records.GenericEvent{Standard: "caliper", Type: "ToolUseEvent", Action: "Used",
		ObjectID: "https://example.edu/t/1", ExtensionKeys: []string{"note"}, ExtensionValues: []string{"mail kid@example.org"}}))
	if g.Generic == nil || g.Generic.ObjectID != "https://example.edu/t/1" || fmt.Sprint(g.Generic.ExtensionValues) != "[mail [email]]" {
		t.Fatalf("generic event enriched as %+v", g.Generic)
	}
}

// The enricher stamps each event with the date it happened on in its district's time zone: a Chicago
// district's 10:30 p.m. event is on its own day, the next UTC day's 03:30 elsewhere.
func TestLocalDateInTheDistrictsZone(t *testing.T) {
	e := newEnv(t, "chi", "utc", "bad")
	ctx := t.Context()
	if _, err := e.zones.Set(ctx, "chi", "America/Chicago"); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 10, 6, 3, 30, 0, 0, time.UTC)
	for _, tt := range []struct {
		tenant string
		want   time.Time
	}{
		{"chi", time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)},
		{"utc", time.Date(2026, 10, 6, 0, 0, 0, 0, time.UTC)},
	} {
		ev := e.event(tt.tenant, "lms", "S1", session("ipad"))
		ev.OccurredAt = at
		got := e.enriched(ev)
		if got.LocalDate == nil || !got.LocalDate.Equal(tt.want) || got.LocalDate.Location() != time.UTC {
			t.Errorf("%s: local_date = %v, want %s", tt.tenant, got.LocalDate, tt.want.Format(time.DateOnly))
		}
	}

	// A zone that cannot be loaded is not replaced by UTC: the record is retried.
	if _, err := e.pool.Exec(ctx, "UPDATE control.tenants SET time_zone = 'Nowhere/Atlantis' WHERE id = 'bad'"); err != nil {
		t.Fatal(err)
	}
	ev := e.event("bad", "lms", "S1", session("ipad"))
	if out, err := e.enr.Enrich(ctx, e.record(ev)); !errors.Is(err, enrich.ErrTransient) {
		t.Fatalf("event of a district whose zone does not load: %+v, %v; want a transient error", out, err)
	}
}
