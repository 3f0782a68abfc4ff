package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edtech-analytics/platform/libs/testenv/loadgen"
	"github.com/edtech-analytics/platform/libs/testenv/sampledata"
)

// maxDuration bounds a run, whatever the flags say.
const maxDuration = 10 * time.Minute

type config struct {
	mode       string // saturate or rate
	rate       int    // events per second, in rate mode
	duration   time.Duration
	warmup     time.Duration
	workers    int
	batch      int
	tenants    int
	target     string // base URL of a running gateway; empty: start one in this process
	key        string // API key for -target
	cpuProfile string
	kafkaDir   string // kfake data dir of the in-process gateway; empty: a temporary one
}

func (c *config) register(fs *flag.FlagSet) {
	fs.StringVar(&c.mode, "mode", "saturate", "saturate: closed loop, report accepted events/s; rate: fixed rate (-rate), report latency")
	fs.IntVar(&c.rate, "rate", 0, "events per second to send in rate mode (sent as batches of -batch)")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "how long to measure (at most 10m)")
	fs.DurationVar(&c.warmup, "warmup", 3*time.Second, "load sent before measuring")
	fs.IntVar(&c.workers, "workers", 0, "concurrent connections (default: 2 x CPUs in saturate mode, 16 in rate mode)")
	fs.IntVar(&c.batch, "batch", 100, "events per request")
	fs.IntVar(&c.tenants, "tenants", 8, "districts the load is spread over")
	fs.StringVar(&c.target, "target", "", "base URL of a running gateway on a loopback address (default: start one in this process)")
	fs.StringVar(&c.key, "key", "", "API key for -target (tenant from the key; -tenants ignored)")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the measured phase to this file")
	fs.StringVar(&c.kafkaDir, "kafka-dir", "", "kfake data dir for the in-process gateway (default: a temporary dir)")
}

func (c *config) validate() error {
	var errs []error
	if err := loadgen.CheckMode(c.mode, c.rate); err != nil {
		errs = append(errs, err)
	}
	if c.duration <= 0 || c.duration > maxDuration || c.warmup < 0 || c.warmup > time.Minute {
		errs = append(errs, fmt.Errorf("-duration must be in (0, %s] and -warmup in [0, 1m]", maxDuration))
	}
	if c.batch < 1 || c.batch > 1000 || c.tenants < 1 {
		errs = append(errs, errors.New("-batch must be 1-1000 and -tenants at least 1"))
	}
	if c.target != "" {
		if c.key == "" {
			errs = append(errs, errors.New("-key is required with -target"))
		}
		if err := loopbackOnly(c.target); err != nil {
			errs = append(errs, err)
		}
	}
	if c.workers == 0 {
		c.workers = 2 * runtime.NumCPU()
		if c.mode == "rate" {
			c.workers = 16
		}
	}
	return errors.Join(errs...)
}

// loopbackOnly refuses any target that is not plain HTTP to an address on this machine's loopback.
func loopbackOnly(target string) error {
	if u, err := url.Parse(target); err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("-target %q: want http://127.0.0.1:PORT", target)
	}
	return loadgen.LoopbackURL("-target", target)
}

// request is one prepared batch: its body and the key that sends it.
type request struct {
	key    string
	body   []byte
	events int
}

// report is the outcome of the measured phase.
type report struct {
	mode                string
	target              string
	workers, batch      int
	duration            time.Duration
	targetRate          int
	requests, accepted  int64
	failed              map[string]int64 // by status or error
	late                int64            // rate mode: requests that started more than one interval late
	p50, p90, p99, pmax time.Duration
	cpu                 time.Duration // CPU time this process used while measuring (user + system)
	inProcess           bool
}

