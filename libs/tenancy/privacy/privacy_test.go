package privacy_test

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/internal/controltest"
	"github.com/edtech-analytics/platform/libs/tenancy/privacy"
)

func TestPolicyTemplates(t *testing.T) {
	for _, name := range privacy.Templates() {
		p, err := privacy.Template(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := p.Validate(); err != nil {
			t.Errorf("template %s does not validate: %v", name, err)
		}
	}
	coppa, _ := privacy.Template(privacy.TemplateCOPPA)
	if coppa.Under13["actor.sis_id"] != privacy.ActionPseudonymise || coppa.UnknownAgeAs != privacy.AgeUnder13 || coppa.Consent != nil {
		t.Errorf("coppa = %+v", coppa)
	}
	dpdp, _ := privacy.Template(privacy.TemplateDPDP)
	if dpdp.Under18["roster_user.email"] != privacy.ActionDrop || dpdp.Consent == nil || dpdp.Consent.Under != 18 ||
		!slices.Contains(dpdp.Consent.EventTypes, "session") || dpdp.UnknownAgeAs != privacy.AgeUnder18 {
		t.Errorf("dpdp = %+v", dpdp)
	}
	// Templates are copies: changing one does not change the next.
	coppa.Under13["actor.sis_id"] = privacy.ActionKeep
	again, _ := privacy.Template(privacy.TemplateCOPPA)
	if again.Under13["actor.sis_id"] != privacy.ActionPseudonymise {
		t.Error("a template shares its maps")
	}
	for _, name := range privacy.Templates() {
		if p, _ := privacy.Template(name); p.FreeText == nil || p.FreeTextAction() != privacy.ActionMask {
			t.Errorf("template %s: free text %+v, want mask", name, p.FreeText)
		}
	}
	if _, err := privacy.Template("gdpr"); !errors.Is(err, tenancy.ErrInvalidArgument) {
		t.Errorf("unknown template: %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name, doc, mention string
	}{
		{"unknown key", `{"template":"custom","fieldz":{}}`, "fieldz"},
		{"unknown field", `{"template":"custom","fields":{"actor.name":"drop"}}`, `unknown field "actor.name"`},
		{"unknown action", `{"template":"custom","fields":{"school_id":"hide"}}`, "school_id: unknown action"},
		{"pseudonymise a flag", `{"template":"custom","under_13":{"roster_demographics.sex":"pseudonymise"}}`, "cannot be pseudonymised"},
		{"unknown template", `{"template":"hipaa"}`, "template"},
		{"age class", `{"template":"custom","unknown_age_as":"teen"}`, "unknown_age_as"},
		{"consent type", `{"template":"custom","consent":{"under":18,"event_types":["roster.user"],"metadata_key":"c"}}`, "roster.user"},
		{"consent age", `{"template":"custom","consent":{"under":0,"event_types":["session"],"metadata_key":"c"}}`, "consent.under"},
		{"match key", `{"template":"custom","identity":{"match_key":"email"}}`, "match_key"},
		{"namespace", `{"template":"custom","identity":{"namespaces":{"lms":"a b"}}}`, "namespaces"},
		{"free text action", `{"template":"custom","free_text":{"action":"hide"}}`, `free_text.action: "hide"`},
		{"free text without action", `{"template":"custom","free_text":{}}`, "free_text.action"},
		{"free text key", `{"template":"custom","free_text":{"action":"mask","kinds":["ssn"]}}`, "kinds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := privacy.Parse([]byte(tt.doc))
			if !errors.Is(err, tenancy.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("Parse = %v, want ErrInvalidArgument mentioning %q", err, tt.mention)
			}
		})
	}
	p, err := privacy.Parse([]byte(`{"template":"custom","version":9,"fields":{"school_id":"mask"},
		"identity":{"match_key":"user_id:state_id","namespaces":{"canvas":"sis"}}}`))
	if err != nil || p.Version != 0 || p.UnknownAgeAs != privacy.AgeAdult || p.Identity.Namespaces["canvas"] != "sis" {
		t.Errorf("Parse = %+v, %v", p, err)
	}
}

func TestFreeTextRule(t *testing.T) {
	// A policy without the rule (every policy stored before it existed) masks.
	p, err := privacy.Parse([]byte(`{"template":"custom"}`))
	if err != nil || p.FreeText != nil || p.FreeTextAction() != privacy.ActionMask {
		t.Errorf("Parse without free_text = %+v, %v; action %q", p.FreeText, err, p.FreeTextAction())
	}
	for _, action := range privacy.FreeTextActions() {
		p, err := privacy.Parse([]byte(`{"template":"custom","free_text":{"action":"` + action + `"}}`))
		if err != nil || p.FreeTextAction() != action {
			t.Errorf("Parse free_text %s = %+v, %v", action, p.FreeText, err)
		}
	}
	fields := privacy.FreeTextFields()
	for _, want := range []string{"attendance.reason", "session.device", "session.app", "roster_user.given_name",
		"roster_user.pronouns", "roster_demographics.city_of_birth", "roster_result.comment", "roster_result.text_score",
		"roster_line_item.description"} {
		if !slices.Contains(fields, want) {
			t.Errorf("FreeTextFields lacks %s: %v", want, fields)
		}
	}
	if slices.Contains(fields, "roster_user.email") || slices.Contains(fields, "actor.sis_id") {
		t.Errorf("FreeTextFields holds fields that are not free text: %v", fields)
	}
}

func TestPolicyVersions(t *testing.T) {
	pool, districts := controltest.Districts(t, pgtest.New)
	store := privacy.New(pool)
	ctx := t.Context()
	if _, err := districts.Create(ctx, "d1", "D1"); err != nil {
		t.Fatal(err)
	}
	p, err := store.Policy(ctx, "d1")
	if err != nil || p.Version != 0 || p.Template != privacy.TemplateFERPA || p.TenantID != "d1" {
		t.Fatalf("default policy = %+v, %v", p, err)
	}
	if _, err := store.Policy(ctx, "nope"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("Policy(unknown) = %v", err)
	}

	coppa, _ := privacy.Template(privacy.TemplateCOPPA)
	set, err := store.SetPolicy(ctx, "d1", coppa, "alice")
	if err != nil || set.Version != 1 || set.CreatedBy != "alice" || set.CreatedAt.IsZero() {
		t.Fatalf("SetPolicy = %+v, %v", set, err)
	}
	got, err := store.Policy(ctx, "d1")
	if err != nil || got.Version != 1 || got.Template != privacy.TemplateCOPPA ||
		got.Under13["roster_user.email"] != privacy.ActionDrop || got.CreatedBy != "alice" {
		t.Fatalf("Policy after set = %+v, %v", got, err)
	}

	if got.FreeTextAction() != privacy.ActionMask {
		t.Errorf("stored template's free text action = %q", got.FreeTextAction())
	}
	// A document stored before the free-text rule existed reads as masking.
	if _, err := pool.Exec(ctx, `INSERT INTO control.policies (tenant_id, version, template, document, created_by)
		VALUES ('d1', 2, 'custom', '{"template":"custom","fields":{},"unknown_age_as":"adult","identity":{"match_key":"none"}}', 'old')`); err != nil {
		t.Fatal(err)
	}
	if old, err := store.Policy(ctx, "d1"); err != nil || old.Version != 2 || old.FreeText != nil || old.FreeTextAction() != privacy.ActionMask {
		t.Fatalf("old policy = %+v, %v", old, err)
	}

	// Concurrent setters get distinct, consecutive versions.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { _, errs[i] = store.SetPolicy(ctx, "d1", coppa, "bob") })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if got, _ := store.Policy(ctx, "d1"); got.Version != 6 {
		t.Errorf("version after 4 more sets = %d, want 6", got.Version)
	}

	bad := coppa
	bad.Fields = map[string]string{"actor.sis_id": "shred"}
	if _, err := store.SetPolicy(ctx, "d1", bad, "eve"); !errors.Is(err, tenancy.ErrInvalidArgument) {
		t.Errorf("invalid policy stored: %v", err)
	}
	if _, err := store.SetPolicy(ctx, "nope", coppa, "eve"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("SetPolicy(unknown tenant) = %v", err)
	}
}
