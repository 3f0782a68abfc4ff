package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/pprof/profile"

	"github.com/edtech-analytics/platform/services/devstack/internal/stack"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times (100 on every Linux architecture Go
// supports here).
const clockTicks = 100

// serverCPU sums the CPU time (user + system) of the processes whose command name starts with prefix:
// "postgres" (every backend of the local servers) or "clickhouse".
func serverCPU(prefix string) time.Duration {
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	var ticks uint64
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // the process ended
		}
		open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
		if open < 0 || end < open || !strings.HasPrefix(string(data[open+1:end]), prefix) {
			continue
		}
		fields := strings.Fields(string(data[end+1:]))
		if len(fields) < 13 { // state is field 3 of the file, utime 14 and stime 15
			continue
		}
		u, _ := strconv.ParseUint(fields[11], 10, 64)
		s, _ := strconv.ParseUint(fields[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// selfCPU is the CPU time (user + system) of this process.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// memStatus reads a field of /proc/self/status in bytes: VmRSS (resident now) or VmHWM (peak resident).
func memStatus(field string) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpuShare is one component's CPU time in the measured phase.
type cpuShare struct {
	name string
	cpu  time.Duration
}

// byService splits the process's CPU profile by the stack's service label; samples without one are the Go
// runtime's own work (garbage collection, the scheduler) and goroutines started outside any service.
func byService(data []byte) ([]cpuShare, error) {
	p, err := profile.ParseData(data)
	if err != nil {
		return nil, fmt.Errorf("reading the cpu profile: %w", err)
	}
	idx := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			idx = i
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("the profile has no cpu samples")
	}
	sums := map[string]time.Duration{}
	for _, s := range p.Sample {
		name := "runtime, unlabelled"
		if v := s.Label[stack.ProfileLabel]; len(v) > 0 {
			name = v[0]
		}
		sums[name] += time.Duration(s.Value[idx])
	}
	var out []cpuShare
	for name, d := range sums {
		out = append(out, cpuShare{name, d})
	}
	slices.SortFunc(out, func(a, b cpuShare) int { return int(b.cpu - a.cpu) })
	return out, nil
}
