// Package privacy holds districts' privacy policies: what the enricher keeps of each field of a record, by
// the age of the student it is about, whether consent is needed, and how students are identified across
// SIS ids. Policies are versioned per district in control.policies; the templates (FERPA, COPPA, DPDP)
// are the starting points.
package privacy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Policy is a district's privacy policy: what the enricher keeps of each field, by the age of the
// student a record is about, and how students are identified. Versions are numbered per district from 1;
// a district that never set one runs the FERPA template as version 0. Every enriched record carries the
// version it was produced under.
type Policy struct {
	TenantID string `json:"tenant_id"`
	Version  int    `json:"version"`
	Template string `json:"template"` // ferpa, coppa, dpdp, or custom for a hand-written policy
	// Fields maps a field path (see Fields) to an action for records of every student; fields not
	// named are kept.
	Fields map[string]string `json:"fields"`
	// Under18 overrides Fields for students under 18; Under13 then overrides both for students under 13.
	Under18 map[string]string `json:"under_18,omitempty"`
	Under13 map[string]string `json:"under_13,omitempty"`
	// UnknownAgeAs is the age class assumed for a student without a birth date: adult, under_18 or
	// under_13. Records of non-students (teachers, staff) are always treated as adults'.
	UnknownAgeAs string   `json:"unknown_age_as"`
	Consent      *Consent `json:"consent,omitempty"`
	Identity     Identity `json:"identity"`
	// FreeText is what the enricher does with personal data it finds in free-text fields (see
	// FreeTextFields); nil, as in policies stored before the rule existed, means the default, mask.
	FreeText *FreeText `json:"free_text,omitempty"`

	CreatedAt time.Time `json:"created_at,omitzero"`
	CreatedBy string    `json:"created_by,omitempty"`
}

// Consent requires recorded consent before behavioural events of young students are kept (DPDP). The
// SIS records consent on the student's roster.user record, in the metadata entry MetadataKey; the values
// granted, true and yes (any case) mean given, anything else or no entry means not given. Events of the
// listed types for a student younger than Under without consent are not kept.
type Consent struct {
	Under       int      `json:"under"`
	EventTypes  []string `json:"event_types"`
	MetadataKey string   `json:"metadata_key"`
}

// FreeText is the rule for personal data found where none is expected: SSN-like numbers, email addresses
// and phone numbers (libs/pii) in the free-text fields a record keeps after the field actions.
type FreeText struct {
	// Action is flag (keep the text, count it), mask (replace each match by its kind in brackets, e.g.
	// "[phone]", and count it), drop (remove the field, count it) or reject (the record goes to the DLQ,
	// policy_violation naming the field and the kind).
	Action string `json:"action"`
}

// FreeTextActions lists the actions of a FreeText rule.
func FreeTextActions() []string { return []string{ActionFlag, ActionMask, ActionDrop, ActionReject} }

// FreeTextAction is the action of the policy's free-text rule: mask when it has none.
func (p *Policy) FreeTextAction() string {
	if p.FreeText == nil || p.FreeText.Action == "" {
		return ActionMask
	}
	return p.FreeText.Action
}

// FreeTextFields lists the free-text fields scanned for personal data: every field of kind text, and the
// free text of records about a student that a policy cannot name (a result's text score, a line item's
// description, which teachers write and which may name a student). Titles of classes, courses, line
// items and sessions, class locations and org names are not scanned: they describe no person; nor are
// metadata maps (kind value), whose entries are the SIS's own codes. The values of a custom event's
// properties and of a generic event's extensions are scanned although their kind is value (a policy
// drops or masks them as a whole): a product writes them, and may put anything there (ADR 0018).
func FreeTextFields() []string {
	var out []string
	for _, f := range Fields() {
		if f.Kind == KindText {
			out = append(out, f.Path)
		}
	}
	return append(out, "roster_result.text_score", "roster_line_item.description", "custom.properties", "generic.extensions")
}

