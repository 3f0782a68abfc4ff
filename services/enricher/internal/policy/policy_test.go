package policy

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy/privacy"
)

func ptr[T any](v T) *T { return &v }

var key = []byte("0123456789abcdef0123456789abcdef")

func TestFieldTableMatchesTheCatalogue(t *testing.T) {
	var catalogue []string
	for _, f := range privacy.Fields() {
		catalogue = append(catalogue, f.Path)
	}
	slices.Sort(catalogue)
	if got := slices.Sorted(maps.Keys(fieldTable())); !slices.Equal(got, catalogue) {
		t.Fatalf("implemented fields %v\ncatalogue %v", got, catalogue)
	}
	for _, typ := range privacy.ConsentEventTypes() {
		if !records.IsKnownType(typ) || records.IsRosterType(typ) {
			t.Errorf("consent event type %q is not a learning event type", typ)
		}
	}
}

func rosterUser() *records.EnrichedEvent {
	ev := &records.EnrichedEvent{Type: records.TypeRosterUser, Actor: records.EnrichedActor{SISID: ptr("S1")}, SchoolID: ptr("sch1")}
	ev.RosterUser = &records.RosterUser{SourcedID: "S1", GivenName: "Ada", FamilyName: "Lovelace", MiddleName: ptr("King"),
		Email: ptr("ada@springfield.k12.us"), Phone: ptr("+1 555 0134"), SMS: ptr("555-0177"), Username: ptr("ada.l"),
		UserMasterIdentifier: ptr("STATE-7"), BirthDate: ptr(time.Date(2015, 3, 9, 0, 0, 0, 0, time.UTC)),
		UserIds: []records.RosterUserID{{Type: "state_id", Identifier: "STATE-7"}}, Metadata: map[string]string{"edtech.consent": "granted"}}
	return ev
}

func sessionEvent() *records.EnrichedEvent {
	return &records.EnrichedEvent{Type: records.TypeSession, Actor: records.EnrichedActor{SISID: ptr("S1")},
		Session: &records.SessionEvent{Action: records.SessionLogin, Device: ptr("ipad-7f3a"), App: ptr("reader")}}
}