func (r report) String() string {
	var b strings.Builder
	secs := r.duration.Seconds()
	fmt.Fprintf(&b, "mode: %s   target: %s   workers: %d   batch: %d events   measured: %s\n",
		r.mode, r.target, r.workers, r.batch, r.duration.Round(time.Millisecond))
	if r.mode == "rate" {
		fmt.Fprintf(&b, "offered:  %d events/s (%.0f requests/s)\n", r.targetRate, float64(r.targetRate)/float64(r.batch))
	}
	fmt.Fprintf(&b, "accepted: %.0f events/s (%.0f requests/s, %d events)\n", float64(r.accepted)/secs, float64(r.requests)/secs, r.accepted)
	fmt.Fprintf(&b, "latency:  p50 %s   p90 %s   p99 %s   max %s\n", ms(r.p50), ms(r.p90), ms(r.p99), ms(r.pmax))
	if r.accepted > 0 && r.cpu > 0 {
		who := "load generator"
		if r.inProcess {
			who = "load generator + gateway + kfake"
		}
		fmt.Fprintf(&b, "cpu:      %.2f cores busy (%s), %.1f us per accepted event, %.0f events per CPU-second\n",
			r.cpu.Seconds()/secs, who, float64(r.cpu.Microseconds())/float64(r.accepted), float64(r.accepted)/r.cpu.Seconds())
	}
	if r.late > 0 {
		fmt.Fprintf(&b, "late:     %d requests started more than one interval behind schedule (latency counts from the schedule)\n", r.late)
	}
	keys := make([]string, 0, len(r.failed))
	for k := range r.failed {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "failed:   %d x %s\n", r.failed[k], k)
	}
	return b.String()
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

func run(ctx context.Context, cfg config, progress io.Writer) (_ report, err error) {
	target, reqs := cfg.target, []request(nil)
	if target == "" {
		gw, err := startGateway(ctx, cfg)
		if err != nil {
			return report{}, err
		}
		defer gw.close()
		target = gw.url
		if _, err := fmt.Fprintf(progress, "started an in-process gateway at %s (kfake, in-memory keys)\n", target); err != nil {
			return report{}, err
		}
		if reqs, err = gw.requests(cfg); err != nil {
			return report{}, err
		}
	} else {
		var err error
		if reqs, err = prepare([]string{"load"}, []string{cfg.key}, cfg.batch); err != nil {
			return report{}, err
		}
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: cfg.workers, MaxIdleConnsPerHost: cfg.workers, MaxConnsPerHost: cfg.workers,
		IdleConnTimeout: time.Minute, DisableCompression: true,
	}}
	defer client.CloseIdleConnections()
	l := &loader{client: client, url: target + "/v1/events", reqs: reqs}

	if cfg.warmup > 0 {
		if _, err := fmt.Fprintf(progress, "warming up for %s\n", cfg.warmup); err != nil {
			return report{}, err
		}
		l.phase(ctx, cfg, cfg.warmup)
	}
	if cfg.cpuProfile != "" {
		f, ferr := os.Create(cfg.cpuProfile)
		if ferr != nil {
			return report{}, fmt.Errorf("creating cpu profile: %w", ferr)
		}
		defer func() { // after StopCPUProfile wrote the profile
			if cerr := f.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("writing cpu profile: %w", cerr))
			}
		}()
		if err := pprof.StartCPUProfile(f); err != nil {
			return report{}, fmt.Errorf("starting cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if _, err := fmt.Fprintf(progress, "measuring for %s\n", cfg.duration); err != nil {
		return report{}, err
	}
	cpu0 := cpuTime()
	rep := l.phase(ctx, cfg, cfg.duration)
	rep.cpu = cpuTime() - cpu0
	rep.target, rep.inProcess = target, cfg.target == ""
	return rep, ctx.Err()
}

// prepare builds the request bodies: each tenant's sample events in batches of size, sent with its key.
func prepare(tenantIDs, keys []string, size int) ([]request, error) {
	var out []request
	for i, id := range tenantIDs {
		spec := sampledata.Spec{TenantID: id, Schools: 2, ClassesPerSchool: 5, StudentsPerClass: 25, Days: 4, EventsPerStudent: 6,
			Start: time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -5), Seed: uint64(i + 1)}
		bodies, err := sampledata.Batches(spec.Events(), size)
		if err != nil {
			return nil, fmt.Errorf("building batches: %w", err)
		}
		for _, b := range bodies {
			var n struct {
				Events []json.RawMessage `json:"events"`
			}
			if err := json.Unmarshal(b, &n); err != nil {
				return nil, err
			}
			out = append(out, request{key: keys[i], body: b, events: len(n.Events)})
		}
	}
	// Interleave tenants so concurrent requests come from different districts.
	return interleave(out), nil
}