// Identity says how the enricher recognises a student across SIS ids.
type Identity struct {
	// MatchKey names the roster.user field that identifies a student across SIS vendors:
	// user_master_identifier (OneRoster userMasterIdentifier, the default), identifier, user_id:<type> (the
	// userIds entry of that type, e.g. user_id:state_id), metadata:<key>, or none.
	MatchKey string `json:"match_key"`
	// Namespaces maps a source (integration) to the source whose SIS ids its events carry, e.g.
	// {"canvas": "powerschool"} when the LMS is rostered from the SIS. Unlisted sources are their own.
	Namespaces map[string]string `json:"namespaces,omitempty"`
}

// Field actions.
const (
	ActionKeep         = "keep"
	ActionDrop         = "drop"
	ActionMask         = "mask"
	ActionPseudonymise = "pseudonymise" // keyed HMAC with the district's secret
	ActionReject       = "reject"       // a record carrying the field goes to the DLQ (policy_violation)
	ActionFlag         = "flag"         // free text only (FreeText): kept as it is, the finding counted
)

// Templates.
const (
	TemplateFERPA  = "ferpa"
	TemplateCOPPA  = "coppa"
	TemplateDPDP   = "dpdp"
	TemplateCustom = "custom"
)

// Age classes.
const (
	AgeAdult   = "adult"
	AgeUnder18 = "under_18"
	AgeUnder13 = "under_13"
)

// Match keys (see Identity.MatchKey); user_id: and metadata: take a suffix.
const (
	MatchUserMasterIdentifier = "user_master_identifier"
	MatchIdentifier           = "identifier"
	MatchUserIDPrefix         = "user_id:"
	MatchMetadataPrefix       = "metadata:"
	MatchNone                 = "none"
)

// Field kinds: what mask and pseudonymise mean for a field.
const (
	KindID    = "id"    // identifier: mask keeps the first character; pseudonymise is allowed
	KindText  = "text"  // free text: like id
	KindEmail = "email" // mask keeps the first character and the domain
	KindPhone = "phone" // mask keeps the last two digits
	KindDate  = "date"  // mask keeps the year (January 1st)
	KindValue = "value" // flags, lists, maps, codes: mask drops; pseudonymise is not allowed
)

// Field is one field a policy can act on.
type Field struct {
	Path string `json:"path"`
	Kind string `json:"kind"`
}

// Fields lists every field a policy can name, as "<payload or envelope part>.<field>".
func Fields() []Field {
	return []Field{
		{"actor.sis_id", KindID}, {"school_id", KindID}, {"class_id", KindID}, {"session_id", KindID},
		{"derived.age_band", KindValue}, {"derived.grade_level", KindValue}, {"derived.academic_session_id", KindID},
		{"attendance.reason", KindText}, {"session.device", KindText}, {"session.app", KindText},
		{"roster_user.sourced_id", KindID}, {"roster_user.username", KindID}, {"roster_user.user_ids", KindValue},
		{"roster_user.given_name", KindText}, {"roster_user.family_name", KindText},
		{"roster_user.middle_name", KindText}, {"roster_user.preferred_first_name", KindText},
		{"roster_user.preferred_last_name", KindText}, {"roster_user.pronouns", KindText},
		{"roster_user.identifier", KindID}, {"roster_user.user_master_identifier", KindID},
		{"roster_user.email", KindEmail}, {"roster_user.sms", KindPhone}, {"roster_user.phone", KindPhone},
		{"roster_user.birth_date", KindDate}, {"roster_user.agent_sourced_ids", KindValue},
		{"roster_user.metadata", KindValue},
		{"roster_demographics.sourced_id", KindID}, {"roster_demographics.birth_date", KindDate},
		{"roster_demographics.sex", KindValue}, {"roster_demographics.race", KindValue},
		{"roster_demographics.country_of_birth_code", KindValue},
		{"roster_demographics.state_of_birth_abbreviation", KindValue},
		{"roster_demographics.city_of_birth", KindText},
		{"roster_demographics.public_school_residence_status", KindValue},
		{"roster_demographics.metadata", KindValue},
		{"roster_enrollment.user_sourced_id", KindID},
		{"roster_result.student_sourced_id", KindID}, {"roster_result.comment", KindText},
		{"custom.properties", KindValue},
		{"generic.object_id", KindID}, {"generic.extensions", KindValue},
	}
}