func TestTemplates(t *testing.T) {
	compiled := func(name string) *Compiled {
		p, err := privacy.Template(name)
		if err != nil {
			t.Fatal(err)
		}
		p.Version = 3
		return Compile(p, key)
	}
	tests := []struct {
		template string
		age      Age
		check    func(t *testing.T, u, s *records.EnrichedEvent)
	}{
		{privacy.TemplateFERPA, Under13, func(t *testing.T, u, s *records.EnrichedEvent) {
			// FERPA has no age rules: a child's record keeps names and ids; phones are masked.
			if *u.Actor.SISID != "S1" || u.RosterUser.GivenName != "Ada" || *u.RosterUser.Email != "ada@springfield.k12.us" ||
				*u.RosterUser.Phone != "***34" || *u.RosterUser.SMS != "***77" || *s.Session.Device != "ipad-7f3a" {
				t.Errorf("ferpa child: %+v %+v", u.RosterUser, s.Session)
			}
		}},
		{privacy.TemplateCOPPA, Adult, func(t *testing.T, u, s *records.EnrichedEvent) {
			if *u.Actor.SISID != "S1" || u.RosterUser.FamilyName != "Lovelace" || *u.RosterUser.Phone != "***34" {
				t.Errorf("coppa over 13: %+v", u.RosterUser)
			}
		}},
		{privacy.TemplateCOPPA, Under13, func(t *testing.T, u, s *records.EnrichedEvent) {
			usr := u.RosterUser
			if *u.Actor.SISID != keyring.Pseudonym(key, "S1") || usr.SourcedID != keyring.Pseudonym(key, "S1") {
				t.Errorf("ids not pseudonymised (joinable within the district): %s, %s", *u.Actor.SISID, usr.SourcedID)
			}
			if usr.GivenName != "A***" || usr.FamilyName != "L***" || usr.MiddleName != nil || usr.Email != nil ||
				usr.Phone != nil || usr.SMS != nil || usr.Username != nil || len(usr.UserIds) != 0 || len(usr.Metadata) != 0 {
				t.Errorf("coppa child user: %+v", usr)
			}
			if !usr.BirthDate.Equal(time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC)) {
				t.Errorf("birth date not reduced to the year: %v", usr.BirthDate)
			}
			if *usr.UserMasterIdentifier != keyring.Pseudonym(key, "STATE-7") {
				t.Errorf("state id = %s", *usr.UserMasterIdentifier)
			}
			if s.Session.Device != nil || *s.Session.App != "reader" || *u.SchoolID != "sch1" {
				t.Errorf("coppa child session: %+v", s.Session)
			}
		}},
		{privacy.TemplateDPDP, Under18, func(t *testing.T, u, s *records.EnrichedEvent) {
			if *u.Actor.SISID == "S1" || u.RosterUser.Email != nil || u.RosterUser.GivenName != "A***" || s.Session.Device != nil {
				t.Errorf("dpdp minor: %+v", u.RosterUser)
			}
		}},
		{privacy.TemplateDPDP, Adult, func(t *testing.T, u, s *records.EnrichedEvent) {
			if *u.Actor.SISID != "S1" || *u.RosterUser.Email != "ada@springfield.k12.us" {
				t.Errorf("dpdp adult: %+v", u.RosterUser)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.template, func(t *testing.T) {
			c := compiled(tt.template)
			if c.Version != 3 {
				t.Fatalf("version = %d", c.Version)
			}
			u, s := rosterUser(), sessionEvent()
			if r := c.Apply(u, tt.age); r != "" {
				t.Fatalf("rejected %s", r)
			}
			c.Apply(s, tt.age)
			tt.check(t, u, s)
		})
	}

	// Unknown ages and consent.
	ferpa, coppa, dpdp := compiled(privacy.TemplateFERPA), compiled(privacy.TemplateCOPPA), compiled(privacy.TemplateDPDP)
	if ferpa.UnknownAge() != Adult || coppa.UnknownAge() != Under13 || dpdp.UnknownAge() != Under18 {
		t.Error("unknown age classes")
	}
	consent := []struct {
		c    *Compiled
		typ  string
		age  *int
		want bool
	}{
		{dpdp, records.TypeSession, ptr(16), true},
		{dpdp, records.TypeContentView, ptr(17), true},
		{dpdp, records.TypeContentView, nil, true}, // unknown age counts as a minor under DPDP
		{dpdp, records.TypeSession, ptr(18), false},
		{dpdp, records.TypeAttendance, ptr(10), false}, // educational records need no consent
		{coppa, records.TypeSession, ptr(10), false},
		{ferpa, records.TypeSession, nil, false},
	}
	for _, c := range consent {
		if got := c.c.NeedsConsent(c.typ, c.age); got != c.want {
			t.Errorf("NeedsConsent(%s, %v) = %v", c.typ, c.age, got)
		}
	}
	if dpdp.ConsentKey() != privacy.DefaultConsentKey || ferpa.ConsentKey() != "" {
		t.Error("consent keys")
	}
	for v, want := range map[string]bool{"granted": true, " TRUE ": true, "yes": true, "revoked": false, "": false, "no": false} {
		if ConsentGiven(v) != want {
			t.Errorf("ConsentGiven(%q) != %v", v, want)
		}
	}
}

func TestPseudonymsDifferAcrossDistricts(t *testing.T) {
	p, _ := privacy.Template(privacy.TemplateCOPPA)
	a, b := rosterUser(), rosterUser()
	Compile(p, key).Apply(a, Under13)
	Compile(p, []byte("another district's 32-byte key!!")).Apply(b, Under13)
	if *a.Actor.SISID == *b.Actor.SISID {
		t.Fatal("the same SIS id pseudonymises alike in two districts")
	}
}

func TestRejectLeavesTheRecordAlone(t *testing.T) {
	p := privacy.Policy{Template: privacy.TemplateCustom, UnknownAgeAs: privacy.AgeAdult,
		Fields:   map[string]string{"attendance.reason": privacy.ActionReject, "actor.sis_id": privacy.ActionDrop},
		Identity: privacy.Identity{MatchKey: privacy.MatchNone}}
	c := Compile(p, key)
	ev := &records.EnrichedEvent{Type: records.TypeAttendance, Actor: records.EnrichedActor{SISID: ptr("S1")},
		Attendance: &records.Attendance{Status: "absent", Reason: ptr("doctor's appointment")}}
	if got := c.Apply(ev, Adult); got != "attendance.reason" || ev.Actor.SISID == nil {
		t.Fatalf("Apply = %q, sis id %v", got, ev.Actor.SISID)
	}
	ev.Attendance.Reason = nil
	if got := c.Apply(ev, Adult); got != "" || ev.Actor.SISID != nil {
		t.Fatalf("without the field: Apply = %q, sis id %v", got, ev.Actor.SISID)
	}
	if got := c.Apply(sessionEvent(), Adult); got != "" {
		t.Fatalf("a rule of attendance rejected a session: %s", got)
	}
}

func TestAgeOf(t *testing.T) {
	birth := time.Date(2013, 6, 15, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		at   time.Time
		age  Age
		band string
	}{
		{time.Date(2026, 6, 14, 23, 0, 0, 0, time.UTC), Under13, "under_13"},
		{time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC), Under18, "13_17"},
		{time.Date(2031, 6, 14, 0, 0, 0, 0, time.UTC), Under18, "13_17"},
		{time.Date(2031, 6, 15, 0, 0, 0, 0, time.UTC), Adult, "18_plus"},
	}
	for _, tt := range tests {
		if age, band := AgeOf(birth, tt.at); age != tt.age || band != tt.band {
			t.Errorf("AgeOf(%v) = %v %s, want %v %s", tt.at, age, band, tt.age, tt.band)
		}
	}
}

