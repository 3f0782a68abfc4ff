package deploycheck

import (
	"slices"
	"strings"
	"testing"
)

// requireProblem fails the test unless one of the problems contains want.
func requireProblem(t *testing.T, problems []string, want string) {
	t.Helper()
	if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, want) }) {
		t.Errorf("problems %q, want one containing %q", problems, want)
	}
}

// checkIndex finds checks by name for the broken-file cases and records which ones they used.
type checkIndex[C any] struct {
	checks  map[string]C
	covered map[string]bool
}

func newCheckIndex[C any](all []C, name func(C) string) *checkIndex[C] {
	x := &checkIndex[C]{checks: map[string]C{}, covered: map[string]bool{}}
	for _, c := range all {
		x.checks[name(c)] = c
	}
	return x
}

// get returns the named check, failing the test when there is none.
func (x *checkIndex[C]) get(t *testing.T, name string) C {
	t.Helper()
	c, ok := x.checks[name]
	if !ok {
		t.Fatalf("no check %q", name)
	}
	x.covered[name] = true
	return c
}

// requireCovered fails the test for every check without a broken-file case.
func (x *checkIndex[C]) requireCovered(t *testing.T) {
	t.Helper()
	for name := range x.checks {
		if !x.covered[name] {
			t.Errorf("check %q has no broken-file case", name)
		}
	}
}