// ConsentEventTypes are the event types a consent rule may name: the learning events.
func ConsentEventTypes() []string {
	return []string{"attendance", "assessment_result", "assignment_submission", "session", "content_view", "custom", "generic"}
}

// DefaultConsentKey is the roster.user metadata entry the DPDP template reads consent from.
const DefaultConsentKey = "edtech.consent"

// ferpaFields: the district's own records keep what its school officials need; phone numbers are masked
// and place of birth is not kept.
func ferpaFields() map[string]string {
	return map[string]string{
		"roster_user.sms": ActionMask, "roster_user.phone": ActionMask,
		"roster_demographics.city_of_birth": ActionDrop, "roster_demographics.state_of_birth_abbreviation": ActionDrop,
	}
}

// childFields: a child's records carry no direct identifiers (ids are pseudonymised so records still
// join within the district), no contact details, names reduced to initials, the birth year only, no
// demographics, free text or device identifiers.
func childFields() map[string]string {
	return map[string]string{
		"actor.sis_id": ActionPseudonymise, "attendance.reason": ActionDrop, "session.device": ActionDrop,
		"roster_user.sourced_id": ActionPseudonymise, "roster_user.username": ActionDrop, "roster_user.user_ids": ActionDrop,
		"roster_user.given_name": ActionMask, "roster_user.family_name": ActionMask, "roster_user.middle_name": ActionDrop,
		"roster_user.preferred_first_name": ActionMask, "roster_user.preferred_last_name": ActionMask,
		"roster_user.pronouns": ActionDrop, "roster_user.identifier": ActionPseudonymise,
		"roster_user.user_master_identifier": ActionPseudonymise, "roster_user.email": ActionDrop,
		"roster_user.sms": ActionDrop, "roster_user.phone": ActionDrop, "roster_user.birth_date": ActionMask,
		"roster_user.agent_sourced_ids": ActionDrop, "roster_user.metadata": ActionDrop,
		"roster_demographics.sourced_id": ActionPseudonymise, "roster_demographics.birth_date": ActionMask,
		"roster_demographics.sex": ActionDrop, "roster_demographics.race": ActionDrop,
		"roster_demographics.country_of_birth_code": ActionDrop, "roster_demographics.state_of_birth_abbreviation": ActionDrop,
		"roster_demographics.city_of_birth": ActionDrop, "roster_demographics.public_school_residence_status": ActionDrop,
		"roster_demographics.metadata":      ActionDrop,
		"roster_enrollment.user_sourced_id": ActionPseudonymise,
		"roster_result.student_sourced_id":  ActionPseudonymise, "roster_result.comment": ActionDrop,
	}
}

// Templates lists the template names Template knows.
func Templates() []string { return []string{TemplateFERPA, TemplateCOPPA, TemplateDPDP} }

// Template returns a template's policy (not yet bound to a tenant or version):
//   - ferpa (the default): the district's own records are kept for its school officials; phone numbers
//     masked, place of birth dropped; no age rules.
//   - coppa: ferpa, and for students under 13 (or of unknown age) the child rules: identifiers
//     pseudonymised, contact details and demographics dropped, names masked, birth year only.
//   - dpdp: ferpa, the child rules for students under 18 (or of unknown age), and behavioural events
//     (session, content_view) of those students are kept only with consent recorded in the roster.
//
// Every template masks personal data found in free text (FreeText).
func Template(name string) (Policy, error) {
	p := Policy{Template: name, Fields: ferpaFields(), UnknownAgeAs: AgeAdult,
		Identity: Identity{MatchKey: MatchUserMasterIdentifier}, FreeText: &FreeText{Action: ActionMask}}
	switch name {
	case TemplateFERPA:
	case TemplateCOPPA:
		p.Under13, p.UnknownAgeAs = childFields(), AgeUnder13
	case TemplateDPDP:
		p.Under18, p.UnknownAgeAs = childFields(), AgeUnder18
		p.Consent = &Consent{Under: 18, EventTypes: []string{"session", "content_view"}, MetadataKey: DefaultConsentKey}
	default:
		return Policy{}, fmt.Errorf("%w: unknown policy template %q (known: %s)", tenancy.ErrInvalidArgument, name,
			strings.Join(Templates(), ", "))
	}
	return p, nil
}

