package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/pgutil"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/testenv/devenv"
	"github.com/edtech-analytics/platform/services/devstack/internal/stack"
)

// platform is where the load goes and where its events are counted.
type platform struct {
	gatewayURL string
	pgURL      string // control database
	chAddr     string
	chDB       string
	logPath    string
	inProcess  bool
	close      func() error
}

// startPlatform starts every service and an embedded Kafka in this process on fresh databases of the local
// test servers; close stops them and drops the databases (unless keep).
func startPlatform(ctx context.Context, cfg config, nonce string, progress io.Writer) (*platform, error) {
	pgServer, err := devenv.Postgres(ctx)
	if err != nil {
		return nil, err
	}
	chAddr, err := devenv.ClickHouse(ctx)
	if err != nil {
		return nil, err
	}
	name := "pipelineload_" + nonce
	admin, err := pgutil.Connect(ctx, pgServer)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("creating database %s: %w", name, err)
	}
	ch, err := chutil.Open(ctx, chutil.Options{Addr: chAddr})
	if err != nil {
		return nil, err
	}
	defer func() { _ = ch.Close() }()
	if err := chutil.CreateDatabase(ctx, ch, name); err != nil {
		return nil, err
	}
	drop := func() error {
		if cfg.keep {
			return nil
		}
		ctx := context.Background()
		admin, err := pgutil.Connect(ctx, pgServer)
		if err != nil {
			return err
		}
		defer admin.Close()
		ch, err := chutil.Open(ctx, chutil.Options{Addr: chAddr})
		if err != nil {
			return err
		}
		_, perr := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		// The aggregator's analyst databases of the load's districts (analyst_load_<nonce>_...) go too.
		errs := []error{perr, dropAnalystDatabases(ctx, ch, "analyst_load_"+nonce+"_"), chutil.DropDatabase(ctx, ch, name)}
		return errors.Join(append(errs, ch.Close())...)
	}
	pgURL, err := pgutil.WithDatabase(pgServer, name)
	if err != nil {
		return nil, errors.Join(err, drop())
	}
	dir, err := os.MkdirTemp("", "pipelineload-")
	if err != nil {
		return nil, errors.Join(err, drop())
	}
	logPath := filepath.Join(dir, "platform.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, errors.Join(err, drop())
	}
	tel, err := obs.Init(ctx, "pipelineload")
	if err != nil {
		return nil, errors.Join(err, drop())
	}
	archive := ""
	if cfg.archive {
		if err := os.Mkdir(filepath.Join(dir, "archive"), 0o755); err != nil {
			return nil, errors.Join(err, drop())
		}
		archive = "file://" + filepath.Join(dir, "archive")
	}
	st, err := stack.Start(ctx, stack.Config{
		Keys:       keyring.Config{MasterKeys: conf.Secret(keyring.NewLocalKeyLine("pipelineload"))},
		Partitions: cfg.partitions, DatabaseURL: pgURL, ClickHouseAddr: chAddr, ClickHouseDatabase: name,
		GatewayAddr: "127.0.0.1:0", QueryAddr: "127.0.0.1:0", ArchiveURL: archive,
	}, svc.Runtime{Log: obs.NewLogger(logFile, "info", ""), Tel: tel})
	if err != nil {
		return nil, errors.Join(err, drop())
	}
	if _, err := fmt.Fprintf(progress, "platform started in this process: gateway %s, databases %s, log %s\n", st.GatewayURL, name, logPath); err != nil {
		return nil, errors.Join(err, st.Close(), drop())
	}
	return &platform{gatewayURL: st.GatewayURL, pgURL: pgURL, chAddr: chAddr, chDB: name, logPath: logPath, inProcess: true,
		close: func() error {
			err := errors.Join(st.Close(), tel.Shutdown(context.Background()), logFile.Close(), drop())
			if err == nil && !cfg.keep {
				err = os.RemoveAll(dir)
			}
			return err
		}}, nil
}

