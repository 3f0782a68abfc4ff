package xapi

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
)

var now = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// statement builds an xAPI statement in the shape of the specification's examples.
func statement(verb, object, extra string) string {
	if extra != "" {
		extra = "," + extra
	}
	return `{"id":"fd41c918-b88b-4b20-a0a5-a4c32391aaa0","actor":{"objectType":"Agent","name":"Project Tin Can API",` +
		`"account":{"homePage":"https://sis.example.org","name":"stu-0042"}},"verb":{"id":"` + verb + `","display":{"en-US":"did"}},` +
		`"object":` + object + `,"timestamp":"2026-11-30T10:15:00.000Z"` + extra + `}`
}

const activity = `{"id":"http://example.adlnet.gov/xapi/example/simpleCBT","definition":{"type":"http://adlnet.gov/expapi/activities/assessment"}}`

func mapped(t *testing.T, raw string) map[string]any {
	t.Helper()
	c, errs := Convert("", json.RawMessage(raw), now, "")
	if errs != nil {
		t.Fatalf("refused: %+v", errs)
	}
	var out map[string]any
	if err := json.Unmarshal(c.Event, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVerbsMapOntoPlatformTypes(t *testing.T) {
	for _, tt := range []struct {
		name, raw, want string
		check           func(p map[string]any) bool
	}{
		{"experienced", statement(Experienced, `{"id":"http://example.org/videos/1","definition":{"type":"http://adlnet.gov/expapi/activities/media"}}`,
			`"result":{"duration":"PT4M30S"}`), "content_view",
			func(p map[string]any) bool { return p["duration_seconds"] == 270.0 && p["content_type"] == "media" }},
		{"passed with raw score", statement(Passed, activity, `"result":{"score":{"raw":83,"min":0,"max":100},"success":true}`), "assessment_result",
			func(p map[string]any) bool {
				return p["score"] == 83.0 && p["max_score"] == 100.0 && p["assessment_id"] == "http://example.adlnet.gov/xapi/example/simpleCBT"
			}},
		{"scored scaled", statement(Scored, activity, `"result":{"score":{"scaled":0.95}}`), "assessment_result",
			func(p map[string]any) bool { return p["score"] == 95.0 && p["max_score"] == 100.0 }},
		{"completed without a score", statement(Completed, activity, `"result":{"completion":true}`), "generic",
			func(p map[string]any) bool {
				ext, _ := p["extensions"].(map[string]any)
				return p["standard"] == "xapi" && p["action"] == Completed && p["type"] == "assessment" && ext["result.completion"] == "true"
			}},
		{"logged in", statement(LoggedIn, `{"id":"https://lms.example.org"}`, ""), "session",
			func(p map[string]any) bool { return p["action"] == "login" }},
		{"answered", statement("http://adlnet.gov/expapi/verbs/answered", activity,
			`"context":{"extensions":{"http://example.org/ext/attempt":2}}`), "generic",
			func(p map[string]any) bool {
				ext, _ := p["extensions"].(map[string]any)
				return ext["http://example.org/ext/attempt"] == "2"
			}},
		{"another object type", statement("http://adlnet.gov/expapi/verbs/launched", `{"objectType":"StatementRef","id":"8f87ccde-bb56-4c2e-ab83-44982ef22df0"}`, ""),
			"generic", func(p map[string]any) bool { return p["object_type"] == "StatementRef" && p["type"] == "StatementRef" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := mapped(t, tt.raw)
			actor, _ := out["actor"].(map[string]any)
			if out["type"] != tt.want || out["event_id"] != "fd41c918-b88b-4b20-a0a5-a4c32391aaa0" || actor["sis_id"] != "stu-0042" ||
				out["occurred_at"] != "2026-11-30T10:15:00.000Z" {
				t.Fatalf("mapped to %v", out)
			}
			if p, _ := out["payload"].(map[string]any); !tt.check(p) {
				t.Fatalf("payload %v", p)
			}
		})
	}
}

func TestMappedStatementsPassThePlatformsChecks(t *testing.T) {
	var raws []json.RawMessage
	for _, s := range []string{statement(Experienced, activity, ""), statement(Passed, activity, `"result":{"score":{"raw":7,"max":10}}`),
		statement(LoggedOut, `{"id":"https://lms.example.org"}`, "")} {
		c, errs := Convert("", json.RawMessage(s), now, "")
		if errs != nil {
			t.Fatal(errs)
		}
		raws = append(raws, c.Event)
	}
	for i := range raws { // distinct event ids
		raws[i] = json.RawMessage(strings.Replace(string(raws[i]), "fd41c918-b88b-4b20-a0a5-a4c32391aaa0", "fd41c918-b88b-4b20-a0a5-a4c32391aaa"+string(rune('1'+i)), 1))
	}
	if _, rejected := ingest.Validate(raws, ingest.Meta{TenantID: "d1", SourceID: "lrs", ReceivedAt: now}); rejected != nil {
		t.Fatalf("rejected %+v", rejected)
	}
}

func TestActors(t *testing.T) {
	for _, tt := range []struct{ actor, sis, err string }{
		{`{"mbox":"mailto:ada@example.org"}`, "ada@example.org", ""},
		{`{"openid":"https://openid.example.org/ada"}`, "https://openid.example.org/ada", ""},
		{`{"mbox":"ada@example.org"}`, "", "mailto:"},
		{`{"mbox":"mailto:ada@example.org","account":{"homePage":"https://sis.example.org","name":"ada"}}`, "", "exactly one"},
		{`{"account":{"homePage":"sis","name":"ada"}}`, "", "homePage IRI"},
		{`{"objectType":"Group","member":[{"mbox":"mailto:a@example.org"}]}`, "", "anonymous group"},
	} {
		raw := strings.Replace(statement(Experienced, activity, ""),
			`{"objectType":"Agent","name":"Project Tin Can API","account":{"homePage":"https://sis.example.org","name":"stu-0042"}}`, tt.actor, 1)
		c, errs := Convert("/0", json.RawMessage(raw), now, "")
		if tt.err != "" {
			if len(errs) != 1 || errs[0].Field != "/0/actor" || !strings.Contains(errs[0].Message, tt.err) {
				t.Fatalf("%s: errors %+v, want %q", tt.actor, errs, tt.err)
			}
			continue
		}
		var out struct{ Actor map[string]string }
		if errs != nil || json.Unmarshal(c.Event, &out) != nil || out.Actor["sis_id"] != tt.sis {
			t.Fatalf("%s: %+v %s", tt.actor, errs, c.Event)
		}
	}
}

func TestRefusedStatements(t *testing.T) {
	valid := statement(Experienced, activity, "")
	for _, tt := range []struct{ name, raw, field, msg string }{
		{"not an object", `[1]`, "/2", "must be an xAPI statement"},
		{"bad id", strings.Replace(valid, "fd41c918-b88b-4b20-a0a5-a4c32391aaa0", "17", 1), "/2/id", "UUID"},
		{"no verb", strings.Replace(valid, `"verb":{"id":"`+Experienced+`","display":{"en-US":"did"}},`, "", 1), "/2/verb/id", "required"},
		{"verb not an IRI", strings.Replace(valid, Experienced, "experienced", 1), "/2/verb/id", "IRI"},
		{"activity id not an IRI", strings.Replace(valid, "http://example.adlnet.gov/xapi/example/simpleCBT", "simpleCBT", 1), "/2/object/id", "IRI"},
		{"bad timestamp", strings.Replace(valid, "2026-11-30T10:15:00.000Z", "yesterday", 1), "/2/timestamp", "ISO 8601"},
		{"scaled out of range", statement(Scored, activity, `"result":{"score":{"scaled":1.5}}`), "/2/result/score/scaled", "between -1 and 1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := Convert("/2", json.RawMessage(tt.raw), now, "")
			for _, e := range errs {
				if e.Field == tt.field && strings.Contains(e.Message, tt.msg) {
					return
				}
			}
			t.Fatalf("errors %+v, want %s: %s", errs, tt.field, tt.msg)
		})
	}
}

func TestStatementIDs(t *testing.T) {
	noID := strings.Replace(statement(Experienced, activity, ""), `"id":"fd41c918-b88b-4b20-a0a5-a4c32391aaa0",`, "", 1)
	a, _ := Convert("", json.RawMessage(noID), now, "")
	b, _ := Convert("", json.RawMessage(noID), now, "")
	if a.ID == "" || a.ID != b.ID || !ingest.IsUUID(a.ID) {
		t.Fatalf("ids of one statement without an id: %q, %q", a.ID, b.ID)
	}
	put, errs := ConvertWithID(json.RawMessage(noID), "0e7e6a3a-5a0f-4d3e-9a59-6f2b1b9d1c10", now, "")
	if errs != nil || put.ID != "0e7e6a3a-5a0f-4d3e-9a59-6f2b1b9d1c10" {
		t.Fatalf("PUT id: %q %+v", put.ID, errs)
	}
	if _, errs := ConvertWithID(json.RawMessage(statement(Experienced, activity, "")), "0e7e6a3a-5a0f-4d3e-9a59-6f2b1b9d1c10", now, ""); len(errs) != 1 ||
		!strings.Contains(errs[0].Message, "differs from statementId") {
		t.Fatalf("a PUT whose statement names another id: %+v", errs)
	}
}

func TestActorRules(t *testing.T) {
	withMbox := `{"mbox":"mailto:ada.l@example.org"}`
	for _, tt := range []struct{ rule, actor, sis, err string }{
		{"mbox", withMbox, "ada.l@example.org", ""},
		{"mbox_local", withMbox, "ada.l", ""},
		{"account", `{"account":{"homePage":"https://sis.example.org","name":"stu-7"}}`, "stu-7", ""},
		{"account", withMbox, "", "from account.name"},
		{"openid", `{"openid":"https://id.example.org/ada"}`, "https://id.example.org/ada", ""},
		{"openid", withMbox, "", "from openid"},
	} {
		raw := strings.Replace(statement(Experienced, activity, ""),
			`{"objectType":"Agent","name":"Project Tin Can API","account":{"homePage":"https://sis.example.org","name":"stu-0042"}}`, tt.actor, 1)
		c, errs := Convert("", json.RawMessage(raw), now, tt.rule)
		if tt.err != "" {
			if len(errs) != 1 || !strings.Contains(errs[0].Message, tt.err) {
				t.Fatalf("%s %s: %+v, want %q", tt.rule, tt.actor, errs, tt.err)
			}
			continue
		}
		if errs != nil || c.Actor != tt.sis {
			t.Fatalf("%s %s: %q %+v, want %q", tt.rule, tt.actor, c.Actor, errs, tt.sis)
		}
	}
}