// Validate checks every field path, action, age class, consent rule and match key.
func (p *Policy) Validate() error {
	var errs []error
	if !slices.Contains(append(Templates(), TemplateCustom), p.Template) {
		errs = append(errs, fmt.Errorf("template: %q is not one of ferpa, coppa, dpdp, custom", p.Template))
	}
	kinds := map[string]string{}
	for _, f := range Fields() {
		kinds[f.Path] = f.Kind
	}
	for _, set := range []struct {
		name  string
		rules map[string]string
	}{{"fields", p.Fields}, {"under_18", p.Under18}, {"under_13", p.Under13}} {
		for _, path := range slices.Sorted(maps.Keys(set.rules)) {
			action := set.rules[path]
			kind, ok := kinds[path]
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("%s: unknown field %q", set.name, path))
			case !slices.Contains([]string{ActionKeep, ActionDrop, ActionMask, ActionPseudonymise, ActionReject}, action):
				errs = append(errs, fmt.Errorf("%s.%s: unknown action %q (keep, drop, mask, pseudonymise, reject)", set.name, path, action))
			case action == ActionPseudonymise && kind == KindValue:
				errs = append(errs, fmt.Errorf("%s.%s: cannot be pseudonymised (not a string)", set.name, path))
			}
		}
	}
	if !slices.Contains([]string{AgeAdult, AgeUnder18, AgeUnder13}, p.UnknownAgeAs) {
		errs = append(errs, fmt.Errorf("unknown_age_as: %q is not adult, under_18 or under_13", p.UnknownAgeAs))
	}
	if c := p.Consent; c != nil {
		if c.Under < 1 || c.Under > 25 {
			errs = append(errs, fmt.Errorf("consent.under: %d is not between 1 and 25", c.Under))
		}
		if len(c.EventTypes) == 0 {
			errs = append(errs, errors.New("consent.event_types: at least one event type is required"))
		}
		for _, t := range c.EventTypes {
			if !slices.Contains(ConsentEventTypes(), t) {
				errs = append(errs, fmt.Errorf("consent.event_types: %q is not one of %s", t, strings.Join(ConsentEventTypes(), ", ")))
			}
		}
		if strings.TrimSpace(c.MetadataKey) == "" {
			errs = append(errs, errors.New("consent.metadata_key: required"))
		}
	}
	if ft := p.FreeText; ft != nil && !slices.Contains(FreeTextActions(), ft.Action) {
		errs = append(errs, fmt.Errorf("free_text.action: %q is not one of %s", ft.Action, strings.Join(FreeTextActions(), ", ")))
	}
	switch mk := p.Identity.MatchKey; {
	case mk == MatchUserMasterIdentifier || mk == MatchIdentifier || mk == MatchNone:
	case strings.HasPrefix(mk, MatchUserIDPrefix) && len(mk) > len(MatchUserIDPrefix):
	case strings.HasPrefix(mk, MatchMetadataPrefix) && len(mk) > len(MatchMetadataPrefix):
	default:
		errs = append(errs, fmt.Errorf("identity.match_key: %q is not user_master_identifier, identifier, user_id:<type>, metadata:<key> or none", mk))
	}
	for from, to := range p.Identity.Namespaces {
		if tenancy.ValidSourceID(from) != nil || tenancy.ValidSourceID(to) != nil {
			errs = append(errs, fmt.Errorf("identity.namespaces: %q -> %q: both must be source ids", from, to))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: policy: %w", tenancy.ErrInvalidArgument, err)
	}
	return nil
}