// provision creates the load's districts, each with an events:write key; the last one (…_mk) receives only
// the marker events.
func provision(ctx context.Context, pool *pgxpool.Pool, nonce string, n int) ([]district, error) {
	store, creds := tenants.New(fleet.New(pool, os.Getenv)), credentials.New(pool)
	var ds []district
	for i := range n + 1 {
		id := fmt.Sprintf("load_%s_%03d", nonce, i)
		if i == n {
			id = fmt.Sprintf("load_%s_mk", nonce)
		}
		if _, err := store.Create(ctx, id, fmt.Sprintf("Load district %d", i)); err != nil {
			return nil, fmt.Errorf("creating district %s: %w", id, err)
		}
		key, _, err := creds.CreateAPIKey(ctx, id, "pipelineload", []string{credentials.VerbEventsWrite})
		if err != nil {
			return nil, err
		}
		ds = append(ds, district{id: id, key: key, student: sampleSpec(id, i).Students()[0]})
	}
	return ds, nil
}

func run(ctx context.Context, cfg config, progress io.Writer) (*report, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	prefix := binary.LittleEndian.Uint64(rnd[:])
	nonce := fmt.Sprintf("%08x", uint32(prefix))
	say := func(format string, args ...any) { _, _ = fmt.Fprintf(progress, format+"\n", args...) }

	p := &platform{gatewayURL: cfg.target, pgURL: cfg.databaseURL, chAddr: cfg.clickhouseAddr, chDB: cfg.chDB, close: func() error { return nil }}
	if cfg.target == "" {
		var err error
		if p, err = startPlatform(ctx, cfg, nonce, progress); err != nil {
			return nil, err
		}
	}
	rep, err := measure(ctx, cfg, p, nonce, prefix, say)
	return rep, errors.Join(err, p.close())
}

