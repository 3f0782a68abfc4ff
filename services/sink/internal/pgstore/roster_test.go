package pgstore_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/hamba/avro/v2"
	"github.com/jackc/pgx/v5"
)

// rosterEvent wraps a roster payload in an enriched event of tenant north; actor is the user's internal
// id, "" when unknown.
func rosterEvent(t *testing.T, payload any, actor string) *records.EnrichedEvent {
	t.Helper()
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	ev := &records.EnrichedEvent{EventID: "00000000-0000-4000-8000-000000000001", TenantID: "north", SourceID: "sis",
		OccurredAt: at, ReceivedAt: at, EnrichedAt: at, SchemaVersion: 1, Actor: records.EnrichedActor{InternalID: actor}}
	if err := ev.SetPayload(payload); err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestRosterRules: the rules of roster state, each as batches of records about one user (user u1;
// every case writes to its own partition, its records renamed to a user of its own).
func TestRosterRules(t *testing.T) {
	const idX, idY = "6f1c1f4e-0d7a-4c59-9d0b-3f7f2a1c9e01", "6f1c1f4e-0d7a-4c59-9d0b-3f7f2a1c9e02"
	at := func(h int) time.Time { return time.Date(2026, 3, 1, h, 0, 0, 0, time.UTC) }
	user := func(h int, name, actor string, enabled bool) *records.EnrichedEvent {
		return rosterEvent(t, &records.RosterUser{SourcedID: "u1", Status: records.RosterActive, DateLastModified: at(h),
			EnabledUser: enabled, GivenName: name, FamilyName: "Doe"}, actor)
	}
	del := func(h int) *records.EnrichedEvent {
		return rosterEvent(t, &records.RosterUser{SourcedID: "u1", Status: records.RosterToBeDeleted, DateLastModified: at(h)}, "")
	}
	pool, codec := setup(t)
	store := newStore(t, pool, codec)
	tests := []struct {
		name    string
		batches [][]*records.EnrichedEvent
		want    string // given_name|internal_id|enabled, or "deleted@H"
	}{
		{"newer wins, older ignored", [][]*records.EnrichedEvent{{user(2, "a", "", true)}, {user(1, "b", "", true)}}, "a|null|true"},
		{"older ignored within a batch", [][]*records.EnrichedEvent{{user(2, "a", "", true), user(1, "b", "", true)}}, "a|null|true"},
		{"equal times: the later record wins", [][]*records.EnrichedEvent{{user(1, "a", "", true)}, {user(1, "b", "", true)}}, "b|null|true"},
		{"tobedeleted deletes", [][]*records.EnrichedEvent{{user(1, "a", "", true)}, {del(2)}}, "deleted@2"},
		{"a stale record cannot bring a deleted user back", [][]*records.EnrichedEvent{{user(1, "a", "", true)}, {del(2)}, {user(1, "c", "", true)}}, "deleted@2"},
		{"a newer record recreates a deleted user", [][]*records.EnrichedEvent{{user(1, "a", "", true)}, {del(2)}, {user(3, "b", "", true)}}, "b|null|true"},
		{"an older delete is ignored", [][]*records.EnrichedEvent{{user(2, "a", "", true), del(1)}}, "a|null|true"},
		{"enabled_user false inactivates, keeping the user", [][]*records.EnrichedEvent{{user(1, "a", "", true)}, {user(2, "a", "", false)}}, "a|null|false"},
		{"the internal id stays known", [][]*records.EnrichedEvent{{user(1, "a", idX, true)}, {user(2, "b", "", true)}}, "b|" + idX + "|true"},
		{"the internal id stays known within a batch", [][]*records.EnrichedEvent{{user(1, "a", idX, true), user(2, "b", "", true)}}, "b|" + idX + "|true"},
		{"a delete forgets the internal id", [][]*records.EnrichedEvent{{user(1, "a", idX, true)}, {del(2)}, {user(3, "b", "", true)}}, "b|null|true"},
		{"a stale record of a batch does not lend its internal id", [][]*records.EnrichedEvent{{user(5, "a", idX, true)},
			{user(3, "b", idY, true), user(6, "c", "", true)}}, "c|" + idX + "|true"},
		{"nor through later records of the batch", [][]*records.EnrichedEvent{{user(2, "a", idX, true)},
			{user(1, "b", idY, true), user(3, "c", "", true), user(4, "d", "", true)}}, "d|" + idX + "|true"},
		{"a fresh record of a batch does", [][]*records.EnrichedEvent{{user(2, "a", idX, true)},
			{user(3, "b", idY, true), user(4, "c", "", true), user(5, "d", "", true)}}, "d|" + idY + "|true"},
		{"a delete forgets it within a batch too", [][]*records.EnrichedEvent{{user(1, "a", idX, true)}, {del(2), user(3, "b", "", true)}}, "b|null|true"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("u%d", i)
			var offset int64
			for _, evs := range tt.batches {
				for _, ev := range evs {
					ev.RosterUser.SourcedID = id
				}
				recs := encode(t, codec, "enriched", evs)
				for _, r := range recs {
					r.Offset, offset = offset, offset+1
				}
				if err := store.Write(t.Context(), "enriched", int32(i), recs); err != nil {
					t.Fatal(err)
				}
			}
			var got string
			err := pool.QueryRow(t.Context(), `SELECT given_name || '|' || coalesce(internal_id::text, 'null') || '|' || enabled
				FROM district_north.roster_users WHERE sourced_id = $1`, id).Scan(&got)
			if err == pgx.ErrNoRows {
				var dlm time.Time
				if err := pool.QueryRow(t.Context(), `SELECT date_last_modified FROM district_north.roster_deletions
					WHERE entity = 'roster.user' AND sourced_id = $1`, id).Scan(&dlm); err != nil {
					t.Fatalf("no row and no deletion: %v", err)
				}
				got = fmt.Sprintf("deleted@%d", dlm.Hour())
			} else if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("state %q, want %q", got, tt.want)
			}
		})
	}
}

