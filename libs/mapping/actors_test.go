package mapping

import (
	"errors"
	"strings"
	"testing"
)

func TestActors(t *testing.T) {
	r, err := Parse([]byte("version: 1\nactors:\n  xapi: mbox_local\n  caliper: identifier:SisSourcedId\n"), Limits{})
	if err != nil || r.Actors() != (Actors{XAPI: "mbox_local", Caliper: "identifier:SisSourcedId"}) || len(r.Exports()) != 0 {
		t.Fatalf("actors without exports: %+v, %v", r, err)
	}
	rules, err := Parse([]byte(csvRules), Limits{})
	if err != nil || rules.Actors() != (Actors{}) {
		t.Fatalf("rules without actors: %+v, %v", rules.Actors(), err)
	}
	for _, tt := range []struct{ doc, want string }{
		{"version: 1\nactors:\n  xapi: email\n", `actors.xapi: "email" is not one of`},
		{"version: 1\nactors:\n  caliper: \"identifier:\"\n", `actors.caliper: "identifier:" is not one of`},
		{"version: 1\nactors:\n  caliper: name\n", `actors.caliper: "name" is not one of`},
		{"version: 1\nactors:\n  lti: x\n", "lti"},
		{"version: 1\n", "defines no export"},
	} {
		if _, err := Parse([]byte(tt.doc), Limits{}); !errors.Is(err, ErrInvalidRules) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.doc, err, tt.want)
		}
	}
}
