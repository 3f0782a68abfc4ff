package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// report is what a run measured.
type report struct {
	cfg       config
	inProcess bool
	districts int

	accepted int64         // events acknowledged in the measured phase, markers included
	want     uint64        // events the stores must hold: warm-up, load and markers
	sendTime time.Duration // how long the load was sent
	total    time.Duration // from the first request until both stores held every event
	requests int
	late     int64
	retries  map[string]int64
	gateway  [4]time.Duration // p50, p90, p99, max of the load's requests
	markers  int64
	freshCH  []time.Duration
	freshPG  []time.Duration
	counts   counts

	cpuProcess, cpuPG, cpuCH time.Duration
	shares                   []cpuShare
	peakRSS, hwmRSS          uint64
}

func (r *report) String() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	where := "a running platform at " + r.cfg.target
	if r.inProcess {
		where = "the whole platform in this process"
	}
	p("mode: %s   districts: %d   workers: %d   batch: %d   load: %s   platform: %s", r.cfg.mode, r.districts, r.cfg.workers, r.cfg.batch, r.cfg.duration, where)
	if r.cfg.mode == "rate" {
		p("offered:     %d events/s", r.cfg.rate)
	}
	if r.sendTime > 0 {
		p("gateway:     %d events accepted in %s: %.0f events/s; request latency p50 %s p90 %s p99 %s max %s (%d requests)",
			r.accepted, r.sendTime.Round(time.Millisecond), float64(r.accepted)/r.sendTime.Seconds(),
			ms(r.gateway[0]), ms(r.gateway[1]), ms(r.gateway[2]), ms(r.gateway[3]), r.requests)
	}
	if r.late > 0 {
		p("late:        %d requests started more than one interval behind schedule (their latency counts from the schedule)", r.late)
	}
	keys := make([]string, 0, len(r.retries))
	for k := range r.retries {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p("retried:     %d x %s", r.retries[k], k)
	}
	if r.total > 0 {
		p("end to end:  both stores held every accepted event %s after the first request: %.0f events/s (%s after the load ended)",
			r.total.Round(time.Millisecond), float64(r.accepted)/r.total.Seconds(), (r.total - r.sendTime).Round(time.Millisecond))
	}
	if r.counts != (counts{}) {
		p("exact:       %s; %d accepted (warm-up included)", r.counts, r.want)
	}
	if len(r.freshCH) > 0 {
		ch, pg := percentiles(r.freshCH), percentiles(r.freshPG)
		p("freshness:   %d markers, from the 202 to visible (polled every %s)", len(r.freshCH), r.cfg.poll)
		p("  ClickHouse p50 %s p90 %s p99 %s max %s", ms(ch[0]), ms(ch[1]), ms(ch[2]), ms(ch[3]))
		p("  PostgreSQL p50 %s p90 %s p99 %s max %s", ms(pg[0]), ms(pg[1]), ms(pg[2]), ms(pg[3]))
	}
	if r.cpuProcess > 0 && r.accepted > 0 && r.total > 0 {
		secs := r.total.Seconds()
		perEvent := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(r.accepted) }
		who := "load generator"
		if r.inProcess {
			who = "platform + load generator"
		}
		p("cpu:         over the %s until both stores were complete, per accepted event:", r.total.Round(time.Millisecond))
		p("  %-28s %8.1f us  %5.2f cores", "this process ("+who+")", perEvent(r.cpuProcess), r.cpuProcess.Seconds()/secs)
		var profiled time.Duration
		for _, s := range r.shares {
			profiled += s.cpu
		}
		for _, s := range r.shares {
			// The profile samples; its shares split the process's measured CPU time.
			d := time.Duration(float64(r.cpuProcess) * float64(s.cpu) / float64(max(profiled, 1)))
			p("    %-26s %8.1f us  %5.2f cores", s.name, perEvent(d), d.Seconds()/secs)
		}
		p("  %-28s %8.1f us  %5.2f cores", "PostgreSQL server", perEvent(r.cpuPG), r.cpuPG.Seconds()/secs)
		p("  %-28s %8.1f us  %5.2f cores", "ClickHouse server", perEvent(r.cpuCH), r.cpuCH.Seconds()/secs)
		all := r.cpuProcess + r.cpuPG + r.cpuCH
		p("  %-28s %8.1f us  %5.2f cores", "all", perEvent(all), all.Seconds()/secs)
	}
	if r.peakRSS > 0 {
		p("memory:      resident peak %.0f MiB sampled every 200ms (kernel high-water mark %.0f MiB)", float64(r.peakRSS)/(1<<20), float64(r.hwmRSS)/(1<<20))
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
