package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edtech-analytics/platform/libs/testenv/loadgen"
	"github.com/edtech-analytics/platform/libs/testenv/sampledata"
)

// template is one request body of sample events whose event ids are rewritten before every send, so each
// event the load sends is new to the platform.
type template struct {
	district int
	body     []byte
	idAt     []int // offsets of the 36-character event ids in body
}

// district is one of the load's districts.
type district struct {
	id, key string
	student sampledata.Student // the markers' actor
}

func sampleSpec(id string, seed int) sampledata.Spec {
	return sampledata.Spec{TenantID: id, Schools: 2, ClassesPerSchool: 5, StudentsPerClass: 25, Days: 4, EventsPerStudent: 6,
		Start: time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -5), Seed: uint64(seed + 1)}
}

// templates prepares every district's sample events (every type, each student of the district, four past
// school days) as request bodies of batch events, districts interleaved.
func templates(ds []district, batch int) ([]template, error) {
	perDistrict := make([][]template, len(ds))
	for i, d := range ds {
		bodies, err := sampledata.Batches(sampleSpec(d.id, i).Events(), batch)
		if err != nil {
			return nil, err
		}
		for _, b := range bodies {
			t := template{district: i, body: b}
			marker := []byte(`"event_id":"`)
			for at := 0; ; {
				k := bytes.Index(b[at:], marker)
				if k < 0 {
					break
				}
				at += k + len(marker)
				if at+36 > len(b) || b[at+36] != '"' {
					return nil, fmt.Errorf("sample event id at byte %d is not a UUID", at)
				}
				t.idAt = append(t.idAt, at)
			}
			perDistrict[i] = append(perDistrict[i], t)
		}
	}
	var out []template
	for k := 0; ; k++ {
		n := len(out)
		for i := range perDistrict {
			if k < len(perDistrict[i]) {
				out = append(out, perDistrict[i][k])
			}
		}
		if len(out) == n {
			return out, nil
		}
	}
}

// ids hands out event ids unique to this run, in the layout of a version 4 UUID and random-looking in both
// halves, as real event ids are: the low 62 bits are a counter times an odd constant (a bijection modulo
// 2^62, so ids never repeat within 2^62), the high 60 bits a hash of the counter and the run's random
// prefix. (Ids sharing a half hash badly: ClickHouse 18.16's uniqExact of such UUIDs takes seconds.)
type ids struct {
	prefix uint64
	next   atomic.Uint64
}

const hexDigits = "0123456789abcdef"

func putHex(dst []byte, v uint64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = hexDigits[v&0xf]
		v >>= 4
	}
}

// splitmix64's finalizer: a good 64-bit mix.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// put writes a new id into dst[:36].
func (g *ids) put(dst []byte) {
	n := g.next.Add(1)
	hi, lo := splitmix64(g.prefix^n), (n*0xd1b54a32d192ed03)&(1<<62-1)
	putHex(dst[0:8], hi>>32)
	dst[8] = '-'
	putHex(dst[9:13], hi>>16)
	dst[13], dst[14] = '-', '4'
	putHex(dst[15:18], hi>>4)
	dst[18] = '-'
	dst[19] = hexDigits[0x8|(lo>>60)]
	putHex(dst[20:23], lo>>48)
	dst[23] = '-'
	putHex(dst[24:36], lo)
}

func (g *ids) uuid() string {
	var b [36]byte
	g.put(b[:])
	return string(b[:])
}

// sender posts events to the gateway and retries what it did not acknowledge, with the same event ids,
// as a client must: the count of acknowledged events is then exactly what the stores must hold.
type sender struct {
	client *http.Client
	url    string
	ds     []district
	marker district // receives the markers only
	tpls   []template
	ids    *ids
	next   atomic.Uint64

	mu        sync.Mutex
	latencies []time.Duration
	retries   map[string]int64
}

// errRefused is a request the gateway refused for good (not a 429/5xx): the load is broken.
type errRefused struct {
	status int
	body   string
}

func (e errRefused) Error() string { return fmt.Sprintf("gateway answered %d: %s", e.status, e.body) }

// post sends body until the gateway acknowledges it, and returns how many events it accepted and when the
// acknowledgement arrived. A 429, a 5xx or a connection error is retried (after a pause that grows) for at
// most a minute; the request's events are then lost to the count, which the run reports as an error.
func (s *sender) post(ctx context.Context, key string, body []byte, events int) (accepted int, at time.Time, err error) {
	pause := 10 * time.Millisecond
	deadline := time.Now().Add(time.Minute)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
		if err != nil {
			return 0, time.Time{}, err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.client.Do(req)
		why := ""
		if err == nil {
			data, rerr := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			at = time.Now()
			switch {
			case rerr != nil:
				why = "reading answer: " + rerr.Error()
			case resp.StatusCode == http.StatusAccepted:
				var ans struct {
					Accepted int               `json:"accepted"`
					Rejected []json.RawMessage `json:"rejected"`
				}
				if err := json.Unmarshal(data, &ans); err != nil {
					return 0, at, fmt.Errorf("unreadable 202: %w", err)
				}
				if ans.Accepted != events || len(ans.Rejected) > 0 {
					return ans.Accepted, at, errRefused{resp.StatusCode, fmt.Sprintf("%d of %d events accepted: %s", ans.Accepted, events, data)}
				}
				return ans.Accepted, at, nil
			case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
				why = fmt.Sprintf("HTTP %d", resp.StatusCode)
			default:
				return 0, at, errRefused{resp.StatusCode, string(data)}
			}
		} else {
			why = err.Error()
		}
		s.mu.Lock()
		s.retries[why]++
		s.mu.Unlock()
		if time.Now().After(deadline) {
			return 0, time.Time{}, fmt.Errorf("not acknowledged after retrying for a minute: %s", why)
		}
		time.Sleep(pause)
		pause = min(2*pause, time.Second)
	}
}