// interleave reorders per-tenant runs round robin.
func interleave(reqs []request) []request {
	byKey := map[string][]request{}
	var order []string
	for _, r := range reqs {
		if _, ok := byKey[r.key]; !ok {
			order = append(order, r.key)
		}
		byKey[r.key] = append(byKey[r.key], r)
	}
	out := make([]request, 0, len(reqs))
	for i := 0; len(out) < len(reqs); i++ {
		for _, k := range order {
			if i < len(byKey[k]) {
				out = append(out, byKey[k][i])
			}
		}
	}
	return out
}

// loader sends prepared requests.
type loader struct {
	client *http.Client
	url    string
	reqs   []request
	next   atomic.Uint64
}

// result is what one worker saw.
type result struct {
	latencies []time.Duration
	requests  int64
	accepted  int64
	late      int64
	failed    map[string]int64
}

// phase runs the configured load for d and reports what was measured.
func (l *loader) phase(ctx context.Context, cfg config, d time.Duration) report {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	results := make([]result, cfg.workers)
	var wg sync.WaitGroup
	start := time.Now()
	if cfg.mode == "saturate" {
		for w := range cfg.workers {
			wg.Go(func() {
				res := &results[w]
				for ctx.Err() == nil {
					l.send(ctx, time.Now(), res)
				}
			})
		}
	} else {
		// Open loop: latency counts from when each request was due (loadgen.Schedule).
		interval := time.Duration(float64(time.Second) * float64(cfg.batch) / float64(cfg.rate))
		due := loadgen.Schedule(ctx, start, time.Time{}, interval, cfg.workers)
		for w := range cfg.workers {
			wg.Go(func() {
				res := &results[w]
				for at := range due {
					if loadgen.Late(at, interval) {
						res.late++
					}
					l.send(ctx, at, res)
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)

	rep := report{mode: cfg.mode, workers: cfg.workers, batch: cfg.batch, duration: elapsed, targetRate: cfg.rate, failed: map[string]int64{}}
	var lat []time.Duration
	for _, r := range results {
		rep.requests += r.requests
		rep.accepted += r.accepted
		rep.late += r.late
		lat = append(lat, r.latencies...)
		for k, v := range r.failed {
			rep.failed[k] += v
		}
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		rep.p50, rep.p90, rep.p99, rep.pmax = pct(0.50), pct(0.90), pct(0.99), lat[len(lat)-1]
	}
	return rep
}

// send posts the next prepared batch and records the outcome; since is when the request was due.
func (l *loader) send(ctx context.Context, since time.Time, res *result) {
	r := l.reqs[int(l.next.Add(1)-1)%len(l.reqs)]
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url, bytes.NewReader(r.body))
	if err != nil {
		res.fail("building request: " + err.Error())
		return
	}
	req.Header.Set("Authorization", "Bearer "+r.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			res.fail(err.Error())
		}
		return
	}
	var ans struct {
		Accepted int `json:"accepted"`
	}
	derr := json.NewDecoder(resp.Body).Decode(&ans)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close() // read to the end above; closing lets the connection be reused
	if ctx.Err() != nil {
		return // cut off by the end of the phase: not counted
	}
	res.latencies = append(res.latencies, time.Since(since))
	res.requests++
	switch {
	case resp.StatusCode != http.StatusAccepted:
		res.fail(fmt.Sprintf("HTTP %d", resp.StatusCode))
	case derr != nil:
		res.fail("unreadable answer: " + derr.Error())
	default:
		res.accepted += int64(ans.Accepted)
		if ans.Accepted != r.events {
			res.fail("events rejected")
		}
	}
}

func (r *result) fail(why string) {
	if r.failed == nil {
		r.failed = map[string]int64{}
	}
	r.failed[why]++
}
