package quality

import (
	"math"
	"testing"
	"time"
)

// checked is a Wednesday.
var checked = time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)

// weekly returns the counts of k on the checked day (today) and the same weekday of the weeks before
// (base[0] one week before), with noise on the other weekdays that the check must ignore.
func weekly(k Key, today int64, base ...int64) []DayCount {
	out := []DayCount{{Key: k, Day: checked.Add(13 * time.Hour), Count: today}} // any time of the day
	for w, n := range base {
		d := checked.AddDate(0, 0, -7*(w+1))
		out = append(out, DayCount{Key: k, Day: d, Count: n},
			DayCount{Key: k, Day: d.AddDate(0, 0, 1), Count: 100000}, DayCount{Key: k, Day: d.AddDate(0, 0, -1), Count: 1})
	}
	return out
}

func TestAnalyzeVolume(t *testing.T) {
	att := Key{Source: "sis", Type: "attendance"}
	for _, tc := range []struct {
		name     string
		counts   []DayCount
		cfg      VolumeConfig
		baseline int
		count    int64
		anomaly  bool
		zSign    int // the sign of z, 0: z is 0
		absent   bool
	}{
		{name: "steady", counts: weekly(att, 1010, 1000, 990, 1005, 1000, 1010, 995, 1000, 1000), baseline: 8, count: 1010, zSign: 1},
		{name: "attendance marks 40% down", counts: weekly(att, 600, 1000, 990, 1005, 1000, 1010, 995, 1000, 1000),
			baseline: 8, count: 600, anomaly: true, zSign: -1},
		{name: "spike", counts: weekly(att, 5000, 1000, 990, 1005, 1000, 1010, 995, 1000, 1000), baseline: 8, count: 5000, anomaly: true, zSign: 1},
		{name: "went to zero: no row on the day", counts: weekly(att, 0, 1000, 990, 1005, 1000)[1:],
			baseline: 4, count: 0, anomaly: true, zSign: -1},
		{name: "small district: a large z under the floor", counts: weekly(att, 2, 40, 41, 40, 39, 40), baseline: 5, count: 2, zSign: -1},
		{name: "small district with a lower floor", counts: weekly(att, 2, 40, 41, 40, 39, 40), cfg: VolumeConfig{Floor: 10},
			baseline: 5, count: 2, anomaly: true, zSign: -1},
		{name: "new source: no baseline", counts: weekly(att, 1000), baseline: 0, count: 1000},
		{name: "two weeks old: too short a baseline", counts: weekly(att, 5000, 1000, 1000), baseline: 2, count: 5000},
		{name: "weeks before the first day with events do not count", counts: weekly(att, 1000, 1000, 1000, 1000, 0, 0, 0, 0, 0),
			baseline: 3, count: 1000},
		{name: "a silent week after the first counts as 0", counts: weekly(att, 1000, 1000, 0, 1000, 1000), baseline: 4, count: 1000, zSign: 1},
		{name: "weeks beyond the configured ones are ignored", counts: weekly(att, 1000, 1000, 1000, 1000, 9000),
			cfg: VolumeConfig{Weeks: 3}, baseline: 3, count: 1000},
		{name: "nothing in the weeks", counts: weekly(att, 0, 0, 0, 0), absent: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := AnalyzeVolume(tc.counts, checked, tc.cfg)
			if tc.absent {
				if len(got) != 0 {
					t.Fatalf("got %+v, want nothing", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("got %+v, want one key", got)
			}
			v := got[0]
			if v.Key != att || !v.Day.Equal(checked) || v.Count != tc.count || v.Baseline != tc.baseline || v.Anomaly != tc.anomaly {
				t.Fatalf("got %+v, want count %d over %d baseline days, anomaly %v", v, tc.count, tc.baseline, tc.anomaly)
			}
			if sign := int(math.Copysign(1, v.Z)); v.Z == 0 && tc.zSign != 0 || v.Z != 0 && sign != tc.zSign {
				t.Fatalf("z = %v, want sign %d", v.Z, tc.zSign)
			}
		})
	}
}

// TestAnalyzeVolumeZ: the z-score's scale is the standard deviation, or a tenth of the mean when the
// baseline is steadier than that.
func TestAnalyzeVolumeZ(t *testing.T) {
	k := Key{Source: "lms", Type: "content_view"}
	v := AnalyzeVolume(weekly(k, 700, 1000, 1000, 1000), checked, VolumeConfig{})[0]
	if v.Mean != 1000 || v.SD != 0 || v.Z != -3 || !v.Anomaly {
		t.Fatalf("steady baseline: %+v, want z -3 (scale 100, a tenth of the mean)", v)
	}
	v = AnalyzeVolume(weekly(k, 1300, 800, 1000, 1200), checked, VolumeConfig{})[0]
	if v.Mean != 1000 || v.SD != 200 || v.Z != 1.5 || v.Anomaly {
		t.Fatalf("varying baseline: %+v, want z 1.5", v)
	}
}

// TestAnalyzeVolumeKeys: keys are checked apart and sorted, each against its own weekdays.
func TestAnalyzeVolumeKeys(t *testing.T) {
	a, b := Key{Source: "sis", Type: "attendance"}, Key{Source: "lms", Type: "attendance"}
	counts := append(weekly(a, 1000, 1000, 1000, 1000), weekly(b, 0, 500, 500, 500)[1:]...)
	got := AnalyzeVolume(counts, checked.Add(20*time.Hour), VolumeConfig{})
	if len(got) != 2 || got[0].Key != b || got[1].Key != a || !got[0].Anomaly || got[1].Anomaly {
		t.Fatalf("got %+v", got)
	}
}

func TestVolumeConfigValidate(t *testing.T) {
	if err := (VolumeConfig{}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []VolumeConfig{{Weeks: 2}, {MinBaseline: 1}, {Z: -1}, {Floor: -1}} {
		if c.Validate() == nil {
			t.Errorf("%+v passed", c)
		}
	}
}

// TestVolumeFindings: a drop is an error, a spike a warning; keys that are not anomalies are no finding.
func TestVolumeFindings(t *testing.T) {
	a, b, c := Key{Source: "sis", Type: "attendance"}, Key{Source: "lms", Type: "content_view"}, Key{Source: "lms", Type: "session"}
	counts := append(weekly(a, 600, 1000, 1000, 1000), weekly(b, 3000, 1000, 1000, 1000)...)
	counts = append(counts, weekly(c, 1000, 1000, 1000, 1000)...)
	rep := &Report{Day: checked, Volume: AnalyzeVolume(counts, checked, VolumeConfig{})}
	f := rep.Findings(VolumeConfig{})
	if rep.Anomalies() != 2 || len(f) != 2 {
		t.Fatalf("findings %+v", f)
	}
	if f[0].Entity != "content_view" || f[0].Severity != SeverityWarning || f[0].Value != 20 || f[0].Threshold != 3 ||
		f[0].Message != "content_view events from lms on 2026-12-02: 3000, 200% up on the mean 1000.0 of 3 previous Wednesdays (z 20.0)" {
		t.Errorf("spike %+v", f[0])
	}
	if f[1].Entity != "attendance" || f[1].Severity != SeverityError || f[1].Source != "sis" || f[1].Subject != "2026-12-02" || f[1].Value != -4 {
		t.Errorf("drop %+v", f[1])
	}
}
