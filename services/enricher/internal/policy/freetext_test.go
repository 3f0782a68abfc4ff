package policy

import (
	"slices"
	"testing"

	"github.com/edtech-analytics/platform/libs/pii"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy/privacy"
)

func TestTextOnlyFieldsAreFreeTextFields(t *testing.T) {
	fields := fieldTable()
	for _, path := range privacy.FreeTextFields() {
		if _, ok := fields[path]; !ok {
			if _, ok := textOnlyFields()[path]; !ok {
				t.Errorf("free-text field %s is not implemented", path)
			}
		}
	}
	for path := range textOnlyFields() {
		if !slices.Contains(privacy.FreeTextFields(), path) {
			t.Errorf("%s is scanned but not a free-text field", path)
		}
	}
}

func freeTextPolicy(action string, fields map[string]string) *Compiled {
	p := privacy.Policy{Template: privacy.TemplateCustom, UnknownAgeAs: privacy.AgeAdult, Fields: fields,
		Identity: privacy.Identity{MatchKey: privacy.MatchNone}}
	if action != "" {
		p.FreeText = &privacy.FreeText{Action: action}
	}
	return Compile(p, key)
}

func attendance(reason string) *records.EnrichedEvent {
	return &records.EnrichedEvent{Type: records.TypeAttendance, Actor: records.EnrichedActor{SISID: ptr("S1")},
		Attendance: &records.Attendance{Status: "absent", Reason: ptr(reason)}}
}

func TestFreeTextActions(t *testing.T) {
	const reason = "call mom at 555-123-4567 or mom@example.org"
	found := func(action string) []Detection {
		return []Detection{{"attendance.reason", pii.Phone, action}, {"attendance.reason", pii.Email, action}}
	}
	tests := []struct {
		action   string // "" : no rule in the policy
		want     *string
		rejected bool
	}{
		{"", ptr("call mom at [phone] or [email]"), false},
		{privacy.ActionMask, ptr("call mom at [phone] or [email]"), false},
		{privacy.ActionFlag, ptr(reason), false},
		{privacy.ActionDrop, nil, false},
		{privacy.ActionReject, ptr(reason), true},
	}
	for _, tt := range tests {
		t.Run(tt.action, func(t *testing.T) {
			c := freeTextPolicy(tt.action, nil)
			ev := attendance(reason)
			if rejected := c.Apply(ev, Adult); rejected != "" {
				t.Fatal(rejected)
			}
			got, rejected := c.FreeText(ev, Adult)
			action := tt.action
			if action == "" {
				action = privacy.ActionMask
			}
			if !slices.Equal(got, found(action)) || rejected != tt.rejected {
				t.Errorf("FreeText = %v, %v; want %v, %v", got, rejected, found(action), tt.rejected)
			}
			switch r := ev.Attendance.Reason; {
			case tt.want == nil && r != nil, tt.want != nil && (r == nil || *r != *tt.want):
				t.Errorf("reason = %v, want %v", r, tt.want)
			}
		})
	}
}