func measure(ctx context.Context, cfg config, p *platform, nonce string, prefix uint64, say func(string, ...any)) (*report, error) {
	pool, err := pgutil.Connect(ctx, p.pgURL)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	ch, err := chutil.Open(ctx, chutil.Options{Addr: p.chAddr, Database: p.chDB})
	if err != nil {
		return nil, err
	}
	defer func() { _ = ch.Close() }()

	all, err := provision(ctx, pool, nonce, cfg.districts)
	if err != nil {
		return nil, err
	}
	ds, markerDistrict := all[:len(all)-1], all[len(all)-1]
	tpls, err := templates(ds, cfg.batch)
	if err != nil {
		return nil, err
	}
	st, err := newStores(ch, pool, all)
	if err != nil {
		return nil, err
	}
	conns := cfg.workers + 1
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, IdleConnTimeout: time.Minute, DisableCompression: true,
	}}
	defer client.CloseIdleConnections()
	s := &sender{client: client, url: p.gatewayURL + "/v1/events", ds: ds, marker: markerDistrict, tpls: tpls, ids: &ids{prefix: prefix}, retries: map[string]int64{}}
	rep := &report{cfg: cfg, inProcess: p.inProcess, districts: len(ds)}

	var warmed int64
	if cfg.warmup {
		say("warming up: the sample events of each of the %d districts' 250 students once (%d requests)", len(ds), len(tpls))
		if warmed, err = s.warm(ctx, cfg.workers); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
		// The marker district's student is known before the first timed marker.
		if _, _, err := s.post(ctx, markerDistrict.key, s.markerBody("mk-"+nonce+"-warm"), 1); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
		warmed++
		if _, _, err := st.waitFor(ctx, uint64(warmed), cfg.drain); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
		s.latencies = s.latencies[:0]
	}

	say("measuring: %s load for %s, %d markers/s", cfg.mode, cfg.duration, cfg.markers)
	var profBuf bytes.Buffer
	if p.inProcess || cfg.cpuProfile != "" {
		if err := pprof.StartCPUProfile(&profBuf); err != nil {
			return nil, fmt.Errorf("starting the cpu profile: %w", err)
		}
	}
	cpu0, pg0, ch0 := selfCPU(), serverCPU("postgres"), serverCPU("clickhouse")
	var peakRSS atomic.Uint64
	sampling, stopSampling := context.WithCancel(ctx)
	var bg, sampler sync.WaitGroup
	sampler.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			if rss := memStatus("VmRSS"); rss > peakRSS.Load() {
				peakRSS.Store(rss)
			}
			select {
			case <-sampling.Done():
				return
			case <-t.C:
			}
		}
	})

	start := time.Now()
	found := make(chan *marker, 1024)
	markerCtx, stopMarkers := context.WithCancel(ctx)
	var markersAccepted int64
	var markerErr, watchErr error
	var marks []*marker
	pprof.Do(ctx, pprof.Labels(stack.ProfileLabel, "load generator"), func(ctx context.Context) {
		bg.Go(func() { markersAccepted, markerErr = s.markers(markerCtx, cfg.markers, "mk-"+nonce, found) })
		bg.Go(func() { marks, watchErr = st.watchMarkers(ctx, found, cfg.poll, cfg.drain) })
		rep.accepted, rep.sendTime, rep.late, err = s.load(ctx, cfg, cfg.duration)
	})
	stopMarkers()
	if err != nil {
		stopSampling()
		bg.Wait()
		sampler.Wait()
		pprof.StopCPUProfile()
		return nil, fmt.Errorf("load: %w", err)
	}
	rep.gateway = percentiles(s.latencies)
	rep.requests = len(s.latencies)
	rep.retries = s.retries
	say("load sent: %d events accepted in %s; waiting for the stores", rep.accepted, rep.sendTime.Round(time.Millisecond))

	var final counts
	var done time.Time
	pprof.Do(ctx, pprof.Labels(stack.ProfileLabel, "load generator"), func(ctx context.Context) {
		bg.Wait() // markers stopped; the watcher ends once both stores show every marker
		if markerErr == nil && watchErr == nil {
			rep.markers = int64(len(marks))
			want := uint64(warmed + rep.accepted + markersAccepted)
			rep.want = want
			final, done, err = st.waitFor(ctx, want, cfg.drain)
		}
	})
	stopSampling()
	sampler.Wait()
	rep.total = done.Sub(start)
	rep.cpuProcess = selfCPU() - cpu0
	rep.cpuPG, rep.cpuCH = serverCPU("postgres")-pg0, serverCPU("clickhouse")-ch0
	rep.peakRSS, rep.hwmRSS = peakRSS.Load(), memStatus("VmHWM")
	if p.inProcess || cfg.cpuProfile != "" {
		pprof.StopCPUProfile()
		if p.inProcess {
			shares, perr := byService(profBuf.Bytes())
			if perr != nil {
				return rep, perr
			}
			rep.shares = shares
		}
		if cfg.cpuProfile != "" {
			if werr := os.WriteFile(cfg.cpuProfile, profBuf.Bytes(), 0o644); werr != nil {
				return rep, werr
			}
		}
	}
	if err := errors.Join(markerErr, watchErr, err); err != nil {
		return rep, err
	}
	rep.accepted += markersAccepted
	for _, m := range marks {
		rep.freshCH = append(rep.freshCH, m.ch.Sub(m.acked))
		rep.freshPG = append(rep.freshPG, m.pg.Sub(m.acked))
	}
	// The exact check: every count, including the distinct ids and the rollup, equals what was accepted.
	if final, err = st.full(ctx); err != nil {
		return rep, err
	}
	rep.counts = final
	if !final.exact(rep.want) {
		return rep, fmt.Errorf("the stores do not hold exactly the %d accepted events: %s", rep.want, final)
	}
	return rep, nil
}

// dropAnalystDatabases drops the ClickHouse databases whose names start with prefix.
func dropAnalystDatabases(ctx context.Context, ch driver.Conn, prefix string) error {
	rows, err := ch.Query(ctx, "SELECT name FROM system.databases WHERE startsWith(name, ?)", prefix)
	if err != nil {
		return fmt.Errorf("listing analyst databases: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return errors.Join(err, rows.Close())
		}
		names = append(names, n)
	}
	errs := []error{rows.Err(), rows.Close()}
	for _, n := range names {
		errs = append(errs, chutil.DropDatabase(ctx, ch, n))
	}
	return errors.Join(errs...)
}
