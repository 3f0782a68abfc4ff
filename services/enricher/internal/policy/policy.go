// Package policy applies a district's privacy policy (privacy.Policy) to enriched records: per field
// keep, drop, mask, pseudonymise (keyed HMAC with the district's secret) or reject, chosen by the age
// class of the student the record is about, plus the consent rule for behavioural events of minors and
// the identity settings (matching key, source namespaces). After the field actions, the free-text fields a
// record keeps are scanned for personal data (libs/pii) and the district's free-text rule applies.
package policy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/pii"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy/privacy"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
)

// Age is the age class a record is judged by.
type Age int

// Age classes, from least to most protected.
const (
	Adult Age = iota
	Under18
	Under13
)

// Years is the age in whole years at the time at of someone born on birth.
func Years(birth, at time.Time) int {
	years := at.Year() - birth.Year()
	if at.Month() < birth.Month() || at.Month() == birth.Month() && at.Day() < birth.Day() {
		years--
	}
	return years
}

// AgeOf returns the age class and band of someone born on birth, at the time at.
func AgeOf(birth, at time.Time) (Age, string) {
	switch years := Years(birth, at); {
	case years < 13:
		return Under13, "under_13"
	case years < 18:
		return Under18, "13_17"
	}
	return Adult, "18_plus"
}

// Store reads districts' current policies (privacy.Store).
type Store interface {
	Policy(ctx context.Context, tenantID string) (privacy.Policy, error)
}

// Source compiles each district's current policy from the store, uncached.
type Source struct {
	Store Store
}

// Policy returns the district's current policy compiled with its pseudonym key.
func (s Source) Policy(ctx context.Context, t tenants.Tenant) (*Compiled, error) {
	p, err := s.Store.Policy(ctx, t.ID)
	if err != nil {
		return nil, fmt.Errorf("loading policy of tenant %s: %w", t.ID, err)
	}
	return Compile(p, t.PseudonymKey), nil
}

// Compiled is a policy ready to apply to one district's records. It is immutable and safe to share.
type Compiled struct {
	Version    int
	unknownAge Age
	rules      [3]map[string][]rule // by age class, then event type
	consent    *privacy.Consent
	pseudonyms *keyring.Pseudonymizer
	matchKey   string
	namespaces map[string]string
	freeText   string                   // the free-text rule's action
	texts      [3]map[string][]textRule // by age class, then event type: the free-text fields kept as they are
}

// textRule is a free-text field scanned for personal data.
type textRule struct {
	path  string
	field fieldFn
}

type rule struct {
	path   string
	field  fieldFn
	action string
	kind   string
}

