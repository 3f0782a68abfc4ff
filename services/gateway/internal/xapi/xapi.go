// Package xapi reads ADL xAPI (Experience API 1.0.3) statements and turns each into the platform's own
// event (the JSON shape of POST /v1/events):
//
//   - verb experienced: a content view of the object (result.duration when given, else 0);
//   - verbs passed, failed, scored and completed with a result.score: an assessment result (raw and
//     max, or scaled as a percentage);
//   - the ADL verbs logged-in and logged-out: a session;
//   - every other statement: a generic event (the verb's IRI as its action, the object's activity type
//     as its type, result and context extensions as its extensions).
//
// The statement's id is the event id (a statement without one gets a version 5 UUID of its bytes, so a
// retry of the same bytes is the same statement). The actor is the district's person by its account
// name (account.homePage + account.name), else its mbox address without "mailto:", else its openid,
// else its mbox_sha1sum; its role is student.
package xapi

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
	"github.com/edtech-analytics/platform/services/gateway/internal/standard"
)

// Versions are the X-Experience-API-Version values taken.
var Versions = []string{"1.0.0", "1.0.1", "1.0.2", "1.0.3"}

// ADL verbs the mapping reads.
const (
	adl         = "http://adlnet.gov/expapi/verbs/"
	Experienced = adl + "experienced"
	Passed      = adl + "passed"
	Failed      = adl + "failed"
	Scored      = adl + "scored"
	Completed   = adl + "completed"
	LoggedIn    = adl + "logged-in"
	LoggedOut   = adl + "logged-out"
)

// Statement is a statement as read here.
type Statement struct {
	ID        string          `json:"id"`
	Actor     *Agent          `json:"actor"`
	Verb      *Verb           `json:"verb"`
	Object    *Object         `json:"object"`
	Result    *Result         `json:"result"`
	Context   *Context        `json:"context"`
	Timestamp string          `json:"timestamp"`
	Stored    json.RawMessage `json:"stored"`
	Authority json.RawMessage `json:"authority"`
	Version   string          `json:"version"`
}

// Agent is a statement's actor (an Agent or a Group with an inverse functional identifier).
type Agent struct {
	ObjectType  string   `json:"objectType"`
	Name        string   `json:"name"`
	Mbox        string   `json:"mbox"`
	MboxSHA1Sum string   `json:"mbox_sha1sum"`
	OpenID      string   `json:"openid"`
	Account     *Account `json:"account"`
	Member      []Agent  `json:"member"`
}

// Account is an agent's account on a system.
type Account struct {
	HomePage string `json:"homePage"`
	Name     string `json:"name"`
}

// Verb is a statement's verb.
type Verb struct {
	ID      string            `json:"id"`
	Display map[string]string `json:"display"`
}

// Object is a statement's object; only activities are mapped onto platform types.
type Object struct {
	ObjectType string `json:"objectType"`
	ID         string `json:"id"`
	Definition *struct {
		Type string `json:"type"`
	} `json:"definition"`
}

// Result is a statement's result.
type Result struct {
	Score *struct {
		Scaled *float64 `json:"scaled"`
		Raw    *float64 `json:"raw"`
		Min    *float64 `json:"min"`
		Max    *float64 `json:"max"`
	} `json:"score"`
	Success    *bool                      `json:"success"`
	Completion *bool                      `json:"completion"`
	Duration   string                     `json:"duration"`
	Extensions map[string]json.RawMessage `json:"extensions"`
}

// Context is a statement's context.
type Context struct {
	Registration string                     `json:"registration"`
	Extensions   map[string]json.RawMessage `json:"extensions"`
}

// namespace is the UUID namespace of statement ids made from statement bytes.
var namespace = [16]byte{0x6f, 0x1c, 0x2a, 0x51, 0x0e, 0x3d, 0x4b, 0x8e, 0x9a, 0x61, 0x57, 0x2f, 0x0c, 0x7e, 0x44, 0x19}

// Converted is a statement turned into a platform event.
type Converted struct {
	ID    string          // the statement's id
	Hash  []byte          // of the statement's bytes
	Event json.RawMessage // the platform's event
	Actor string          // the actor's SIS id
}

