package main

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/edtech-analytics/platform/libs/testenv/loadgen"
)

// Bounds of a run, whatever the flags say.
const (
	maxDuration = 10 * time.Minute
	maxDrain    = 15 * time.Minute
)

type config struct {
	mode       string // saturate or rate
	rate       int    // events per second in rate mode
	duration   time.Duration
	drain      time.Duration // how long to wait for the stores after the load
	districts  int
	workers    int
	batch      int
	markers    int           // marker events per second
	poll       time.Duration // how often the stores are polled for markers
	warmup     bool
	partitions int
	archive    bool
	cpuProfile string
	keep       bool // keep the in-process run's databases

	target               string // a running gateway
	databaseURL          string // control database of the running platform
	clickhouseAddr, chDB string
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("pipelineload", flag.ContinueOnError)
	fs.StringVar(&c.mode, "mode", "saturate", "saturate: closed loop, as fast as the gateway accepts; rate: a fixed rate (-rate)")
	fs.IntVar(&c.rate, "rate", 0, "events per second in rate mode, sent as requests of -batch events on a fixed schedule")
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "how long the load is sent (at most 10m)")
	fs.DurationVar(&c.drain, "drain", 5*time.Minute, "how long to wait after the load for both stores to hold every accepted event (at most 15m)")
	fs.IntVar(&c.districts, "districts", 8, "districts the load is spread over, each with 250 students in 2 schools and 10 classes")
	fs.IntVar(&c.workers, "workers", 0, "concurrent connections (default: 4 in saturate mode, 16 in rate mode)")
	fs.IntVar(&c.batch, "batch", 100, "events per request")
	fs.IntVar(&c.markers, "markers", 20, "marker events per second, whose freshness in each store is measured (0: none)")
	fs.DurationVar(&c.poll, "poll", 50*time.Millisecond, "how often the stores are asked for pending markers (the freshness's resolution)")
	fs.BoolVar(&c.warmup, "warmup", true, "send every district's students once and wait for the stores before measuring (ids, keys and caches warm)")
	fs.IntVar(&c.partitions, "partitions", 4, "partitions of each topic of the in-process platform")
	fs.BoolVar(&c.archive, "archive", true, "run the archiver in the in-process platform, as the devstack does")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write the CPU profile of the measured phase to this file (in-process: labelled by service)")
	fs.BoolVar(&c.keep, "keep", false, "keep the in-process run's PostgreSQL and ClickHouse databases")
	fs.StringVar(&c.target, "target", "", "base URL of a running gateway on a loopback address (default: start the platform in this process)")
	fs.StringVar(&c.databaseURL, "database-url", "", "with -target: the platform's control database, where the load's districts are created")
	fs.StringVar(&c.clickhouseAddr, "clickhouse-addr", "", "with -target: the platform's ClickHouse (host:port, loopback)")
	fs.StringVar(&c.chDB, "clickhouse-database", "edtech", "with -target: the platform's ClickHouse database")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.workers == 0 {
		c.workers = 4
		if c.mode == "rate" {
			c.workers = 16
		}
	}
	return c, c.validate()
}

func (c config) validate() error {
	var errs []error
	if err := loadgen.CheckMode(c.mode, c.rate); err != nil {
		errs = append(errs, err)
	}
	if c.duration <= 0 || c.duration > maxDuration {
		errs = append(errs, fmt.Errorf("-duration must be in (0, %s]", maxDuration))
	}
	if c.drain <= 0 || c.drain > maxDrain {
		errs = append(errs, fmt.Errorf("-drain must be in (0, %s]", maxDrain))
	}
	if c.batch < 1 || c.batch > 1000 {
		errs = append(errs, errors.New("-batch must be 1-1000"))
	}
	if c.districts < 1 || c.districts > 1000 || c.workers < 1 || c.workers > 256 {
		errs = append(errs, errors.New("-districts must be 1-1000 and -workers 1-256"))
	}
	if c.markers < 0 || c.markers > 1000 || c.poll < 5*time.Millisecond {
		errs = append(errs, errors.New("-markers must be 0-1000 and -poll at least 5ms"))
	}
	if c.target != "" {
		if c.databaseURL == "" || c.clickhouseAddr == "" {
			errs = append(errs, errors.New("-target needs -database-url and -clickhouse-addr"))
		}
		errs = append(errs, loadgen.LoopbackURL("-target", c.target), loadgen.LoopbackURL("-database-url", c.databaseURL), loadgen.LoopbackHost("-clickhouse-addr", c.clickhouseAddr))
	}
	return errors.Join(errs...)
}
