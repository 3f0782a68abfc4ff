package server_test

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/records"
)

func (f *fixture) postRaw(t testing.TB, path, key, ctype string, body []byte) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", f.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := resp.Body.Close(); err != nil {
			t.Error(err)
		}
	}()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("answer is not JSON: %s", b)
	}
	return resp.StatusCode, out
}

const rosterUsers = `{"users":[
 {"sourcedId":"stu-1","status":"active","dateLastModified":"2026-09-01T08:00:00Z","enabledUser":true,"givenName":"Ada","familyName":"L",
  "roles":[{"roleType":"primary","role":"student","org":{"sourcedId":"sch1"}}],"userMasterIdentifier":"ST-1","grades":["09"]},
 {"sourcedId":"","status":"active","dateLastModified":"2026-09-01T08:00:00Z","enabledUser":true,"givenName":"No","familyName":"Id",
  "roles":[{"roleType":"primary","role":"student","org":{"sourcedId":"sch1"}}]},
 {"sourcedId":"tea-1","status":"active","dateLastModified":"2026-09-01T08:00:00Z","enabledUser":true,"givenName":"Grace","familyName":"H",
  "roles":[{"roleType":"primary","role":"teacher","org":{"sourcedId":"sch1"}}]}]}`

// TestRosterJSONAndCSVReachRaw: a OneRoster collection and a CSV package are accepted record by record
// into raw (the invalid record named and dead-lettered), with the roster verb only; enrollments of a
// class never sent are held by the import step.
func TestRosterJSONAndCSVReachRaw(t *testing.T) {
	f := newFixture(t)
	code, out := f.postRaw(t, "/v1/roster/users", "roster", "application/json", []byte(rosterUsers))
	if code != http.StatusAccepted || out["accepted"] != 2.0 {
		t.Fatalf("users answer %d %v", code, out)
	}
	rej := out["rejected"].([]any)
	if len(rej) != 1 || rej[0].(map[string]any)["index"] != 1.0 {
		t.Fatalf("rejected = %v", rej)
	}

	var zipped bytes.Buffer
	zw := zip.NewWriter(&zipped)
	for name, content := range map[string]string{
		"enrollments.csv": "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate\n" +
			"enr-1,active,2026-09-01T08:00:00Z,cls-1,sch1,stu-1,student,false,,\n" +
			"enr-2,active,2026-09-01T08:00:00Z,cls-1,sch1,tea-1,teacher,true,,\n",
	} {
		fw, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	code, out = f.postRaw(t, "/v1/roster/csv", "roster", "application/zip", zipped.Bytes())
	if code != http.StatusAccepted || out["accepted"] != 2.0 {
		t.Fatalf("csv answer %d %v", code, out)
	}
	// The class and school the enrollments name were never sent: both are held, not sent.
	if up := out["upload"].(map[string]any); up["status"] != "applied" || up["held"] != 2.0 || up["sent"] != 0.0 {
		t.Fatalf("csv upload %v", up)
	}

	types := map[string]int{}
	for _, r := range f.readTopic(t, f.kcfg.Topics().Raw) {
		var ev records.RawEvent
		if err := f.codec.Decode(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		if err := ev.CheckPayload(); err != nil || ev.TenantID != "d1" || ev.SourceID != "sis" {
			t.Fatalf("raw record %+v: %v", ev, err)
		}
		types[ev.Type]++
	}
	if types[records.TypeRosterUser] != 2 || len(types) != 1 {
		t.Fatalf("raw holds %v", types)
	}
	if n := len(f.readTopic(t, f.kcfg.Topics().DLQ)); n != 1 {
		t.Fatalf("dlq holds %d records, want 1", n)
	}

	for _, tt := range []struct {
		name, path, key, ctype string
		body                   []byte
		status                 int
		problem                string
	}{
		{"events key", "/v1/roster/users", "good", "application/json", []byte(rosterUsers), 403, "/problems/forbidden"},
		{"unknown collection", "/v1/roster/pets", "roster", "application/json", []byte(`{"pets":[]}`), 404, "/problems/unknown-collection"},
		{"malformed json", "/v1/roster/users", "roster", "application/json", []byte(`{"users":[{]}`), 400, "/problems/malformed-body"},
		{"not a zip", "/v1/roster/csv", "roster", "application/zip", []byte("PK nope"), 400, "/problems/malformed-body"},
		{"csv as json", "/v1/roster/csv", "roster", "application/json", zipped.Bytes(), 415, "/problems/unsupported-media-type"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out := f.postRaw(t, tt.path, tt.key, tt.ctype, tt.body)
			if code != tt.status || out["type"] != tt.problem {
				t.Fatalf("got %d %v", code, out)
			}
		})
	}
}

// TestRosterRecordTooLargeForKafkaIsItsError: a roster record within every field limit whose record is
// still larger than Kafka takes (a megabyte of metadata) is rejected as that record's error, not a 503.
func TestRosterRecordTooLargeForKafkaIsItsError(t *testing.T) {
	f := newFixture(t)
	meta := map[string]string{}
	for i := range 20 {
		meta[fmt.Sprintf("k%d", i)] = strings.Repeat("x", 60_000)
	}
	var users map[string][]map[string]any
	if err := json.Unmarshal([]byte(rosterUsers), &users); err != nil {
		t.Fatal(err)
	}
	users["users"][2]["metadata"] = meta
	body, err := json.Marshal(users)
	if err != nil {
		t.Fatal(err)
	}
	code, out := f.postRaw(t, "/v1/roster/users", "roster", "application/json", body)
	if code != http.StatusAccepted || out["accepted"] != 1.0 {
		t.Fatalf("answer %d %.300v", code, out)
	}
	got := fieldErrors(t, out)
	if len(got) != 2 || !strings.HasPrefix(got[2][0], "body: is ") {
		t.Fatalf("rejected %v", got)
	}
}
