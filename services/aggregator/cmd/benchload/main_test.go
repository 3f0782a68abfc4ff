package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/chutil/chtest"
	"github.com/edtech-analytics/platform/libs/testenv/loadgen"
)

// The loaded events carry the student ids dashbench writes into the rosters: loadgen.StudentID, which the
// SQL expression computes exactly as Go does.
func TestLoadedStudentsHaveTheRosterIDs(t *testing.T) {
	conn, database, _ := chtest.New(t)
	ctx := context.Background()
	if err := run(ctx, []string{"-events", "3000", "-districts", "3", "-database", database, "-append"}); err != nil {
		t.Fatal(err)
	}
	var rows []struct {
		Tenant  string `ch:"tenant_id"`
		Student string `ch:"student"`
	}
	if err := conn.Select(ctx, &rows, `SELECT DISTINCT tenant_id, toString(student_id) AS student FROM events`); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for d := range 3 {
		for stu := range 100 {
			want[fmt.Sprintf("bench_%d/%s", d, strings.ToLower(loadgen.StudentID(uint64(d*100+stu))))] = true
		}
	}
	if len(rows) < 250 { // 1,000 events per district over 100 students: nearly all of them appear
		t.Fatalf("%d distinct students loaded", len(rows))
	}
	for _, r := range rows {
		if key := r.Tenant + "/" + r.Student; !want[key] {
			t.Errorf("student %s of %s is no loadgen.StudentID of the district", r.Student, r.Tenant)
		}
	}

	// The expression agrees with Go beyond the students benchload uses, up to the 48 bits kept.
	var got []string
	rs, err := conn.Query(ctx, "SELECT toString("+loadgen.StudentIDSQL("number * 7919 + 281474976710000")+") FROM numbers(100)")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rs.Close() }()
	for rs.Next() {
		var id string
		if err := rs.Scan(&id); err != nil {
			t.Fatal(err)
		}
		got = append(got, id)
	}
	if err := rs.Err(); err != nil || len(got) != 100 {
		t.Fatalf("%d ids: %v", len(got), err)
	}
	for i, id := range got {
		if want := loadgen.StudentID(uint64(i)*7919 + 281474976710000); id != strings.ToLower(want) {
			t.Errorf("SQL id %d = %s, Go %s", i, id, want)
		}
	}
}
