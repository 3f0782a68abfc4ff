package stack_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/testenv/sampledata"
)

// caliperExamples is an event of every Caliper 1.2 type, with an action the type allows, and the
// platform type the gateway maps it onto.
var caliperExamples = []struct{ typ, action, object, extra, platform string }{
	{"AnnotationEvent", "Bookmarked", caliperDoc, "", "generic"},
	{"AssessmentEvent", "Started", `{"id":"https://example.edu/assess/1","type":"Assessment"}`, "", "generic"},
	{"AssessmentItemEvent", "Completed", `{"id":"https://example.edu/assess/1/items/3","type":"AssessmentItem"}`, "", "generic"},
	{"AssignableEvent", "Submitted", `{"id":"https://example.edu/assignments/7","type":"AssignableDigitalResource"}`, "", "assignment_submission"},
	{"FeedbackEvent", "Commented", caliperDoc, "", "generic"},
	{"ForumEvent", "Subscribed", `{"id":"https://example.edu/forums/1","type":"Forum"}`, "", "generic"},
	{"GradeEvent", "Graded", `{"id":"https://example.edu/assess/1/attempts/1","type":"Attempt","assignee":"https://example.edu/users/STUDENT","count":1}`,
		`,"generated":{"id":"https://example.edu/assess/1/attempts/1/score","type":"Score","scoreGiven":7,"maxScore":10}`, "assessment_result"},
	{"MediaEvent", "Paused", `{"id":"https://example.edu/videos/1","type":"VideoObject","duration":"PT10M"}`, "", "content_view"},
	{"MessageEvent", "Posted", `{"id":"https://example.edu/forums/1/messages/2","type":"Message"}`, "", "generic"},
	{"NavigationEvent", "NavigatedTo", `{"id":"https://example.edu/pages/2","type":"WebPage"}`, "", "content_view"},
	{"QuestionnaireEvent", "Started", `{"id":"https://example.edu/questionnaires/30","type":"Questionnaire"}`, "", "generic"},
	{"QuestionnaireItemEvent", "Skipped", `{"id":"https://example.edu/questionnaires/30/items/1","type":"QuestionnaireItem"}`, "", "generic"},
	{"ReadingEvent", "Viewed", caliperDoc, "", "content_view"},
	{"ResourceManagementEvent", "Created", caliperDoc, "", "generic"},
	{"SearchEvent", "Searched", `{"id":"https://example.edu/catalog","type":"SoftwareApplication"}`, "", "generic"},
	{"SessionEvent", "LoggedIn", `"https://example.edu"`, "", "session"},
	{"SurveyEvent", "OptedIn", `{"id":"https://example.edu/surveys/100","type":"Survey"}`, "", "generic"},
	{"SurveyInvitationEvent", "Sent", `{"id":"https://example.edu/surveys/100/invitations/1","type":"SurveyInvitation"}`, "", "generic"},
	{"ThreadEvent", "MarkedAsRead", `{"id":"https://example.edu/forums/1/topics/1","type":"Thread"}`, "", "generic"},
	{"ToolLaunchEvent", "Launched", `{"id":"https://example.com/lti/tool","type":"SoftwareApplication"}`, "", "generic"},
	{"ToolUseEvent", "Used", `{"id":"https://example.edu","type":"SoftwareApplication"}`, `,"extensions":{"level":"4"}`, "generic"},
	{"ViewEvent", "Viewed", caliperDoc, "", "content_view"},
	{"Event", "Created", caliperDoc, "", "generic"},
}

const caliperDoc = `{"id":"https://example.edu/etexts/201.epub","type":"Document"}`