func TestFreeTextScansWhatTheFieldsKeep(t *testing.T) {
	// A field the policy drops or masks is not scanned; one it keeps is; texts without findings are left
	// alone and found nothing.
	c := freeTextPolicy(privacy.ActionMask, map[string]string{"session.device": privacy.ActionDrop, "session.app": privacy.ActionMask})
	ev := sessionEvent()
	ev.Session.Device, ev.Session.App = ptr("ssn 123-45-6789"), ptr("jane@example.org")
	c.Apply(ev, Adult)
	if got, rejected := c.FreeText(ev, Adult); got != nil || rejected || ev.Session.Device != nil {
		t.Errorf("FreeText of dropped and masked fields = %v, %v; device %v", got, rejected, ev.Session.Device)
	}
	clean := attendance("sick, back on 2026-09-01 (score 93.5)")
	if got, _ := c.FreeText(clean, Adult); got != nil || *clean.Attendance.Reason != "sick, back on 2026-09-01 (score 93.5)" {
		t.Errorf("FreeText of clean text = %v, %q", got, *clean.Attendance.Reason)
	}
	// Fields a policy cannot name: a result's comment and text score.
	res := &records.EnrichedEvent{Type: records.TypeRosterResult, RosterResult: &records.RosterResult{StudentSourcedID: "S1",
		Comment: ptr("see 123-45-6789"), TextScore: ptr("B; parent: +44 20 7946 0958")}}
	got, _ := c.FreeText(res, Adult)
	want := []Detection{{"roster_result.comment", pii.SSN, privacy.ActionMask}, {"roster_result.text_score", pii.Phone, privacy.ActionMask}}
	if !slices.Equal(got, want) || *res.RosterResult.Comment != "see [ssn]" || *res.RosterResult.TextScore != "B; parent: [phone]" {
		t.Errorf("FreeText of a result = %v; comment %q, text score %q", got, *res.RosterResult.Comment, *res.RosterResult.TextScore)
	}
	// The child rules of COPPA drop the reason of under-13s: nothing is left to scan.
	p, _ := privacy.Template(privacy.TemplateCOPPA)
	coppa := Compile(p, key)
	child := attendance("call 555-123-4567")
	coppa.Apply(child, Under13)
	if got, _ := coppa.FreeText(child, Under13); got != nil || child.Attendance.Reason != nil {
		t.Errorf("COPPA under 13: %v, reason %v", got, child.Attendance.Reason)
	}
}

func customEvent() *records.EnrichedEvent {
	return &records.EnrichedEvent{Type: records.TypeCustom, Custom: &records.CustomEvent{Name: "support.message_sent",
		PropertyKeys: []string{"channel", "note"}, PropertyValues: []string{"chat", "write me at kid@example.org"}}}
}

func genericEvent() *records.EnrichedEvent {
	return &records.EnrichedEvent{Type: records.TypeGeneric, Generic: &records.GenericEvent{Standard: "xapi", Type: "verb",
		ObjectID: "http://example.edu/a/1", ExtensionKeys: []string{"contact"}, ExtensionValues: []string{"555-123-4567"}}}
}

// A custom event's property values and a generic event's extension values are scanned like free text;
// a policy that drops the properties or extensions removes every pair, and then nothing is scanned.
func TestCustomPropertiesAndGenericExtensions(t *testing.T) {
	ev := customEvent()
	c := freeTextPolicy(privacy.ActionMask, nil)
	c.Apply(ev, Adult)
	found, rejected := c.FreeText(ev, Adult)
	if rejected || !slices.Equal(found, []Detection{{"custom.properties", pii.Email, privacy.ActionMask}}) {
		t.Fatalf("found %v, rejected %v", found, rejected)
	}
	if !slices.Equal(ev.Custom.PropertyValues, []string{"chat", "write me at [email]"}) || len(ev.Custom.PropertyKeys) != 2 {
		t.Fatalf("masked properties = %v %v", ev.Custom.PropertyKeys, ev.Custom.PropertyValues)
	}

	g := genericEvent()
	if found, _ := c.FreeText(g, Adult); len(found) != 1 || found[0].Field != "generic.extensions" || found[0].Kind != pii.Phone {
		t.Fatalf("generic: found %v", found)
	}

	ev = customEvent()
	c = freeTextPolicy(privacy.ActionReject, map[string]string{"custom.properties": privacy.ActionDrop})
	if r := c.Apply(ev, Adult); r != "" {
		t.Fatalf("rejected by %s", r)
	}
	if found, rejected := c.FreeText(ev, Adult); len(found) != 0 || rejected {
		t.Fatalf("dropped properties were scanned: %v %v", found, rejected)
	}
	if ev.Custom.Name != "support.message_sent" || len(ev.Custom.PropertyKeys) != 0 || len(ev.Custom.PropertyValues) != 0 {
		t.Fatalf("after drop: %+v", ev.Custom)
	}

	g = genericEvent()
	c = freeTextPolicy("", map[string]string{"generic.object_id": privacy.ActionMask, "generic.extensions": privacy.ActionMask})
	c.Apply(g, Adult)
	if g.Generic.ObjectID != "h***" || len(g.Generic.ExtensionKeys) != 0 || g.Generic.Type != "verb" {
		t.Fatalf("after mask: %+v", g.Generic)
	}
}
