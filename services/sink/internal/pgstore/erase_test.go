package pgstore_test

import (
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/keyring/keyringtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/edtech-analytics/platform/services/sink/internal/sinktest"
	"github.com/google/uuid"
)

// rosterOf returns a student's roster records: the user (with the internal id the enricher resolved),
// an enrollment, demographics and a result, all under the user's sourced id.
func rosterOf(tenant, internalID, sourcedID string) []*records.EnrichedEvent {
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	base := func(typ string) *records.EnrichedEvent {
		return &records.EnrichedEvent{EventID: uuid.NewString(), TenantID: tenant, SourceID: "sis", Type: typ, OccurredAt: at,
			ReceivedAt: at, EnrichedAt: at, SchemaVersion: 1, Actor: records.EnrichedActor{Role: "system"}}
	}
	user := base(records.TypeRosterUser)
	user.Actor = records.EnrichedActor{InternalID: internalID, Role: "student"}
	user.RosterUser = &records.RosterUser{SourcedID: sourcedID, Status: records.RosterActive, DateLastModified: at, EnabledUser: true,
		GivenName: "Given " + sourcedID, FamilyName: "Family", Roles: []records.RosterRole{{RoleType: "primary", Role: "student", OrgSourcedID: "s1"}}}
	enr := base(records.TypeRosterEnrollment)
	enr.RosterEnrollment = &records.RosterEnrollment{SourcedID: "enr-" + sourcedID, Status: records.RosterActive, DateLastModified: at,
		ClassSourcedID: "c1", SchoolSourcedID: "s1", UserSourcedID: sourcedID, Role: "student"}
	demo := base(records.TypeRosterDemographics)
	sex := "female"
	demo.RosterDemographics = &records.RosterDemographics{SourcedID: sourcedID, Status: records.RosterActive, DateLastModified: at, Sex: &sex}
	res := base(records.TypeRosterResult)
	score := 9.0
	res.RosterResult = &records.RosterResult{SourcedID: "res-" + sourcedID, Status: records.RosterActive, DateLastModified: at,
		LineItemSourcedID: "li1", StudentSourcedID: sourcedID, ScoreStatus: "fully graded", Score: &score, ScoreDate: at}
	return []*records.EnrichedEvent{user, enr, demo, res}
}

// TestErasureMarkerDeletesTheStudentInOrder applies a partition holding two students' events and roster,
// the erasure marker of one, then more events (of the other, and one of the erased student the marker
// must not reach back to), in batches cut at every size, and proves the district state equals that of the
// records without the erased student's records before the marker: learning-event state and roster user,
// enrollment, demographics and result all gone, the other student's untouched.
func TestErasureMarkerDeletesTheStudentInOrder(t *testing.T) {
	pool, codec := setup(t)
	rng := rand.New(rand.NewPCG(5, 6))
	students := sinktest.Students(rng, []string{"north"}, 2)
	erased, kept := students["north"][0], students["north"][1]
	evs := sinktest.LearningEvents(rng, []string{"north"}, students, 200)
	before := slices.Concat(rosterOf("north", erased, "stu-a"), rosterOf("north", kept, "stu-b"), evs[:150])
	marker := records.NewStudentErased(uuid.NewString(), "north", erased, time.Now())
	after := evs[150:]
	all := slices.Concat(before, []*records.EnrichedEvent{marker}, after)

	var want []*records.EnrichedEvent
	for _, ev := range before {
		if ev.Actor.InternalID != erased && !about(ev, "stu-a") {
			want = append(want, ev)
		}
	}
	want = append(want, after...)

	for _, size := range []int{1, 7, len(all)} {
		t.Run("batches of "+strconv.Itoa(size), func(t *testing.T) {
			for _, table := range pgstore.Tables() {
				if _, err := pool.Exec(t.Context(), "TRUNCATE district_north."+table); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := pool.Exec(t.Context(), "DELETE FROM control.consumer_offsets"); err != nil {
				t.Fatal(err)
			}
			store := newStore(t, pool, codec)
			recs := encode(t, codec, "enriched", all)
			for i, r := range recs {
				r.Offset = int64(i)
			}
			for i := 0; i < len(recs); i += size {
				if err := store.Write(t.Context(), "enriched", 0, recs[i:min(i+size, len(recs))]); err != nil {
					t.Fatal(err)
				}
			}
			got := readState(t, one(pool), []string{"north"})
			exp := expected(want)
			if !maps.Equal(got, exp) {
				t.Errorf("state after the erasure:\n got %v\nwant %v", got, exp)
			}
			for _, table := range []string{"roster_users", "roster_enrollments", "roster_demographics", "roster_results"} {
				var n int
				if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM district_north."+table+" WHERE row_to_json("+table+")::text LIKE '%stu-a%'").Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 0 {
					t.Errorf("%s holds %d rows of the erased student", table, n)
				}
			}
		})
	}
}