// Convert turns statement i (where names its place, e.g. "/3" or "" for a single statement) into the
// platform's event, or says what is wrong with it.
//
// actor is the source's rule for its actors' SIS ids (mapping.Actors.XAPI: account, mbox, mbox_local,
// openid); empty takes the default order.
func Convert(where string, raw json.RawMessage, now time.Time, actor string) (Converted, []ingest.FieldError) {
	return convert(where, raw, now, "", actor)
}

// ConvertWithID is Convert for a statement stored under id (PUT /xapi/statements?statementId=), which
// the statement itself need not repeat.
func ConvertWithID(raw json.RawMessage, id string, now time.Time, actor string) (Converted, []ingest.FieldError) {
	return convert("", raw, now, id, actor)
}

func convert(where string, raw json.RawMessage, now time.Time, id, rule string) (Converted, []ingest.FieldError) {
	var errs []ingest.FieldError
	add := func(p, msg string) { errs = append(errs, ingest.FieldError{Field: where + p, Message: msg}) }
	var st Statement
	if err := json.Unmarshal(raw, &st); err != nil {
		add("", "must be an xAPI statement: "+err.Error())
		return Converted{}, errs
	}
	sum := sha256.Sum256(raw)
	c := Converted{ID: strings.ToLower(st.ID), Hash: sum[:]}
	switch {
	case st.ID != "" && !ingest.IsUUID(st.ID):
		add("/id", "must be a UUID")
	case id != "" && st.ID != "" && c.ID != id:
		add("/id", "differs from statementId "+id)
	case id != "":
		c.ID = id
	case st.ID == "":
		c.ID = uuid5(raw)
	}
	sis := ""
	if st.Actor == nil {
		add("/actor", "is required")
	} else {
		var msg string
		if sis, msg = actorID(*st.Actor, rule); msg != "" {
			add("/actor", msg)
		}
	}
	switch {
	case st.Verb == nil || st.Verb.ID == "":
		add("/verb/id", "is required")
	case !isIRI(st.Verb.ID):
		add("/verb/id", "must be an IRI")
	}
	switch {
	case st.Object == nil || st.Object.ID == "":
		add("/object/id", "is required")
	case (st.Object.ObjectType == "" || st.Object.ObjectType == "Activity") && !isIRI(st.Object.ID):
		add("/object/id", "an activity's id must be an IRI")
	}
	occurred := now.UTC().Format(time.RFC3339Nano)
	if st.Timestamp != "" {
		if _, err := time.Parse(time.RFC3339Nano, st.Timestamp); err != nil {
			add("/timestamp", "must be an ISO 8601 date and time with a zone")
		}
		occurred = st.Timestamp
	}
	if st.Result != nil && st.Result.Score != nil {
		if s := st.Result.Score.Scaled; s != nil && (*s < -1 || *s > 1) {
			add("/result/score/scaled", "must be between -1 and 1")
		}
	}
	if errs != nil {
		return Converted{}, errs
	}

	out := map[string]any{"event_id": c.ID, "occurred_at": occurred, "actor": map[string]string{"sis_id": sis, "role": "student"}}
	activity := st.Object.ObjectType == "" || st.Object.ObjectType == "Activity"
	verb := st.Verb.ID
	var payload map[string]any
	switch {
	case activity && verb == Experienced:
		var secs int64
		if st.Result != nil {
			secs = standard.DurationSeconds(st.Result.Duration)
		}
		payload, out["type"] = map[string]any{"content_id": st.Object.ID, "content_type": activityType(st.Object), "duration_seconds": secs}, "content_view"
	case activity && (verb == Passed || verb == Failed || verb == Scored || verb == Completed) && hasScore(st.Result):
		score, max := scoreOf(st.Result)
		payload = map[string]any{"assessment_id": st.Object.ID, "score": score, "max_score": max, "attempt": 1, "completed_at": occurred}
		out["type"] = "assessment_result"
	case verb == LoggedIn || verb == LoggedOut:
		payload, out["type"] = map[string]any{"action": map[string]string{LoggedIn: "login", LoggedOut: "logout"}[verb]}, "session"
		if st.Context != nil && st.Context.Registration != "" {
			payload["session_id"] = st.Context.Registration
		}
	default:
		payload = map[string]any{"standard": "xapi", "type": activityType(st.Object), "action": verb, "object_id": st.Object.ID, "statement_id": c.ID}
		if st.Object.ObjectType != "" {
			payload["object_type"] = st.Object.ObjectType
		}
		ext := map[string]string{}
		if st.Result != nil {
			standard.Strings(ext, st.Result.Extensions)
			if st.Result.Success != nil {
				ext["result.success"] = strconv.FormatBool(*st.Result.Success)
			}
			if st.Result.Completion != nil {
				ext["result.completion"] = strconv.FormatBool(*st.Result.Completion)
			}
		}
		if st.Context != nil {
			standard.Strings(ext, st.Context.Extensions)
		}
		if len(ext) > 0 {
			payload["extensions"] = ext
		}
		out["type"] = "generic"
	}
	out["payload"] = payload
	b, err := json.Marshal(out)
	if err != nil {
		add("", err.Error())
		return Converted{}, errs
	}
	c.Event, c.Actor = b, sis
	return c, nil
}