// sendNext sends the next template with new ids; since is when the request was due (rate mode) or sent.
func (s *sender) sendNext(ctx context.Context, buf []byte, since time.Time) ([]byte, int, error) {
	t := &s.tpls[int(s.next.Add(1)-1)%len(s.tpls)]
	buf = append(buf[:0], t.body...)
	for _, at := range t.idAt {
		s.ids.put(buf[at : at+36])
	}
	n, _, err := s.post(ctx, s.ds[t.district].key, buf, len(t.idAt))
	s.mu.Lock()
	s.latencies = append(s.latencies, time.Since(since))
	s.mu.Unlock()
	return buf, n, err
}

// warm sends every template once (each student of each district is then known to the platform).
func (s *sender) warm(ctx context.Context, workers int) (int64, error) {
	var accepted atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	var next atomic.Int64
	for range workers {
		wg.Go(func() {
			var buf []byte
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(s.tpls) {
					return
				}
				t := &s.tpls[i]
				buf = append(buf[:0], t.body...)
				for _, at := range t.idAt {
					s.ids.put(buf[at : at+36])
				}
				n, _, err := s.post(ctx, s.ds[t.district].key, buf, len(t.idAt))
				accepted.Add(int64(n))
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return accepted.Load(), firstErr
}

// load sends for d, closed loop or on the rate's schedule, and returns the events accepted. Requests in
// flight when d ends are finished (and retried) before it returns: an event either is counted here or was
// never acknowledged.
func (s *sender) load(ctx context.Context, cfg config, d time.Duration) (int64, time.Duration, int64, error) {
	stop := time.Now().Add(d)
	var accepted, late atomic.Int64
	var firstErr error
	var once sync.Once
	fail := func(err error) { once.Do(func() { firstErr = err }) }
	var wg sync.WaitGroup
	start := time.Now()
	if cfg.mode == "saturate" {
		for range cfg.workers {
			wg.Go(func() {
				var buf []byte
				for ctx.Err() == nil && time.Now().Before(stop) {
					var n int
					var err error
					buf, n, err = s.sendNext(ctx, buf, time.Now())
					accepted.Add(int64(n))
					if err != nil {
						fail(err)
						return
					}
				}
			})
		}
	} else {
		// Open loop: latency counts from when each request was due (loadgen.Schedule).
		interval := time.Duration(float64(time.Second) * float64(cfg.batch) / float64(cfg.rate))
		due := loadgen.Schedule(ctx, start, stop, interval, cfg.workers)
		for range cfg.workers {
			wg.Go(func() {
				var buf []byte
				for at := range due {
					if loadgen.Late(at, interval) {
						late.Add(1)
					}
					var n int
					var err error
					buf, n, err = s.sendNext(ctx, buf, at)
					accepted.Add(int64(n))
					if err != nil {
						fail(err)
					}
				}
			})
		}
	}
	wg.Wait()
	return accepted.Load(), time.Since(start), late.Load(), firstErr
}

// marker is a sampled event whose arrival in each store is timed.
type marker struct {
	acked  time.Time
	ch, pg time.Time // when a poll first saw it
}

// markerBody is one marker event: an assessment result of the marker district's student with an assessment
// id of its own, occurring now.
func (s *sender) markerBody(assessment string) []byte {
	body, _ := json.Marshal(map[string]any{"events": []sampledata.Event{{ // a map of strings and numbers always encodes
		EventID: s.ids.uuid(), Type: "assessment_result", OccurredAt: time.Now().UTC().Format(time.RFC3339Nano),
		Actor:    sampledata.Actor{SISID: s.marker.student.SISID, Role: "student"},
		SchoolID: s.marker.student.SchoolID, ClassID: s.marker.student.ClassID,
		Payload: map[string]any{"assessment_id": assessment, "score": 1.0, "max_score": 100.0},
	}}})
	return body
}

// markers sends rate marker events a second to the marker district until ctx is done, one at a time: each
// is sent once the previous is acknowledged, so they reach the district's partition, and the stores, in
// the order they were sent, and the n-th marker is in a store once the store counts n of them.
func (s *sender) markers(ctx context.Context, rate int, prefix string, found chan<- *marker) (int64, error) {
	defer close(found)
	if rate <= 0 {
		return 0, nil
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	var accepted int64
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return accepted, nil
		case <-tick.C:
		}
		// A marker in flight when sending stops is finished: it counts in the stores either way.
		k, at, err := s.post(context.WithoutCancel(ctx), s.marker.key, s.markerBody(fmt.Sprintf("%s-%d", prefix, n)), 1)
		accepted += int64(k)
		if err != nil {
			return accepted, err
		}
		found <- &marker{acked: at}
	}
}

// percentiles of ds (sorted in place): p50, p90, p99, max.
func percentiles(ds []time.Duration) [4]time.Duration {
	if len(ds) == 0 {
		return [4]time.Duration{}
	}
	slices.Sort(ds)
	p := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	return [4]time.Duration{p(0.5), p(0.9), p(0.99), ds[len(ds)-1]}
}
