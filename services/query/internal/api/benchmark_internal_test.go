package api

import (
	"slices"
	"testing"
)

// TestBandsCannotTellDistrictsApart: two sets of district values that differ in two districts of one
// band, with the band's total kept, give the same bands, so no answer determines either district's
// value; every band stands on at least k districts.
func TestBandsCannotTellDistrictsApart(t *testing.T) {
	for _, tt := range []struct {
		a, b []float64
		k    int
	}{
		{[]float64{0.3, 0.4, 0.5, 0.6, 0.9}, []float64{0.3, 0.45, 0.45, 0.6, 0.9}, 3},
		{[]float64{0.1, 0.2, 0.3, 0.6, 0.7, 0.8}, []float64{0.1, 0.2, 0.3, 0.55, 0.75, 0.8}, 3},
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}, []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 11.5, 13.5}, 3},
	} {
		ba, _ := bands(tt.a, tt.k, -1)
		bb, _ := bands(tt.b, tt.k, -1)
		if !slices.Equal(ba, bb) {
			t.Errorf("bands of %v = %+v and of %v = %+v: the answer tells them apart", tt.a, ba, tt.b, bb)
		}
		total := 0
		for _, b := range ba {
			if b.Districts < tt.k {
				t.Errorf("a band of %d districts, under %d: %+v", b.Districts, tt.k, ba)
			}
			total += b.Districts
		}
		if total != len(tt.a) || ba[0].FromPct != 0 || ba[len(ba)-1].ToPct != 100 {
			t.Errorf("bands %+v do not cover the %d districts", ba, len(tt.a))
		}
	}
}
