package tenancy

import (
	"errors"
	"strings"
	"testing"
)

func TestValidTenantID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"springfield", true},
		{"d42", true},
		{"0", true},
		{"north_valley_usd", true},
		{strings.Repeat("a", 48), true},
		{strings.Repeat("a", 49), false},
		{"", false},
		{"../x", false},
		{"A", false},
		{"a;drop", false},
		{"a b", false},
		{"_a", false},
		{"a-b", false},
		{`a"b`, false},
		{"é", false},
		{"a\n", false},
	}
	for _, tt := range tests {
		err := ValidTenantID(tt.id)
		if (err == nil) != tt.ok {
			t.Errorf("ValidTenantID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
		if err != nil && (!errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "tenant id")) {
			t.Errorf("ValidTenantID(%q) error %q should wrap ErrInvalidArgument and name the tenant id", tt.id, err)
		}
		schema, serr := SchemaName(tt.id)
		if (serr == nil) != tt.ok {
			t.Errorf("SchemaName(%q) = %v, want ok=%v", tt.id, serr, tt.ok)
		}
		if tt.ok && (schema != "district_"+tt.id || len(schema) > 63) {
			t.Errorf("SchemaName(%q) = %q", tt.id, schema)
		}
	}
}

func TestParseKey(t *testing.T) {
	id, secret := strings.Repeat("a", keyIDLen), strings.Repeat("7", keySecretLen)
	tests := []struct {
		name string
		key  string
		ok   bool
	}{
		{"well formed", "eak_" + id + "_" + secret, true},
		{"no prefix", id + "_" + secret, false},
		{"other prefix", "xak_" + id + "_" + secret, false},
		{"short secret", "eak_" + id + "_" + secret[1:], false},
		{"long secret", "eak_" + id + "_" + secret + "a", false},
		{"upper case", "eak_" + strings.ToUpper(id) + "_" + secret, false},
		{"bad separator", "eak_" + id + "-" + secret, false},
		{"outside alphabet", "eak_" + id + "_" + strings.Repeat("1", keySecretLen), false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotID, gotSecret, ok := parseKey(tt.key)
			if ok != tt.ok {
				t.Fatalf("parseKey ok = %v, want %v", ok, tt.ok)
			}
			if ok && (gotID != id || gotSecret != secret) {
				t.Errorf("parseKey = %q, %q", gotID, gotSecret)
			}
		})
	}
}

func TestRandomTextUsesWholeAlphabet(t *testing.T) {
	seen := map[rune]bool{}
	for range 50 {
		s, err := randomText(keySecretLen)
		if err != nil {
			t.Fatal(err)
		}
		if len(s) != keySecretLen || !inAlphabet(s) {
			t.Fatalf("randomText = %q", s)
		}
		for _, r := range s {
			seen[r] = true
		}
	}
	if len(seen) != len(keyAlphabet) {
		t.Errorf("2600 random characters used %d of %d symbols", len(seen), len(keyAlphabet))
	}
}

func TestNormalizeVerbs(t *testing.T) {
	got, err := normalizeVerbs([]string{VerbRosterWrite, VerbEventsWrite, VerbRosterWrite})
	if err != nil || strings.Join(got, ",") != "roster:write,events:write" {
		t.Errorf("normalizeVerbs = %v, %v", got, err)
	}
	if _, err := normalizeVerbs([]string{VerbEventsWrite, "events:delete"}); err == nil ||
		!strings.Contains(err.Error(), `"events:delete"`) {
		t.Errorf("unknown verb error = %v, want it to name the verb", err)
	}
	if _, err := normalizeVerbs(nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("no verbs: error = %v", err)
	}
}
