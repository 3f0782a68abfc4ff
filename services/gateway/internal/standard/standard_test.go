package standard

import (
	"encoding/json"
	"maps"
	"testing"
)

func TestDurationSeconds(t *testing.T) {
	for in, want := range map[string]int64{"PT1H12M27S": 4347, "PT30M": 1800, "PT12.5S": 12, "": 0, "P1D": 0, "PTxS": 0, "PT-5S": 0, "PT5": 0} {
		if got := DurationSeconds(in); got != want {
			t.Errorf("DurationSeconds(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestStrings(t *testing.T) {
	got := map[string]string{}
	Strings(got, map[string]json.RawMessage{"a": json.RawMessage(`"x"`), "b": json.RawMessage(`3`), "c": json.RawMessage("{\n  \"k\": true\n}")})
	if want := map[string]string{"a": "x", "b": "3", "c": `{"k":true}`}; !maps.Equal(got, want) {
		t.Fatalf("Strings = %v", got)
	}
}
