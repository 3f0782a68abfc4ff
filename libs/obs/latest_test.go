package obs_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"testing"

	"github.com/edtech-analytics/platform/libs/obs"
)

func TestLatestKeepsTheLastReportOfAFailingDistrict(t *testing.T) {
	districts := []string{"d1", "d2"}
	reports := map[string]int{"d1": 1, "d2": 2}
	fail := map[string]bool{}
	l := obs.NewLatest("test report", func(context.Context) ([]string, error) { return districts, nil },
		func(_ context.Context, id string) (int, error) {
			if fail[id] {
				return 0, errors.New("down")
			}
			return reports[id], nil
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	seen := func() map[string]int {
		out := map[string]int{}
		l.Each(func(id string, r int) { out[id] = r })
		return out
	}
	if err := l.Collect(t.Context()); err != nil || !maps.Equal(seen(), map[string]int{"d1": 1, "d2": 2}) {
		t.Fatalf("first collect: %v %v", seen(), err)
	}
	reports["d1"], reports["d2"], fail["d2"] = 10, 20, true
	if err := l.Collect(t.Context()); err != nil || !maps.Equal(seen(), map[string]int{"d1": 10, "d2": 2}) {
		t.Fatalf("with d2 failing: %v %v", seen(), err)
	}
	districts = []string{"d1", "d3"}
	fail["d3"] = true // never computed: nothing to keep
	if err := l.Collect(t.Context()); err != nil || !maps.Equal(seen(), map[string]int{"d1": 10}) {
		t.Fatalf("d2 gone, d3 failing: %v %v", seen(), err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := l.Run(ctx, 1); err != nil {
		t.Fatalf("Run after its context is done: %v", err)
	}
}