// about reports whether a roster record concerns the user with sourced id sid.
func about(ev *records.EnrichedEvent, sid string) bool {
	switch {
	case ev.RosterEnrollment != nil:
		return ev.RosterEnrollment.UserSourcedID == sid
	case ev.RosterDemographics != nil:
		return ev.RosterDemographics.SourcedID == sid
	case ev.RosterResult != nil:
		return ev.RosterResult.StudentSourcedID == sid
	}
	return false
}

// TestSealedFieldsAreOpenedAndErasedPeopleSkipped applies roster records whose identifying fields the
// enricher sealed under each person's data key: the district tables get the plaintext, a record whose
// person's key was shredded is skipped as erased (it is nobody's to apply), and a sink without keys
// refuses to write sealed values rather than store them as they are.
func TestSealedFieldsAreOpenedAndErasedPeopleSkipped(t *testing.T) {
	f := setupFleet(t, false)
	pool, codec, ctx := f.control, f.codec, t.Context()
	master, err := keyring.ParseLocalKeys(keyringtest.MasterKeys())
	if err != nil {
		t.Fatal(err)
	}
	kr := keyring.New(pool, master, keyring.Options{})  // seals, as the enricher does
	sinkPool, err := pgstore.Connect(ctx, f.controlURL) // the sink opens on its own pool, in pgx's exec mode
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sinkPool.Close)
	students := sinktest.Students(rand.New(rand.NewPCG(7, 8)), []string{"north"}, 2)
	seal := func(ev *records.EnrichedEvent, sis string) *records.EnrichedEvent {
		k, err := kr.SubjectKey(ctx, "north", sis)
		if err != nil {
			t.Fatal(err)
		}
		if err := ev.PackSealed(); err != nil {
			t.Fatal(err)
		}
		ev.IdentifyingStrings(func(_ string, p *string) { *p = k.Seal(*p) })
		return ev
	}
	kept, gone := rosterOf("north", students["north"][0], "stu-a"), rosterOf("north", students["north"][1], "stu-b")
	var evs []*records.EnrichedEvent
	for i := range kept {
		evs = append(evs, seal(kept[i], "stu-a"), seal(gone[i], "stu-b"))
	}
	if _, err := kr.ShredSubject(ctx, "north", "stu-b"); err != nil {
		t.Fatal(err)
	}
	recs := encode(t, codec, "enriched", evs)
	for i, r := range recs {
		r.Offset = int64(i)
	}

	plain := newStore(t, pool, codec) // no keys
	if err := plain.Write(ctx, "enriched", 0, recs); err == nil || !strings.Contains(err.Error(), "MASTER_KEYS") {
		t.Fatalf("a sink without keys wrote sealed records: %v", err)
	}
	store, err := pgstore.New(group, pgstore.Deps{Fleet: fleet.New(pool, noEnv), Codec: codec,
		Keys: keyring.New(sinkPool, master, keyring.Options{}), Log: discard()})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Write(ctx, "enriched", 0, recs); err != nil {
		t.Fatal(err)
	}
	var given string
	var users int
	if err := pool.QueryRow(ctx, "SELECT max(given_name), count(*) FROM district_north.roster_users").Scan(&given, &users); err != nil {
		t.Fatal(err)
	}
	if users != 1 || given != "Given stu-a" {
		t.Fatalf("roster_users holds %d users, given name %q; want stu-a's alone, in plaintext", users, given)
	}
	for _, table := range []string{"roster_enrollments", "roster_demographics", "roster_results"} {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM district_north."+table+" r WHERE strpos(row_to_json(r)::text, 'enc1.') > 0 OR strpos(row_to_json(r)::text, 'stu-b') > 0").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s holds %d sealed rows or rows of the erased person", table, n)
		}
	}
}
