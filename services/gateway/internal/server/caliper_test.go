package server_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
)

// TestCaliperEnvelopesReachRawAsPlatformEvents: a Caliper 1.2 envelope of a login, a grade, a
// submission and a view is accepted, each event in raw as its platform type under its urn:uuid, the
// grade about the graded student; an event with an action its type does not allow is refused naming
// its JSON pointer, and goes to the dead-letter topic; the same envelope sent again adds the same ids.
func TestCaliperEnvelopesReachRawAsPlatformEvents(t *testing.T) {
	f := newFixture(t, func(s *setup) { s.limits.MaxEvents = 10 })
	now := time.Now().UTC().Format(time.RFC3339)
	person := `{"id":"https://example.edu/users/554433","type":"Person"}`
	ev := func(id, typ, action, object, extra string) string {
		return `{"@context":"http://purl.imsglobal.org/ctx/caliper/v1p2","id":"urn:uuid:` + id + `","type":"` + typ + `","actor":` + person +
			`,"action":"` + action + `","object":` + object + `,"eventTime":"` + now + `"` + extra + `}`
	}
	grade := ev("a0000000-0000-4000-8000-000000000002", "GradeEvent", "Graded",
		`{"id":"https://example.edu/assess/1/attempts/9","type":"Attempt","assignee":{"id":"https://example.edu/users/778899","type":"Person"},`+
			`"assignable":"https://example.edu/assess/1","count":1}`,
		`,"generated":{"id":"https://example.edu/assess/1/attempts/9/scores/1","type":"Score","scoreGiven":8,"maxScore":10}`)
	grade = strings.Replace(grade, `"actor":`+person, `"actor":{"id":"https://example.edu/autograder","type":"SoftwareApplication"}`, 1)
	data := []string{
		ev("a0000000-0000-4000-8000-000000000001", "SessionEvent", "LoggedIn", `"https://example.edu"`, ""),
		grade,
		ev("a0000000-0000-4000-8000-000000000003", "AssignableEvent", "Submitted", `{"id":"https://example.edu/assignments/7","type":"AssignableDigitalResource"}`, ""),
		ev("a0000000-0000-4000-8000-000000000004", "ViewEvent", "Viewed", `{"id":"https://example.edu/etexts/201.epub","type":"Document"}`, ""),
		ev("a0000000-0000-4000-8000-000000000005", "ViewEvent", "Graded", `{"id":"https://example.edu/etexts/201.epub","type":"Document"}`, ""),
		ev("a0000000-0000-4000-8000-000000000006", "ToolUseEvent", "Used", `{"id":"https://example.edu","type":"SoftwareApplication"}`,
			`,"extensions":{"com.example.level":"4"}`),
	}
	body := []byte(`{"sensor":"https://example.edu/sensors/1","sendTime":"` + now + `","dataVersion":"https://purl.imsglobal.org/ctx/caliper/v1p2","data":[` +
		strings.Join(data, ",") + `]}`)
	code, out := f.postRaw(t, "/v1/caliper", "good", "application/json", body)
	if code != http.StatusAccepted || out["accepted"] != 5.0 || !strings.Contains(fmtJSON(out["rejected"]), `"field":"/data/4/action"`) {
		t.Fatalf("caliper: %d %v", code, out)
	}
	var got []string
	for _, r := range f.readTopic(t, f.kcfg.Topics().Raw) {
		e := f.rawEvent(t, r)
		got = append(got, e.Type+":"+e.EventID)
		if e.Type == records.TypeAssessmentResult && (e.AssessmentResult.Score != 8 || string(r.Key) == "") {
			t.Fatalf("grade %+v", e.AssessmentResult)
		}
		if e.Type == records.TypeGeneric && (e.Generic.Standard != "caliper" || e.Generic.Type != "ToolUseEvent" || e.Generic.Action != "Used" ||
			!slices.Equal(e.Generic.ExtensionKeys, []string{"com.example.level"}) || !slices.Equal(e.Generic.ExtensionValues, []string{"4"})) {
			t.Fatalf("generic %+v", e.Generic)
		}
	}
	want := []string{"session:a0000000-0000-4000-8000-000000000001", "assessment_result:a0000000-0000-4000-8000-000000000002",
		"assignment_submission:a0000000-0000-4000-8000-000000000003", "content_view:a0000000-0000-4000-8000-000000000004",
		"generic:a0000000-0000-4000-8000-000000000006"}
	if !slices.Equal(got, want) {
		t.Fatalf("raw holds %v, want %v", got, want)
	}
	if n := len(f.readTopic(t, f.kcfg.Topics().DLQ)); n != 1 {
		t.Fatalf("dlq holds %d", n)
	}
	if code, out := f.postRaw(t, "/v1/caliper", "good", "application/json", body); code != http.StatusAccepted || out["accepted"] != 5.0 {
		t.Fatalf("sent again: %d %v", code, out)
	}
	ids := f.rawEventIDs(t)
	for _, w := range want {
		if id := w[strings.Index(w, ":")+1:]; ids[id] != 2 {
			t.Fatalf("event %s is in raw %d times, want 2 (the enricher drops the second)", id, ids[id])
		}
	}
}