func TestMatchKeyAndNamespaces(t *testing.T) {
	u := rosterUser().RosterUser
	u.Identifier = ptr("ID-1")
	u.Metadata["state_id"] = "META-1"
	tests := map[string]string{
		privacy.MatchUserMasterIdentifier: "STATE-7", privacy.MatchIdentifier: "ID-1",
		"user_id:State_ID": "STATE-7", "user_id:ssn": "", "metadata:state_id": "META-1", privacy.MatchNone: "",
	}
	for mk, want := range tests {
		c := Compile(privacy.Policy{Identity: privacy.Identity{MatchKey: mk, Namespaces: map[string]string{"canvas": "sis"}}}, key)
		if got := c.MatchKey(u); got != want {
			t.Errorf("MatchKey(%s) = %q, want %q", mk, got, want)
		}
		if c.Namespace("canvas") != "sis" || c.Namespace("sis") != "sis" || c.Namespace("lms") != "lms" {
			t.Error("namespaces")
		}
	}
}

func TestMask(t *testing.T) {
	tests := []struct{ in, kind, want string }{
		{"Ada", privacy.KindText, "A***"},
		{"Émile", privacy.KindText, "É***"},
		{"x", privacy.KindID, "***"},
		{"ada@example.org", privacy.KindEmail, "a***@example.org"},
		{"not-an-email", privacy.KindEmail, "n***"},
		{"(555) 010-0199", privacy.KindPhone, "***99"},
		{"12", privacy.KindPhone, "***"},
	}
	for _, tt := range tests {
		if got := mask(tt.in, tt.kind); got != tt.want {
			t.Errorf("mask(%q, %s) = %q, want %q", tt.in, tt.kind, got, tt.want)
		}
	}
}
