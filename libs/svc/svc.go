// Package svc is the process skeleton every service's main uses: flags with env defaults, the JSON
// logger, telemetry, signal handling and an exit code. The service itself is a run function.
package svc

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/cenkalti/backoff/v5"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/obs"
)

// Runtime is what the process skeleton gives a service.
type Runtime struct {
	Log *slog.Logger
	Tel *obs.Telemetry
}

// Config is implemented by each service's configuration.
type Config interface {
	RegisterFlags(fs *flag.FlagSet)
	Validate() error
}

// Main parses flags into cfg, builds the runtime, runs run until SIGINT/SIGTERM and exits. It never
// returns. The effective config is logged (secrets are conf.Secret and print masked).
func Main(service string, cfg Config, run func(ctx context.Context, rt Runtime) error) {
	os.Exit(mainCode(service, cfg, os.Args[1:], run))
}

// FlagSet returns the flags a service parses: its config's and the log level. conf.Vars of it is the
// environment the service reads.
func FlagSet(service string, cfg Config, level *string) *flag.FlagSet {
	fs := flag.NewFlagSet(service, flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	conf.String(fs, level, "log-level", "LOG_LEVEL", "info", "log level: debug, info, warn, error")
	return fs
}

func mainCode(service string, cfg Config, args []string, run func(ctx context.Context, rt Runtime) error) int {
	var level string
	fs := FlagSet(service, cfg, &level)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log := obs.NewLogger(os.Stderr, level, service)
	if err := errors.Join(conf.Check(fs), cfg.Validate()); err != nil {
		log.Error("invalid configuration", "err", err)
		fmt.Fprintf(os.Stderr, "%s: invalid configuration:\n%v\n", service, err)
		return 2
	}
	log.Info("starting", "config", cfg)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	tel, err := obs.Init(ctx, service)
	if err != nil {
		log.Error("initialising telemetry", "err", err)
		return 1
	}
	err = run(ctx, Runtime{Log: log, Tel: tel})
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if terr := tel.Shutdown(sctx); terr != nil {
		log.Warn("shutting down telemetry", "err", terr)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("stopped with error", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// WaitPolicy is how a service waits for a dependency at start: attempts 1 s apart at first, backing off to
// 5 s, until the context ends.
func WaitPolicy() []backoff.RetryOption {
	return []backoff.RetryOption{
		backoff.WithBackOff(&backoff.ExponentialBackOff{InitialInterval: time.Second, RandomizationFactor: 0.2, Multiplier: 1.5, MaxInterval: 5 * time.Second}),
		backoff.WithMaxElapsedTime(0),
	}
}
