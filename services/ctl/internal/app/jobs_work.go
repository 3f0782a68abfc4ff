package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
)

// runJobsWork runs the privacy jobs the admin API queues (and resumes those whose runner died), until
// stopped or, with --once, until none is left to run.
func runJobsWork(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "jobs work", "[--once] [--poll DURATION]")
	once := fs.Bool("once", false, "run the jobs waiting now, then stop")
	poll := fs.Duration("poll", 2*time.Second, "how often to look for jobs to run")
	var w worker
	var adminAddr string
	conf.String(fs, &adminAddr, "admin.addr", "ADMIN_ADDR", "", "address of /healthz and /readyz (empty: none)")
	conf.String(fs, &w.exportDir, "export.dir", "EXPORT_DIR", "",
		"where district exports are written, a directory per job (the query service serves them from the same storage); empty: exports are refused")
	wait := fs.Duration("wait", 2*time.Minute, "how long a step waits for the enricher, the sink and the aggregator to apply an erasure")
	conf.String(fs, &w.sinkGroup, "sink.group", "SINK_GROUP", "edtech-sink", "the sink's consumer group, the name its stored offsets are kept under")
	keys, file := masterFlags(fs)
	w.kcfg.RegisterFlags(fs)
	w.ch.registerFlags(fs)
	w.archive.registerFlags(fs)
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := w.kcfg.Validate(); err != nil {
		return usagef("kafka: %w", err)
	}
	w.wait = *wait
	return withKeyring(ctx, e, c, *keys, *file, func(cp controlPlane, kr *keyring.Keyring) error {
		if adminAddr != "" {
			health := obs.NewHealth("postgres")
			health.SetReady("postgres", true)
			actx, cancel := context.WithCancel(ctx)
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				errc <- obs.ServeAdmin(actx, slog.New(slog.NewTextHandler(e.Stderr, nil)), adminAddr, health, http.NotFoundHandler())
			}()
			defer func() {
				cancel()
				if err := <-errc; err != nil {
					_, _ = fmt.Fprintf(e.Stderr, "admin server: %v\n", err)
				}
			}()
		}
		store := jobs.New(cp.pool)
		tried := map[string]bool{} // with --once, each job is tried once
		for {
			pending, err := store.Unfinished(ctx, jobs.KindEraseStudent, jobs.KindExportTenant)
			if err != nil && *once {
				return err
			}
			finished := false // a job ended: look for more at once
			for _, job := range pending {
				if *once && tried[job.ID] {
					continue
				}
				tried[job.ID] = true
				err := w.run(ctx, e, c, cp, kr, job)
				if errors.Is(err, jobs.ErrLocked) {
					continue // its runner is alive
				}
				status := "done"
				if err != nil {
					status = "stopped (to be resumed): " + err.Error()
				}
				finished = finished || err == nil
				_, _ = fmt.Fprintf(e.Stderr, "job %s (%s of district %s): %s\n", job.ID, job.Kind, job.TenantID, status)
			}
			switch {
			case finished:
				continue
			case *once:
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(*poll):
			}
		}
	})
}

// run runs one queued or unfinished job by its kind.
func (w worker) run(ctx context.Context, e Env, c *common, cp controlPlane, kr *keyring.Keyring, job jobs.Job) error {
	store := jobs.New(cp.pool)
	switch job.Kind {
	case jobs.KindEraseStudent:
		return w.eraseStudent(ctx, cp, kr, job)
	case jobs.KindExportTenant:
		var p jobs.ExportTenantParams
		if err := json.Unmarshal(job.Params, &p); err != nil || (p.Format != "ndjson" && p.Format != "csv") {
			return store.Finish(ctx, job.ID, jobs.StatusFailed, "the job names no export format (ndjson or csv)")
		}
		if w.exportDir == "" {
			return store.Finish(ctx, job.ID, jobs.StatusFailed, "this runner has no export directory (--export.dir, EXPORT_DIR)")
		}
		f := exportFlags{tenant: job.TenantID, out: filepath.Join(w.exportDir, job.ID), reason: job.Reason, by: job.RequestedBy,
			sinkGroup: w.sinkGroup, ch: w.ch}
		if _, err := os.Stat(f.out); err == nil {
			return store.Finish(ctx, job.ID, jobs.StatusDone, "") // published before the runner stopped
		}
		quiet := Env{Stdout: io.Discard, Stderr: e.Stderr, Getenv: e.Getenv}
		return f.runWith(ctx, quiet, c, cp, kr, kindExportTenant, "export.tenant", map[string]string{"format": p.Format},
			func(_ controlPlane, _ *keyring.Keyring, snap *snapshot) (exporter, string, error) {
				x, err := newTenantExport(ctx, snap, p.Format, f.out, &progress{out: &errWriter{w: e.Stderr}, tenant: f.tenant})
				return x, "", err
			})
	}
	return store.Finish(ctx, job.ID, jobs.StatusFailed, "no runner for jobs of kind "+job.Kind)
}