// Compile prepares p for the district whose pseudonym key is key. p must be valid (privacy.Store validates
// policies when they are stored); unknown paths are ignored.
func Compile(p privacy.Policy, key []byte) *Compiled {
	c := &Compiled{Version: p.Version, consent: p.Consent, pseudonyms: keyring.NewPseudonymizer(key), matchKey: p.Identity.MatchKey,
		namespaces: p.Identity.Namespaces, freeText: p.FreeTextAction()}
	switch p.UnknownAgeAs {
	case privacy.AgeUnder18:
		c.unknownAge = Under18
	case privacy.AgeUnder13:
		c.unknownAge = Under13
	}
	kinds := map[string]string{}
	for _, f := range privacy.Fields() {
		kinds[f.Path] = f.Kind
	}
	fields := fieldTable()
	texts := textOnlyFields()
	maps.Copy(texts, fields)
	merged := maps.Clone(p.Fields)
	for age, overlay := range []map[string]string{nil, p.Under18, p.Under13} {
		if merged == nil {
			merged = map[string]string{}
		}
		maps.Copy(merged, overlay)
		byType := map[string][]rule{}
		for _, path := range slices.Sorted(maps.Keys(merged)) {
			action, f := merged[path], fields[path]
			if action == privacy.ActionKeep || f.fn == nil {
				continue
			}
			r := rule{path: path, field: f.fn, action: action, kind: kinds[path]}
			for _, typ := range records.EventTypes() {
				if f.typ == "" || f.typ == typ {
					byType[typ] = append(byType[typ], r)
				}
			}
		}
		for typ, rs := range byType { // rejections are checked before anything is changed
			slices.SortStableFunc(rs, func(a, b rule) int {
				return boolInt(b.action == privacy.ActionReject) - boolInt(a.action == privacy.ActionReject)
			})
			byType[typ] = rs
		}
		c.rules[age] = byType
		// Free text is scanned where it is kept as it is: a dropped, masked or pseudonymised field holds
		// nothing to find any more, and a rejected one never passes.
		scanned := map[string][]textRule{}
		for _, path := range privacy.FreeTextFields() {
			f := texts[path]
			if action := merged[path]; f.fn == nil || action != "" && action != privacy.ActionKeep {
				continue
			}
			for _, typ := range records.EventTypes() {
				if f.typ == "" || f.typ == typ {
					scanned[typ] = append(scanned[typ], textRule{path: path, field: f.fn})
				}
			}
		}
		c.texts[age] = scanned
	}
	return c
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// UnknownAge is the age class of a student without a birth date.
func (c *Compiled) UnknownAge() Age { return c.unknownAge }

// NeedsConsent reports whether a record of eventType about a student of the given age (nil: unknown)
// is kept only with recorded consent.
func (c *Compiled) NeedsConsent(eventType string, age *int) bool {
	if c.consent == nil || !slices.Contains(c.consent.EventTypes, eventType) {
		return false
	}
	if age == nil {
		return c.unknownAge != Adult
	}
	return *age < c.consent.Under
}

// ConsentKey is the roster.user metadata entry holding consent ("" when the policy has no consent rule).
func (c *Compiled) ConsentKey() string {
	if c.consent == nil {
		return ""
	}
	return c.consent.MetadataKey
}

// ConsentGiven reports whether a recorded consent value means given.
func ConsentGiven(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "granted", "true", "yes":
		return true
	}
	return false
}

// MatchKey returns the value of the district's matching key in a roster.user record ("" if absent).
func (c *Compiled) MatchKey(u *records.RosterUser) string {
	switch mk := c.matchKey; {
	case mk == privacy.MatchUserMasterIdentifier && u.UserMasterIdentifier != nil:
		return *u.UserMasterIdentifier
	case mk == privacy.MatchIdentifier && u.Identifier != nil:
		return *u.Identifier
	case strings.HasPrefix(mk, privacy.MatchUserIDPrefix):
		for _, id := range u.UserIds {
			if strings.EqualFold(id.Type, mk[len(privacy.MatchUserIDPrefix):]) {
				return id.Identifier
			}
		}
	case strings.HasPrefix(mk, privacy.MatchMetadataPrefix):
		return u.Metadata[mk[len(privacy.MatchMetadataPrefix):]]
	}
	return ""
}

// Namespace is the source whose SIS ids records of source carry.
func (c *Compiled) Namespace(source string) string {
	if ns, ok := c.namespaces[source]; ok {
		return ns
	}
	return source
}

// Apply applies the rules of age class age to ev in place. If a field the policy rejects is present, it
// returns that field's path and leaves ev unchanged.
func (c *Compiled) Apply(ev *records.EnrichedEvent, age Age) (rejected string) {
	rs := c.rules[age][ev.Type]
	for _, r := range rs {
		if r.action != privacy.ActionReject {
			break
		}
		if r.field(ev, op{action: privacy.ActionKeep}) {
			return r.path
		}
	}
	for _, r := range rs {
		if r.action != privacy.ActionReject {
			r.field(ev, op{action: r.action, kind: r.kind, pseudonyms: c.pseudonyms})
		}
	}
	return ""
}

// Detection is personal data of one kind found in one free-text field of a record, and the action the
// district's free-text rule took: flag, mask, drop or reject.
type Detection struct {
	Field  string
	Kind   pii.Kind
	Action string
}

