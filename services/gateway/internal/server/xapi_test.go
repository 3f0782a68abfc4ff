package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy/mappings"
)

// xapiDo sends a request to the statements resource with the xAPI version header (unless version is
// empty) and returns the status and body.
func (f *fixture) xapiDo(t *testing.T, method, query, version string, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, f.srv.URL+"/xapi/statements"+query, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer good")
	req.Header.Set("Content-Type", "application/json")
	if version != "" {
		req.Header.Set("X-Experience-API-Version", version)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }() // read to the end below
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// TestXAPIStatementsRoundTrip: statements posted as an array answer 200 with their ids and reach raw as
// platform events under those ids; the same statements again add nothing; a statement id taken with
// other content is 409, by POST and by PUT; a PUT of a new id is 204; a request with an invalid
// statement or without the version header is refused whole.
func TestXAPIStatementsRoundTrip(t *testing.T) {
	f := newFixture(t)
	ts := time.Now().UTC().Format(time.RFC3339)
	st := func(id, verb, result string) string {
		s := `{"actor":{"account":{"homePage":"https://sis.example.org","name":"stu-01"}},"verb":{"id":"http://adlnet.gov/expapi/verbs/` + verb +
			`"},"object":{"id":"http://example.org/courses/1/quiz","definition":{"type":"http://adlnet.gov/expapi/activities/assessment"}},"timestamp":"` + ts + `"`
		if id != "" {
			s += `,"id":"` + id + `"`
		}
		if result != "" {
			s += `,"result":` + result
		}
		return s + "}"
	}
	const id1, id2, id3 = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222", "33333333-3333-4333-8333-333333333333"
	const id4 = "44444444-4444-4444-8444-444444444440"
	batch := "[" + st(id1, "experienced", `{"duration":"PT2M"}`) + "," + st(id2, "passed", `{"score":{"raw":9,"max":10}}`) + "," +
		st(id4, "answered", `{"success":true}`) + "]"
	code, body := f.xapiDo(t, "POST", "", "1.0.3", batch)
	var ids []string
	if code != http.StatusOK || json.Unmarshal(body, &ids) != nil || !slices.Equal(ids, []string{id1, id2, id4}) {
		t.Fatalf("POST: %d %s", code, body)
	}
	raw := func() []string {
		var out []string
		for _, r := range f.readTopic(t, f.kcfg.Topics().Raw) {
			e := f.rawEvent(t, r)
			out = append(out, e.Type+":"+e.EventID)
		}
		return out
	}
	if got := raw(); !slices.Equal(got, []string{"content_view:" + id1, "assessment_result:" + id2, "generic:" + id4}) {
		t.Fatalf("raw holds %v", got)
	}
	// Each statement reads back as it was sent, with its id and the time it was stored.
	code, body = f.xapiDo(t, "GET", "?statementId="+id2, "1.0.3", "")
	var back map[string]any
	if code != http.StatusOK || json.Unmarshal(body, &back) != nil || back["id"] != id2 || back["stored"] == nil ||
		back["verb"].(map[string]any)["id"] != "http://adlnet.gov/expapi/verbs/passed" ||
		back["actor"].(map[string]any)["account"].(map[string]any)["name"] != "stu-01" {
		t.Fatalf("GET: %d %s", code, body)
	}
	if code, _ := f.xapiDo(t, "GET", "?statementId=55555555-5555-4555-8555-555555555555", "1.0.3", ""); code != http.StatusNotFound {
		t.Fatalf("GET of an unknown statement: %d", code)
	}
	if code, body := f.xapiDo(t, "POST", "", "1.0.3", batch); code != http.StatusOK || len(raw()) != 3 {
		t.Fatalf("the same statements again: %d %s, raw holds %v", code, body, raw())
	}
	if code, body := f.xapiDo(t, "POST", "", "1.0.3", st(id1, "experienced", `{"duration":"PT9M"}`)); code != http.StatusConflict ||
		!strings.Contains(string(body), id1) {
		t.Fatalf("another statement under a taken id: %d %s", code, body)
	}
	if code, body := f.xapiDo(t, "PUT", "?statementId="+id3, "1.0.3", st("", "experienced", "")); code != http.StatusNoContent || len(raw()) != 4 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if code, _ := f.xapiDo(t, "PUT", "?statementId="+id3, "1.0.3", st("", "experienced", "")); code != http.StatusNoContent {
		t.Fatalf("the same PUT again: %d", code)
	}
	if code, _ := f.xapiDo(t, "PUT", "?statementId="+id3, "1.0.3", st("", "experienced", `{"duration":"PT1M"}`)); code != http.StatusConflict {
		t.Fatalf("a PUT of other content: %d", code)
	}
	bad := "[" + st("44444444-4444-4444-8444-444444444444", "experienced", "") + `,{"verb":{"id":"http://adlnet.gov/expapi/verbs/answered"}}]`
	code, body = f.xapiDo(t, "POST", "", "1.0.3", bad)
	if code != http.StatusBadRequest || !strings.Contains(string(body), `"field":"/1/actor"`) || len(raw()) != 4 {
		t.Fatalf("a batch with an invalid statement: %d %s", code, body)
	}
	if code, body := f.xapiDo(t, "POST", "", "", batch); code != http.StatusBadRequest || !strings.Contains(string(body), "X-Experience-API-Version") {
		t.Fatalf("without the version header: %d %s", code, body)
	}
	if code, _ := f.xapiDo(t, "PUT", "?statementId=nope", "1.0.3", st("", "experienced", "")); code != http.StatusBadRequest {
		t.Fatalf("PUT without a UUID: %d", code)
	}
}

// TestSourceRulesSayWhereActorsAreIdentified: a source's mapping rules name where its xAPI and Caliper
// actors carry the SIS id (the mbox's local part; a SisSourcedId identifier); an actor without it is
// refused naming the rule.
func TestSourceRulesSayWhereActorsAreIdentified(t *testing.T) {
	f := newFixture(t)
	if _, err := mappings.New(f.pool).Set(t.Context(), "d1", "lms", []byte("version: 1\nactors:\n  xapi: mbox_local\n  caliper: identifier:SisSourcedId\n"), "test"); err != nil {
		t.Fatal(err)
	}
	ts := time.Now().UTC().Format(time.RFC3339)
	xapiSt := func(id, actor string) string {
		return `{"id":"` + id + `","actor":` + actor + `,"verb":{"id":"http://adlnet.gov/expapi/verbs/experienced"},` +
			`"object":{"id":"http://example.org/video/1"},"timestamp":"` + ts + `"}`
	}
	if code, body := f.xapiDo(t, "POST", "", "1.0.3", xapiSt("66666666-6666-4666-8666-666666666661", `{"mbox":"mailto:stu-0042@students.example.org"}`)); code != http.StatusOK {
		t.Fatalf("xapi: %d %s", code, body)
	}
	code, body := f.xapiDo(t, "POST", "", "1.0.3", xapiSt("66666666-6666-4666-8666-666666666662", `{"account":{"homePage":"https://sis.example.org","name":"stu-0043"}}`))
	if code != http.StatusBadRequest || !strings.Contains(string(body), "the source's rule reads the SIS id from mbox") {
		t.Fatalf("an actor without an mbox: %d %s", code, body)
	}
	caliper := `{"sensor":"https://example.edu/sensors/1","sendTime":"` + ts + `","dataVersion":"http://purl.imsglobal.org/ctx/caliper/v1p2","data":[` +
		`{"id":"urn:uuid:66666666-6666-4666-8666-666666666663","type":"ViewEvent","action":"Viewed","eventTime":"` + ts + `",` +
		`"actor":{"id":"https://example.edu/users/9","type":"Person","otherIdentifiers":[{"type":"SystemIdentifier","identifier":"stu-0044","identifierType":"SisSourcedId"}]},` +
		`"object":"https://example.edu/doc/1"},` +
		`{"id":"urn:uuid:66666666-6666-4666-8666-666666666664","type":"ViewEvent","action":"Viewed","eventTime":"` + ts + `",` +
		`"actor":"https://example.edu/users/10","object":"https://example.edu/doc/1"}]}`
	code2, out := f.postRaw(t, "/v1/caliper", "good", "application/json", []byte(caliper))
	if code2 != http.StatusAccepted || out["accepted"] != 1.0 || !strings.Contains(fmtJSON(out["rejected"]), "otherIdentifiers of type SisSourcedId") {
		t.Fatalf("caliper: %d %v", code2, out)
	}
	var actors []string
	for _, r := range f.readTopic(t, f.kcfg.Topics().Raw) {
		actors = append(actors, f.rawEvent(t, r).Actor.SISID)
	}
	if !slices.Equal(actors, []string{"stu-0042", "stu-0044"}) {
		t.Fatalf("raw actors %v", actors)
	}
}