// actorID returns the SIS id of an actor by the source's rule (see the package comment for the default
// order), or what is wrong with it.
func actorID(a Agent, rule string) (string, string) {
	ifis := 0
	for _, set := range []bool{a.Mbox != "", a.MboxSHA1Sum != "", a.OpenID != "", a.Account != nil} {
		if set {
			ifis++
		}
	}
	switch {
	case a.ObjectType == "Group" && ifis == 0:
		return "", "an anonymous group names no person"
	case ifis != 1:
		return "", "needs exactly one of mbox, mbox_sha1sum, openid or account"
	case a.Account != nil && (a.Account.Name == "" || !isIRI(a.Account.HomePage)):
		return "", "account needs a homePage IRI and a name"
	}
	addr, isMailto := strings.CutPrefix(a.Mbox, "mailto:")
	if a.Mbox != "" && (!isMailto || !strings.Contains(addr, "@")) {
		return "", "mbox must be a mailto: IRI"
	}
	switch rule {
	case "account":
		if a.Account == nil {
			return "", "the source's rule reads the SIS id from account.name, and the actor has no account"
		}
		return a.Account.Name, ""
	case "mbox", "mbox_local":
		if a.Mbox == "" {
			return "", "the source's rule reads the SIS id from mbox, and the actor has none"
		}
		if rule == "mbox_local" {
			local, _, _ := strings.Cut(addr, "@")
			return local, ""
		}
		return addr, ""
	case "openid":
		if a.OpenID == "" {
			return "", "the source's rule reads the SIS id from openid, and the actor has none"
		}
		return a.OpenID, ""
	}
	switch {
	case a.Account != nil:
		return a.Account.Name, ""
	case a.Mbox != "":
		return addr, ""
	case a.OpenID != "":
		return a.OpenID, ""
	}
	return a.MboxSHA1Sum, ""
}

func hasScore(r *Result) bool {
	return r != nil && r.Score != nil && (r.Score.Raw != nil || r.Score.Scaled != nil)
}

// scoreOf returns raw and max (max defaults to 100 when the score gives none), or a scaled score as a
// percentage.
func scoreOf(r *Result) (float64, float64) {
	s := r.Score
	if s.Raw != nil {
		max := 100.0
		if s.Max != nil {
			max = *s.Max
		}
		return *s.Raw, max
	}
	return *s.Scaled * 100, 100
}

// activityType names an object's type: the last segment of its activity type IRI
// (http://adlnet.gov/expapi/activities/assessment: assessment), else its objectType, else Activity.
func activityType(o *Object) string {
	if o.Definition != nil && o.Definition.Type != "" {
		if u, err := url.Parse(o.Definition.Type); err == nil && u.Path != "" {
			if last := path.Base(strings.TrimSuffix(u.Path, "/")); last != "" && last != "/" && last != "." {
				return last
			}
		}
		return o.Definition.Type
	}
	if o.ObjectType != "" {
		return o.ObjectType
	}
	return "Activity"
}

func isIRI(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme != "" && (u.Host != "" || u.Opaque != "")
}

// uuid5 is a version 5 UUID of b in the package's namespace.
func uuid5(b []byte) string {
	h := sha1.New()
	h.Write(namespace[:])
	h.Write(b)
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	s := hex.EncodeToString(u[:])
	return fmt.Sprintf("%s-%s-%s-%s-%s", s[0:8], s[8:12], s[12:16], s[16:20], s[20:32])
}