// FreeText scans the free-text fields of ev that the rules of age class age keep as they are (call it
// after Apply) for SSN-like numbers, email addresses and phone numbers, and applies the district's
// free-text rule: flag leaves the text, mask replaces each match by its kind in brackets ("[phone]"), drop
// removes the field, reject makes rejected true (the record must go to the DLQ). found has one Detection
// per field and kind, in field order; nil when ev holds none.
func (c *Compiled) FreeText(ev *records.EnrichedEvent, age Age) (found []Detection, rejected bool) {
	rs := c.texts[age][ev.Type]
	if len(rs) == 0 {
		return nil, false
	}
	sc := &scan{mask: c.freeText == privacy.ActionMask}
	for _, r := range rs {
		sc.found = nil
		r.field(ev, op{action: actionScan, scan: sc})
		if len(sc.found) == 0 {
			continue
		}
		var kinds [3]pii.Kind
		n := 0
		for _, m := range sc.found {
			if !slices.Contains(kinds[:n], m.Kind) && n < len(kinds) {
				kinds[n] = m.Kind
				n++
				found = append(found, Detection{Field: r.path, Kind: m.Kind, Action: c.freeText})
			}
		}
		switch c.freeText {
		case privacy.ActionDrop:
			r.field(ev, op{action: privacy.ActionDrop})
		case privacy.ActionReject:
			rejected = true
		}
	}
	return found, rejected
}

// actionScan is the op of FreeText: find personal data in the field's value, and mask it if asked.
const actionScan = "scan"

// scan is what an actionScan op found.
type scan struct {
	mask  bool
	found []pii.Match
}

// op is one action on one field; its methods apply it to a field of a given Go type and report whether
// the field was present (set and not empty).
type op struct {
	action, kind string
	pseudonyms   *keyring.Pseudonymizer
	scan         *scan // actionScan
}

func (o op) str(s *string) bool {
	if *s == "" {
		return false
	}
	switch o.action {
	case privacy.ActionDrop:
		*s = ""
	case privacy.ActionMask:
		*s = mask(*s, o.kind)
	case privacy.ActionPseudonymise:
		*s = o.pseudonyms.Pseudonym(*s)
	case actionScan:
		o.scan.found = pii.Find(*s)
		if o.scan.mask && len(o.scan.found) > 0 {
			*s = pii.Mask(*s, o.scan.found)
		}
	}
	return true
}

func (o op) opt(s **string) bool {
	if *s == nil {
		return false
	}
	if o.action == privacy.ActionDrop || o.action == privacy.ActionMask && o.kind == privacy.KindValue {
		*s = nil
		return true
	}
	v := **s
	present := o.str(&v)
	if o.action != privacy.ActionKeep && (o.action != actionScan || v != **s) {
		*s = &v
	}
	return present
}

func (o op) date(d **time.Time) bool {
	if *d == nil {
		return false
	}
	switch o.action {
	case privacy.ActionDrop:
		*d = nil
	case privacy.ActionMask:
		y := time.Date((*d).Year(), time.January, 1, 0, 0, 0, 0, time.UTC)
		*d = &y
	}
	return true
}

// value handles fields a policy can only keep or remove (mask removes them too).
// pairs applies o to the key/value pairs of a custom event's properties or a generic event's
// extensions (kind value): drop and mask remove every pair; a free-text scan looks at each value and
// masks what it finds there, the keys being the product's own names.
func (o op) pairs(keys, values *[]string) bool {
	present := len(*keys) > 0
	if !present {
		return false
	}
	if o.action != actionScan {
		if o.action != privacy.ActionKeep {
			*keys, *values = []string{}, []string{}
		}
		return true
	}
	var found []pii.Match
	for i := range *values {
		o.str(&(*values)[i])
		found = append(found, o.scan.found...)
		o.scan.found = nil
	}
	o.scan.found = found
	return true
}

func value[T any](o op, v *T, present bool) bool {
	if present && o.action != privacy.ActionKeep {
		var zero T
		*v = zero
	}
	return present
}

// mask keeps a hint of a value: an identifier's or name's first character, an email's first character
// and domain, a phone number's last two digits.
func mask(s, kind string) string {
	switch kind {
	case privacy.KindEmail:
		if at := strings.LastIndexByte(s, '@'); at > 0 {
			r, _ := utf8.DecodeRuneInString(s)
			return string(r) + "***" + s[at:]
		}
	case privacy.KindPhone:
		var digits []byte
		for i := range len(s) {
			if s[i] >= '0' && s[i] <= '9' {
				digits = append(digits, s[i])
			}
		}
		if len(digits) > 2 {
			return "***" + string(digits[len(digits)-2:])
		}
		return "***"
	}
	if utf8.RuneCountInString(s) <= 1 {
		return "***"
	}
	r, _ := utf8.DecodeRuneInString(s)
	return string(r) + "***"
}
