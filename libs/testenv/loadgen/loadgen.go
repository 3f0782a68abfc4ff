// Package loadgen holds what the project's load and benchmark tools share: the rule that a load never
// leaves the machine, the open-loop schedule of a fixed-rate load, and the synthetic student ids that the
// ClickHouse benchmark data and the rosters written for it agree on.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"
)

// LoopbackHost refuses anything but a loopback address or localhost, as a host or host:port: a load
// never leaves the machine. The error names flagName.
func LoopbackHost(flagName, hostport string) error {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%s: %q is not a loopback address (127.0.0.0/8, ::1, localhost)", flagName, hostport)
}

// LoopbackURL is LoopbackHost for the host of a URL. A PostgreSQL URL that names a socket directory
// (postgres://...?host=/dir) is local too. The error names flagName.
func LoopbackURL(flagName, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", flagName, err)
	}
	if u.Host == "" && u.Query().Get("host") == "" {
		return fmt.Errorf("%s: %q names no host", flagName, raw)
	}
	if h := u.Query().Get("host"); h != "" && u.Hostname() == "" {
		return nil
	}
	return LoopbackHost(flagName, u.Host)
}

// Schedule is the open loop of a fixed-rate load: it sends start, start+interval, start+2·interval, ...
// on the returned channel, each when it is due, until the next would be at or after end (the zero time:
// no end) or ctx is done, and then closes the channel. A worker that takes a time sends its request
// then and counts the request's latency from that time, not from when it got to it, so a slow server
// cannot hide the queue in front of it (no coordinated omission). buffer is the channel's capacity:
// the number of workers, so a due time waits for a worker and not for the schedule.
func Schedule(ctx context.Context, start, end time.Time, interval time.Duration, buffer int) <-chan time.Time {
	due := make(chan time.Time, buffer)
	go func() {
		defer close(due)
		timer := time.NewTimer(0)
		defer timer.Stop()
		for i := 0; ; i++ {
			at := start.Add(time.Duration(i) * interval)
			if !end.IsZero() && !at.Before(end) {
				return
			}
			if wait := time.Until(at); wait > 0 {
				timer.Reset(wait)
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				}
			}
			select {
			case <-ctx.Done():
				return
			case due <- at:
			}
		}
	}()
	return due
}

// Late reports whether a request due at at started more than one interval behind its schedule.
func Late(at time.Time, interval time.Duration) bool { return time.Since(at) > interval }

// studentMul spreads the synthetic student number over the id's first 32 bits (Knuth's multiplicative
// hash, 2^32/φ). ClickHouse 18.16 hashes a UUID for uniqExact by its first half: ids alike in it, as
// 00000000-0000-4000-8000-<n> were, all fall in one bucket, and merging the active students of 100,000
// of them took 20 s instead of 30 ms. Real internal ids are random version 4 UUIDs.
const studentMul = 2654435761

// StudentID is the internal id of synthetic student n: a version 4 UUID whose first 32 bits are a hash
// of n and whose last 48 bits are n (n < 2^48).
func StudentID(n uint64) string {
	return fmt.Sprintf("%08X-0000-4000-8000-%012X", uint32(n*studentMul), n&(1<<48-1))
}

// StudentIDSQL is StudentID as a ClickHouse expression of the UInt64 expression n, for INSERT ... SELECT.
func StudentIDSQL(n string) string {
	pad := func(hexExpr string, width int) string {
		return fmt.Sprintf("substring(concat('%0*d', %s), length(%s) + 1, %d)", width, 0, hexExpr, hexExpr, width)
	}
	high := fmt.Sprintf("hex(toUInt32(bitAnd(toUInt64(%s) * %d, 4294967295)))", n, studentMul)
	low := fmt.Sprintf("hex(bitAnd(toUInt64(%s), 281474976710655))", n)
	return fmt.Sprintf("toUUID(concat(%s, '-0000-4000-8000-', %s))", pad(high, 8), pad(low, 12))
}

// CheckMode checks a load tool's -mode and -rate: saturate (closed loop), or rate with a positive
// events-per-second rate (open loop, Schedule).
func CheckMode(mode string, rate int) error {
	switch mode {
	case "saturate":
	case "rate":
		if rate < 1 {
			return errors.New("-rate: events per second are required in rate mode")
		}
	default:
		return fmt.Errorf("-mode: %q is not saturate or rate", mode)
	}
	return nil
}
