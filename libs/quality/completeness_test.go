package quality

import (
	"testing"
	"time"
)

func TestLastClosedDay(t *testing.T) {
	dec := func(d, h, m int) time.Time { return time.Date(2026, 12, d, h, m, 0, 0, time.UTC) }
	for _, tc := range []struct {
		now    time.Time
		settle time.Duration
		want   time.Time
	}{
		{dec(3, 0, 30), time.Hour, dec(1, 0, 0)}, // Dec 2 ended 30 minutes ago
		{dec(3, 1, 0), time.Hour, dec(2, 0, 0)},
		{dec(3, 23, 59), time.Hour, dec(2, 0, 0)},
		{dec(3, 0, 0), 0, dec(2, 0, 0)},
	} {
		if got := LastClosedDay(tc.now, tc.settle); !got.Equal(tc.want) {
			t.Errorf("LastClosedDay(%v, %v) = %v, want %v", tc.now, tc.settle, got, tc.want)
		}
	}
}

func TestCompareDays(t *testing.T) {
	d := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	days := []time.Time{d, d.AddDate(0, 0, 1), d.AddDate(0, 0, 2), d.AddDate(0, 0, 3), d.AddDate(0, 0, 4)}
	ch := map[time.Time]int64{days[0]: 1000, days[1]: 1000, days[2]: 100, days[4]: 5}
	pg := map[time.Time]int64{days[0]: 995, days[1]: 994, days[2]: 100, days[3]: 0}
	got := CompareDays(days, ch, pg)
	for i, want := range []bool{false, true, false, false, true} { // 0.5% is within; 0.6% is not; nothing stored of 5
		if got[i].Finding != want {
			t.Errorf("day %d: %+v, want finding %v", i, got[i], want)
		}
	}
	rep := &Report{Completeness: got}
	if f := rep.Findings(VolumeConfig{}); len(f) != 2 || f[0].Subject != "2026-12-02" || f[0].Message != "attendance student-days on 2026-12-02: 1000 in clickhouse, 994 stored by the sink (0.60% apart)" {
		t.Errorf("findings %+v", f)
	}
}