// Parse decodes a policy document strictly (unknown keys are errors) and validates it. Fields the
// store assigns (tenant, version, creation) are ignored.
func Parse(data []byte) (Policy, error) {
	var p Policy
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Policy{}, fmt.Errorf("%w: policy document: %w", tenancy.ErrInvalidArgument, err)
	}
	p.TenantID, p.Version, p.CreatedAt, p.CreatedBy = "", 0, time.Time{}, ""
	if p.Identity.MatchKey == "" {
		p.Identity.MatchKey = MatchUserMasterIdentifier
	}
	if p.UnknownAgeAs == "" {
		p.UnknownAgeAs = AgeAdult
	}
	return p, p.Validate()
}

// Store reads and writes the districts' policies (control.policies). Run tenancy.Migrate first.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a Store over the control database pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Policy returns the tenant's current policy: its newest version, or the FERPA template as version 0
// when none was ever set. An unknown tenant is tenancy.ErrNotFound.
func (s *Store) Policy(ctx context.Context, tenantID string) (Policy, error) {
	var (
		exists    bool
		version   *int
		doc       []byte
		createdAt *time.Time
		createdBy *string
	)
	err := s.pool.QueryRow(ctx, `SELECT true, p.version, p.document, p.created_at, p.created_by
		FROM control.tenants t LEFT JOIN LATERAL (
			SELECT version, document, created_at, created_by FROM control.policies
			WHERE tenant_id = t.id ORDER BY version DESC LIMIT 1) p ON true
		WHERE t.id = $1`, tenantID).Scan(&exists, &version, &doc, &createdAt, &createdBy)
	if errors.Is(err, pgx.ErrNoRows) {
		return Policy{}, fmt.Errorf("tenant %s: %w", tenantID, tenancy.ErrNotFound)
	}
	if err != nil {
		return Policy{}, fmt.Errorf("reading policy of tenant %s: %w", tenantID, err)
	}
	if version == nil {
		p, err := Template(TemplateFERPA)
		p.TenantID = tenantID
		return p, err
	}
	var p Policy
	if err := json.Unmarshal(doc, &p); err != nil {
		return Policy{}, fmt.Errorf("decoding policy %d of tenant %s: %w", *version, tenantID, err)
	}
	p.TenantID, p.Version, p.CreatedAt, p.CreatedBy = tenantID, *version, *createdAt, *createdBy
	return p, nil
}

// SetPolicy validates p and stores it as the tenant's next version; it returns the stored policy.
// Unknown tenant: tenancy.ErrNotFound; invalid policy: tenancy.ErrInvalidArgument naming the fields.
func (s *Store) SetPolicy(ctx context.Context, tenantID string, p Policy, by string) (Policy, error) {
	if err := tenancy.ValidTenantID(tenantID); err != nil {
		return Policy{}, err
	}
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	p.TenantID, p.CreatedBy = tenantID, by
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Lock the tenant row so concurrent setters number their versions one after the other.
		var locked string
		err := tx.QueryRow(ctx, "SELECT id FROM control.tenants WHERE id = $1 FOR UPDATE", tenantID).Scan(&locked)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("tenant %s: %w", tenantID, tenancy.ErrNotFound)
		}
		if err != nil {
			return err
		}
		doc := p
		doc.Version, doc.CreatedAt = 0, time.Time{}
		b, err := json.Marshal(doc)
		if err != nil {
			return fmt.Errorf("encoding policy: %w", err)
		}
		return tx.QueryRow(ctx, `INSERT INTO control.policies (tenant_id, version, template, document, created_by)
			SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4 FROM control.policies WHERE tenant_id = $1
			RETURNING version, created_at`, tenantID, p.Template, b, by).Scan(&p.Version, &p.CreatedAt)
	})
	if err != nil {
		return Policy{}, fmt.Errorf("storing policy of tenant %s: %w", tenantID, err)
	}
	return p, nil
}