// TestRosterColumns: every field of every roster entity lands in its column (a record with all fields
// set leaves no column NULL), with dates, arrays and nested roles intact.
func TestRosterColumns(t *testing.T) {
	pool, codec := setup(t)
	store := newStore(t, pool, codec)
	const internalID = "6f1c1f4e-0d7a-4c59-9d0b-3f7f2a1c9e01"
	dlm := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	day := time.Date(2026, 8, 20, 0, 0, 0, 0, time.UTC)
	s, f, b := ptr("x"), ptr(7.5), ptr(true)
	md := map[string]string{"k": "v"}
	payloads := []any{
		&records.RosterOrg{SourcedID: "o1", Status: records.RosterActive, DateLastModified: dlm, Metadata: md, Name: "Lincoln",
			Type: "school", Identifier: s, ParentSourcedID: s},
		&records.RosterAcademicSession{SourcedID: "s1", Status: records.RosterActive, DateLastModified: dlm, Metadata: md, Title: "Fall",
			Type: "term", StartDate: day, EndDate: day.AddDate(0, 4, 0), SchoolYear: "2027", ParentSourcedID: s},
		&records.RosterCourse{SourcedID: "c1", Status: records.RosterActive, DateLastModified: dlm, Metadata: md, Title: "Algebra",
			SchoolYearSourcedID: s, CourseCode: s, Grades: []string{"09"}, Subjects: []string{"math"}, OrgSourcedID: "o1"},
		&records.RosterClass{SourcedID: "k1", Status: records.RosterActive, DateLastModified: dlm, Metadata: md, Title: "Algebra 1",
			ClassCode: s, ClassType: "scheduled", Location: s, Grades: []string{"09"}, Subjects: []string{"math"},
			Periods: []string{"1"}, CourseSourcedID: "c1", SchoolSourcedID: "o1", TermSourcedIds: []string{"s1"}},
		&records.RosterUser{SourcedID: "u1", Status: records.RosterActive, DateLastModified: dlm, Metadata: md, EnabledUser: true,
			Username: s, GivenName: "Ada", FamilyName: "Lovelace", MiddleName: s, PreferredFirstName: s, PreferredLastName: s,
			Pronouns: s, Roles: []records.RosterRole{{RoleType: "primary", Role: "teacher", OrgSourcedID: "o1", BeginDate: &day, EndDate: &day}},
			Identifier: s, UserMasterIdentifier: s, Email: s, Grades: []string{"09"}, OrgSourcedIds: []string{"o1"},
			AgentSourcedIds: []string{"u2"}, BirthDate: &day},
		&records.RosterEnrollment{SourcedID: "n1", Status: records.RosterActive, DateLastModified: dlm, Metadata: md, ClassSourcedID: "k1",
			SchoolSourcedID: "o1", UserSourcedID: "u1", Role: "teacher", Primary: b, BeginDate: &day, EndDate: &day},
		&records.RosterDemographics{SourcedID: "u1", Status: records.RosterActive, DateLastModified: dlm, Metadata: md, BirthDate: &day,
			Sex: s, AmericanIndianOrAlaskaNative: b, Asian: b, BlackOrAfricanAmerican: b, NativeHawaiianOrOtherPacificIslander: b,
			White: b, DemographicRaceTwoOrMoreRaces: b, HispanicOrLatinoEthnicity: b, CountryOfBirthCode: s, StateOfBirthAbbreviation: s,
			CityOfBirth: s, PublicSchoolResidenceStatus: s},
		&records.RosterLineItem{SourcedID: "l1", Status: records.RosterActive, DateLastModified: dlm, Metadata: md, Title: "Quiz",
			Description: s, AssignDate: dlm, DueDate: dlm.AddDate(0, 0, 7), ClassSourcedID: "k1", SchoolSourcedID: s,
			CategorySourcedID: s, GradingPeriodSourcedID: s, AcademicSessionSourcedID: s, ScoreScaleSourcedID: s,
			ResultValueMin: f, ResultValueMax: f},
		&records.RosterResult{SourcedID: "r1", Status: records.RosterActive, DateLastModified: dlm, Metadata: md, LineItemSourcedID: "l1",
			StudentSourcedID: "u1", ClassSourcedID: s, ScoreScaleSourcedID: s, ScoreStatus: "fully graded", Score: f,
			TextScore: s, ScoreDate: day, Comment: s, InProgress: b, Incomplete: b, Late: b, Missing: b},
	}
	var evs []*records.EnrichedEvent
	for _, p := range payloads {
		actor := ""
		if _, ok := p.(*records.RosterUser); ok {
			actor = internalID
		}
		evs = append(evs, rosterEvent(t, p, actor))
	}
	recs := encode(t, codec, "enriched", evs)
	for i, r := range recs {
		r.Offset = int64(i)
	}
	if err := store.Write(t.Context(), "enriched", 0, recs); err != nil {
		t.Fatal(err)
	}
	for _, typ := range rosterTypes {
		var doc []byte
		if err := pool.QueryRow(t.Context(), "SELECT to_jsonb(t) FROM "+pgx.Identifier{"district_north", rosterTable[typ]}.Sanitize()+" t").Scan(&doc); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		var row map[string]any
		if err := json.Unmarshal(doc, &row); err != nil {
			t.Fatal(err)
		}
		for col, v := range row {
			if v == nil {
				t.Errorf("%s.%s is NULL", rosterTable[typ], col)
			}
		}
		if row["status"] != "active" || row["date_last_modified"] != "2026-03-01T12:00:00+00:00" || fmt.Sprint(row["metadata"]) != "map[k:v]" {
			t.Errorf("%s common columns = %s", typ, doc)
		}
	}
	var roles, dates string
	if err := pool.QueryRow(t.Context(), `SELECT roles::text, birth_date::text || ' ' || internal_id::text || ' ' || array_to_string(org_sourced_ids, ',')
		FROM district_north.roster_users`).Scan(&roles, &dates); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(roles, `"role": "teacher"`) || !strings.Contains(roles, `"begin_date": "2026-08-20"`) ||
		dates != "2026-08-20 "+internalID+" o1" {
		t.Errorf("user roles %s, dates and ids %q", roles, dates)
	}
	var classes int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM district_north.roster_enrollments e
		JOIN district_north.roster_users u ON u.sourced_id = e.user_sourced_id
		WHERE e.user_sourced_id = 'u1' AND e.role = 'teacher' AND e.class_sourced_id = 'k1' AND e.begin_date = '2026-08-20'`).Scan(&classes); err != nil {
		t.Fatal(err)
	}
	if classes != 1 {
		t.Error("the teacher's class is not found through roster_enrollments")
	}
}

// TestRosterTablesMatchTheDistrictSchema: the roster tables of a new district have exactly the columns
// the sink writes, each of the type and nullability its schema field calls for, and there is no other
// roster table. A field added to a roster schema therefore fails here until the district migrations add
// its column (or the sink's rosterTableDefs leave it out), and so does a column no field fills.
func TestRosterTablesMatchTheDistrictSchema(t *testing.T) {
	pool, _ := setup(t)
	want, err := pgstore.RosterColumns()
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	if err := pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(t.Context(), `SELECT table_name FROM information_schema.tables
			WHERE table_schema = 'district_north' AND table_name LIKE 'roster\_%' AND table_name <> 'roster_deletions'`)
		if err != nil {
			return err
		}
		tables, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(maps.Keys(want)); !slices.Equal(slices.Sorted(slices.Values(tables)), got) {
		t.Errorf("district roster tables %v, the sink writes %v", slices.Sorted(slices.Values(tables)), got)
	}
	type column struct {
		typ      string
		nullable bool
	}
	for table, cols := range want {
		rows, err := pool.Query(t.Context(), `SELECT attname, format_type(atttypid, atttypmod), NOT attnotnull FROM pg_attribute
			WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`, "district_north."+table)
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]column{}
		for rows.Next() {
			var name string
			var c column
			if err := rows.Scan(&name, &c.typ, &c.nullable); err != nil {
				t.Fatal(err)
			}
			have[name] = c
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		for _, col := range cols {
			c, ok := have[col.Name]
			delete(have, col.Name)
			if !ok {
				t.Errorf("%s has no column %s: add it to the district migrations (or leave the field out in rosterTableDefs)", table, col.Name)
				continue
			}
			typ, nullable := "uuid", true // internal_id
			if col.Avro != nil {
				typ, nullable = columnType(col.Avro)
			}
			if c != (column{typ, nullable}) {
				t.Errorf("%s.%s is %s (nullable %t); its field %s calls for %s (nullable %t)", table, col.Name, c.typ, c.nullable,
					col.Avro, typ, nullable)
			}
		}
		for name := range have {
			t.Errorf("%s.%s is filled by no field of its entity's schema", table, name)
		}
	}
}

// columnType returns the PostgreSQL type and nullability of the column that holds a field of Avro type s.
func columnType(s avro.Schema) (string, bool) {
	switch s := s.(type) {
	case *avro.RefSchema:
		return columnType(s.Schema())
	case *avro.UnionSchema:
		for _, u := range s.Types() {
			if u.Type() != avro.Null {
				typ, _ := columnType(u)
				return typ, true
			}
		}
	case *avro.MapSchema:
		return "jsonb", false
	case *avro.ArraySchema:
		if items, _ := columnType(s.Items()); !strings.HasPrefix(items, "jsonb") {
			return items + "[]", false
		}
		return "jsonb", false
	case *avro.RecordSchema:
		return "jsonb", false
	case *avro.PrimitiveSchema:
		if l := s.Logical(); l != nil {
			return map[avro.LogicalType]string{avro.Date: "date", avro.TimestampMillis: "timestamp with time zone"}[l.Type()], false
		}
		return map[avro.Type]string{avro.String: "text", avro.Boolean: "boolean", avro.Double: "double precision",
			avro.Int: "integer", avro.Long: "bigint"}[s.Type()], false
	}
	return fmt.Sprintf("(no column type for %s)", s), false
}
