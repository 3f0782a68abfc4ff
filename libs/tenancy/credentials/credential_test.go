package credentials

import (
	"errors"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/tenancy"
)

func TestParseCredential(t *testing.T) {
	id, secret := strings.Repeat("a", idLen), strings.Repeat("7", secretLen)
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
		{"outside alphabet", "eak_" + id + "_" + strings.Repeat("1", secretLen), false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseCredential(keyPrefix, tt.key)
			if ok != tt.ok {
				t.Fatalf("parseCredential ok = %v, want %v", ok, tt.ok)
			}
			if ok && (got.id != id || got.secret != secret) {
				t.Errorf("parseCredential = %q, %q", got.id, got.secret)
			}
		})
	}
}

func TestRandomTextUsesWholeAlphabet(t *testing.T) {
	seen := map[rune]bool{}
	for range 50 {
		s, err := randomText(secretLen)
		if err != nil {
			t.Fatal(err)
		}
		if len(s) != secretLen || !inAlphabet(s) {
			t.Fatalf("randomText = %q", s)
		}
		for _, r := range s {
			seen[r] = true
		}
	}
	if len(seen) != len(alphabet) {
		t.Errorf("2600 random characters used %d of %d symbols", len(seen), len(alphabet))
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
	if _, err := normalizeVerbs(nil); !errors.Is(err, tenancy.ErrInvalidArgument) {
		t.Errorf("no verbs: error = %v", err)
	}
}
