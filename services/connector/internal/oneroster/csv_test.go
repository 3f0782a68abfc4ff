package oneroster_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/edtech-analytics/platform/services/connector/internal/oneroster"
)

var update = flag.Bool("update", false, "rewrite testdata/full.zip")

// records are one of each rostering collection as a OneRoster 1.2 REST provider answers them.
var records = map[string][]json.RawMessage{
	"orgs": {json.RawMessage(`{"sourcedId":"sch-1","status":"active","dateLastModified":"2026-11-01T00:00:00Z","name":"Lincoln High","type":"school","identifier":"LHS","parent":{"href":"/orgs/dist-1","sourcedId":"dist-1","type":"org"},"children":[]}`),
		json.RawMessage(`{"sourcedId":"dist-1","status":"active","dateLastModified":"2026-11-01T00:00:00Z","name":"Springfield","type":"district"}`)},
	"academicSessions": {json.RawMessage(`{"sourcedId":"term-1","status":"active","dateLastModified":"2026-11-01T00:00:00Z","title":"Fall","type":"term","startDate":"2026-08-15","endDate":"2026-12-20","schoolYear":"2027"}`)},
	"courses":          {json.RawMessage(`{"sourcedId":"crs-1","status":"active","dateLastModified":"2026-11-01T00:00:00Z","title":"Algebra","courseCode":"ALG","grades":["09","10"],"subjects":["Math"],"org":{"sourcedId":"sch-1","type":"org"}}`)},
	"classes":          {json.RawMessage(`{"sourcedId":"cls-1","status":"active","dateLastModified":"2026-11-01T00:00:00Z","title":"Algebra P1","classType":"scheduled","course":{"sourcedId":"crs-1"},"school":{"sourcedId":"sch-1"},"terms":[{"sourcedId":"term-1"}],"periods":["1"]}`)},
	"users": {json.RawMessage(`{"sourcedId":"stu-1","status":"active","dateLastModified":"2026-11-02T00:00:00Z","enabledUser":true,"username":"stu1","givenName":"Ada","familyName":"Lovelace","email":"ada@example.org","grades":["09"],"userIds":[{"type":"sis","identifier":"1"}],"roles":[{"roleType":"primary","role":"student","org":{"sourcedId":"sch-1"}}],"metadata":{"x":"y"}}`),
		json.RawMessage(`{"sourcedId":"tea-1","status":"active","dateLastModified":"2026-11-02T00:00:00Z","enabledUser":true,"username":"tea1","givenName":"Grace","familyName":"Hopper","roles":[{"roleType":"secondary","role":"teacher","org":{"sourcedId":"dist-1"}},{"roleType":"primary","role":"teacher","org":{"sourcedId":"sch-1"}}]}`)},
	"enrollments": {json.RawMessage(`{"sourcedId":"enr-1","status":"active","dateLastModified":"2026-11-03T00:00:00Z","role":"student","primary":false,"class":{"sourcedId":"cls-1"},"school":{"sourcedId":"sch-1"},"user":{"sourcedId":"stu-1"}}`),
		json.RawMessage(`{"sourcedId":"enr-2","status":"active","dateLastModified":"2026-11-03T00:00:00Z","role":"teacher","primary":true,"class":{"sourcedId":"cls-1"},"school":{"sourcedId":"sch-1"},"user":{"sourcedId":"tea-1"}}`)},
	"demographics": {json.RawMessage(`{"sourcedId":"stu-1","status":"active","dateLastModified":"2026-11-02T00:00:00Z","birthDate":"2012-05-01","sex":"female","white":"true","hispanicOrLatinoEthnicity":"false"}`)},
}

// TestRow: references become xSourcedId(s), lists are comma-joined, a 1.2 user's roles give its primary
// role and the orgs of its roles.
func TestRow(t *testing.T) {
	for _, c := range []struct {
		collection string
		raw        json.RawMessage
		want       map[string]string
	}{
		{"orgs", records["orgs"][0], map[string]string{"parentSourcedId": "dist-1", "identifier": "LHS"}},
		{"courses", records["courses"][0], map[string]string{"orgSourcedId": "sch-1", "grades": "09,10"}},
		{"classes", records["classes"][0], map[string]string{"courseSourcedId": "crs-1", "schoolSourcedId": "sch-1", "termSourcedIds": "term-1"}},
		{"users", records["users"][1], map[string]string{"role": "teacher", "orgSourcedIds": "dist-1,sch-1", "enabledUser": "true"}},
		{"enrollments", records["enrollments"][1], map[string]string{"userSourcedId": "tea-1", "primary": "true", "role": "teacher"}},
	} {
		row, err := oneroster.Row(c.collection, c.raw)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range c.want {
			if row[k] != v {
				t.Errorf("%s: %s = %q, want %q", c.collection, k, row[k], v)
			}
		}
	}
}

// TestPackageGolden: the full package of records is testdata/full.zip, byte for byte. The gateway's own
// test (services/gateway/internal/roster, TestConnectorPackage) decodes that file and accepts every row:
// the two sides of the contract read the same bytes.
func TestPackageGolden(t *testing.T) {
	got, err := oneroster.Package(records, true)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "full.zip")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the package differs from %s (go test -update, then run the gateway's TestConnectorPackage)", path)
	}
}