// TestStandardsReachBothStores: a Caliper 1.2 envelope holding an event of every type and a batch of
// xAPI statements go through the whole platform: each event is in ClickHouse once, under its platform
// type (generic for those no platform type fits), and counted once in PostgreSQL; the same envelope and
// statements sent again add nothing.
func TestStandardsReachBothStores(t *testing.T) {
	tel := &obs.Telemetry{Tracer: sdktrace.NewTracerProvider(), Meter: noop.NewMeterProvider(), Propagator: propagation.TraceContext{}}
	st, pgURL, chAddr, chDB := testStack(t, tel, slog.New(slog.NewTextHandler(io.Discard, nil)))
	admin := openPG(t, pgURL)
	keys, _, _, _ := seedDistricts(t, admin, []string{"d1"}, 50, func(int, string) sampledata.Spec {
		return sampledata.Spec{TenantID: "d1", Schools: 1, ClassesPerSchool: 1, StudentsPerClass: 1, Days: 1, EventsPerStudent: 1,
			Start: time.Now().UTC().Truncate(24 * time.Hour), Seed: 1}
	})
	now := time.Now().UTC().Format(time.RFC3339)
	var data []string
	want := map[string]int{}
	for i, ex := range caliperExamples {
		student := fmt.Sprintf("stu-%02d", i)
		object := strings.ReplaceAll(ex.object, "STUDENT", student)
		data = append(data, fmt.Sprintf(`{"@context":"http://purl.imsglobal.org/ctx/caliper/v1p2","id":"urn:uuid:c0000000-0000-4000-8000-%012d",`+
			`"type":%q,"actor":{"id":"https://example.edu/users/%s","type":"Person"},"action":%q,"object":%s,"eventTime":%q%s}`,
			i, ex.typ, student, ex.action, object, now, ex.extra))
		want[ex.platform]++
	}
	envelope := []byte(`{"sensor":"https://example.edu/sensors/1","sendTime":"` + now +
		`","dataVersion":"http://purl.imsglobal.org/ctx/caliper/v1p2","data":[` + strings.Join(data, ",") + `]}`)
	statements := []byte(`[` + strings.Join([]string{
		xapiStatement("d0000000-0000-4000-8000-000000000001", "experienced", `"result":{"duration":"PT3M"}`),
		xapiStatement("d0000000-0000-4000-8000-000000000002", "passed", `"result":{"score":{"raw":8,"max":10}}`),
		xapiStatement("d0000000-0000-4000-8000-000000000003", "answered", `"result":{"success":true}`),
	}, ",") + `]`)
	want["content_view"]++
	want["assessment_result"]++
	want["generic"]++
	total := len(caliperExamples) + 3

	send := func() {
		if code, body := postTo(t, st.GatewayURL+"/v1/caliper", keys["d1"], nil, envelope); code != http.StatusAccepted ||
			!bytes.Contains(body, []byte(fmt.Sprintf(`"accepted":%d`, len(caliperExamples)))) {
			t.Fatalf("caliper: %d %s", code, body)
		}
		if code, body := postTo(t, st.GatewayURL+"/xapi/statements", keys["d1"], map[string]string{"X-Experience-API-Version": "1.0.3"},
			statements); code != http.StatusOK {
			t.Fatalf("xapi: %d %s", code, body)
		}
	}
	send()
	send() // a client's retry: the same ids, counted once

	// A last event after the retries: once both stores hold it, they have seen everything before it (one
	// district: one partition, in order).
	last := sampledata.Event{EventID: "e0000000-0000-4000-8000-000000000001", Type: "custom", OccurredAt: now,
		Actor: sampledata.Actor{SISID: "stu-last", Role: "student"}, Payload: map[string]any{"name": "standards.done"}}
	body, err := json.Marshal(map[string]any{"events": []sampledata.Event{last}})
	if err != nil {
		t.Fatal(err)
	}
	post(t, st.GatewayURL, keys["d1"], body)
	total++
	want["custom"]++

	ch := openCH(t, chAddr, chDB)
	waitUntil(t, "both stores to hold the last event", func() bool {
		var pg int
		// The last event's student has no other event: its row's last type says the sink applied it.
		if err := admin.QueryRow(t.Context(), `SELECT count(*) FROM district_d1.student_activity WHERE last_event_type = 'custom'`).Scan(&pg); err != nil {
			return false
		}
		return pg == 1 && countCH(t, ch, `SELECT count() FROM events WHERE tenant_id = 'd1' AND custom_name = 'standards.done'`) == 1
	})
	if n := countCH(t, ch, "SELECT count() FROM events WHERE tenant_id = 'd1'"); n != uint64(total) {
		t.Fatalf("ClickHouse holds %d events, want %d", n, total)
	}
	if n := sumPG(t, admin, "d1"); n != int64(total) {
		t.Fatalf("PostgreSQL counted %d events, want %d", n, total)
	}
	for typ, n := range want {
		if got := countCH(t, ch, "SELECT count() FROM events WHERE tenant_id = 'd1' AND type = '"+typ+"'"); got != uint64(n) {
			t.Errorf("ClickHouse holds %d %s events, want %d", got, typ, n)
		}
	}
	if got := countCH(t, ch, `SELECT count() FROM events WHERE tenant_id = 'd1' AND type = 'generic' AND generic_standard = 'caliper'
		AND generic_type = 'ToolUseEvent' AND prop_keys = ['level'] AND prop_values = ['4']`); got != 1 {
		t.Errorf("the ToolUseEvent is in ClickHouse %d times with its extension, want once", got)
	}
}

func xapiStatement(id, verb, extra string) string {
	return `{"id":"` + id + `","actor":{"account":{"homePage":"https://sis.example.org","name":"stu-x"}},` +
		`"verb":{"id":"http://adlnet.gov/expapi/verbs/` + verb + `"},"object":{"id":"http://example.org/courses/1/quiz",` +
		`"definition":{"type":"http://adlnet.gov/expapi/activities/assessment"}},"timestamp":"` + time.Now().UTC().Format(time.RFC3339) + `",` + extra + `}`
}

// postTo posts a JSON body with the key and extra headers and returns the status and body.
func postTo(t *testing.T, url, key string, header map[string]string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }() // read to its end below
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}
