// Package pipeline runs the enricher's read-process-write loop in Kafka transactions: the enriched
// records, the dead letters, the dedup changelog entries and the consumed raw offsets of one batch are
// committed together or not at all, so a crash at any point neither loses nor duplicates a record.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/services/enricher/internal/claims"
	"github.com/edtech-analytics/platform/services/enricher/internal/dedup"
	"github.com/edtech-analytics/platform/services/enricher/internal/enrich"
	"github.com/edtech-analytics/platform/services/enricher/internal/quality"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
)

// Config tunes the loop.
type Config struct {
	Group string
	// TransactionTimeout bounds how long a transaction may stay open; after a crash, the broker aborts
	// the dead instance's open transaction after it, which is how long its partitions' readers wait.
	TransactionTimeout time.Duration
	MaxPollRecords     int
	// Workers is how many partitions of a poll are enriched at once (default GOMAXPROCS); records of
	// one partition are always enriched in order by one worker.
	Workers      int
	RetryBackoff time.Duration
	// RestoreWorkers is how many newly assigned partitions have their dedup state rebuilt at once
	// (default GOMAXPROCS).
	RestoreWorkers int
	// OnAssigned runs when partitions are assigned, before their records are processed (caches that
	// another instance may have made stale are dropped there). Optional.
	OnAssigned func()
	// OnCommit is told what each committed batch did (metrics, tests). Optional.
	OnCommit func(Stats)
}

// Pipeline is the transactional loop.
type Pipeline struct {
	cfg       Config
	topics    kafkax.Topics
	changelog Changelog
	codec     *records.Codec
	enr       *enrich.Enricher
	dedup     *dedup.Set
	claims    Claims   // nil: every district is judged per partition
	pii       PIIStore // nil: personal data found in free text is counted in Stats only
	log       *slog.Logger
	ready     func(bool)

	fatal chan error // a partition whose dedup state cannot be restored stops the instance
	// sessionCtx is the context of the running session, ended when it stops: a restore in its assignment
	// callback gives up then.
	sessionCtx atomic.Pointer[context.Context]

	mu    sync.Mutex
	stall *Stall // the batches failing in a row, nil while they commit

	// Used by the batch loop alone.
	backfilled map[backfillKey]bool   // switches whose ids are known to be in the shared store
	epoch      int64                  // the dedup epoch shared is current for; -1: not read yet
	shared     map[string]claims.Mode // the districts judged in shared mode
	sharedRead time.Time
	ids        []dedup.ID // decide's buffers
	dups       []bool
	piiPending []quality.Count // counts of committed batches not stored yet
}

// PIIStore keeps the daily counts of personal data found in districts' free text (internal/quality): Add
// returns the counts it could not store, to be tried again with the next batch's.
type PIIStore interface {
	Add(ctx context.Context, counts []quality.Count) (failed []quality.Count, err error)
}

// Claims is the shared dedup store (internal/claims) for districts whose records may change partition.
type Claims interface {
	Epoch(ctx context.Context) (int64, error)
	Shared(ctx context.Context) (map[string]claims.Mode, error)
	Claim(ctx context.Context, cs []claims.Claim) ([]bool, error)
	IsBackfilled(ctx context.Context, tenant string, changed time.Time) (bool, error)
	Backfill(ctx context.Context, tenant string, changed time.Time, ids map[string]time.Time) error
}

// Stall is a run of batches that failed in a row: the records they hold wait.
type Stall struct {
	Since    time.Time `json:"since"`
	Failures int       `json:"failures"`
	Err      string    `json:"error"`
}

// Stalled reports the batches failing in a row, or nil.
func (p *Pipeline) Stalled() *Stall {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stall == nil {
		return nil
	}
	s := *p.stall
	return &s
}

// note records a batch's outcome for Stalled.
func (p *Pipeline) note(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		p.stall = nil
		return
	}
	if p.stall == nil {
		p.stall = &Stall{Since: time.Now()}
	}
	p.stall.Failures++
	p.stall.Err = err.Error()
}

// Changelog are the readers of the dedup changelog (kafkax.NewReader clients): one rebuilds the state of
// newly assigned partitions, the other copies a switched district's ids to the shared store (ADR 0007).
// They may read at the same time, so they are two clients.
type Changelog struct {
	Restore  *kgo.Client
	Backfill *kgo.Client
}

// New builds the pipeline. shared may be nil: then every district is judged by the per-partition set
// alone, which is exact only while no district is hot or switches. pii, if non-nil, is given the counts of
// personal data found in free text after each batch commits. ready, if non-nil, is told when the
// pipeline owns partitions whose dedup state is restored (true) and when it stops (false).
func New(cfg Config, topics kafkax.Topics, log *slog.Logger, codec *records.Codec, enr *enrich.Enricher, set *dedup.Set, shared Claims,
	pii PIIStore, changelog Changelog, ready func(bool)) *Pipeline {
	if cfg.MaxPollRecords <= 0 {
		cfg.MaxPollRecords = 5000
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = time.Second
	}
	if cfg.TransactionTimeout <= 0 {
		cfg.TransactionTimeout = 10 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.RestoreWorkers <= 0 {
		cfg.RestoreWorkers = runtime.GOMAXPROCS(0)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pipeline{cfg: cfg, topics: topics, changelog: changelog, codec: codec, enr: enr, dedup: set, claims: shared, pii: pii,
		log: log.With("group", cfg.Group), ready: ready, fatal: make(chan error, 1),
		backfilled: map[backfillKey]bool{}, epoch: -1}
}

// Stats counts what one batch did: records enriched, dead-lettered, dropped as client retries, and
// suppressed (erased, or without required consent); and, among those enriched or dead-lettered, the
// personal data found in free text (nil when none was).
type Stats struct {
	Enriched, Dead, Duplicates, Erased, NoConsent int
	PII                                           map[PIIKey]int
}

// PIIKey is what personal data found in free text is counted by: the record's district and source, the
// field, the kind (libs/pii) and the action of the district's free-text rule.
type PIIKey struct{ Tenant, Source, Field, Kind, Action string }

func (s *Stats) add(o Stats) {
	s.Enriched, s.Dead, s.Duplicates = s.Enriched+o.Enriched, s.Dead+o.Dead, s.Duplicates+o.Duplicates
	s.Erased, s.NoConsent = s.Erased+o.Erased, s.NoConsent+o.NoConsent
	for k, n := range o.PII {
		s.countPII(k, n)
	}
}

func (s *Stats) countPII(k PIIKey, n int) {
	if s.PII == nil {
		s.PII = map[PIIKey]int{}
	}
	s.PII[k] += n
}

// addPII counts what the free-text rule found in one record.
func (s *Stats) addPII(found *enrich.PII) {
	if found == nil {
		return
	}
	for _, d := range found.Found {
		s.countPII(PIIKey{Tenant: found.Tenant, Source: found.Source, Field: d.Field, Kind: string(d.Kind), Action: d.Action}, 1)
	}
}

// expireEvery is how often expired dedup entries are reclaimed.
const expireEvery = 5 * time.Minute

// errRebuild asks Run for a new transactional session: the current one keeps failing (for instance, its
// producer was fenced or its epoch bumped when a transaction timed out).
var errRebuild = errors.New("transactional session keeps failing")

// errModeChanged aborts a batch during which a district's dedup mode changed; it is retried at once.
var errModeChanged = errors.New("dedup mode of a district changed during the batch")

// errSlow aborts a batch that is taking too long for the transaction timeout; it is retried smaller.
var errSlow = errors.New("batch is taking too long for the transaction timeout")

// maxFailures is how many batches in a row may fail before the session is rebuilt.
const maxFailures = 3

// NewSession builds the transactional session the pipeline reads raw and writes with: a
// kafkax.NewTransactionalSession of the pipeline's group and transactional id with its Rebalance. Run
// calls it again when a session keeps failing.
type NewSession func() (*kgo.GroupTransactSession, error)

// Rebalance is what the session must tell the pipeline: the dedup state of newly assigned partitions is
// restored before their records are fetched, and dropped when they go.
func (p *Pipeline) Rebalance() kafkax.Rebalance {
	return kafkax.Rebalance{Assigned: p.onAssigned, Revoked: p.onRevoked}
}

// Run consumes raw until ctx is done, in sessions built by newSession.
func (p *Pipeline) Run(ctx context.Context, newSession NewSession) error {
	if p.ready != nil {
		defer p.ready(false)
	}
	for {
		err := p.session(ctx, newSession)
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, errRebuild) {
			return err
		}
		p.log.Warn("rebuilding the transactional session", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(p.cfg.RetryBackoff):
		}
	}
}

// session runs one transactional session (one client) until ctx is done or it must be rebuilt.
func (p *Pipeline) session(ctx context.Context, newSession NewSession) error {
	sess, err := newSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	// Ends before Close (defers run last first): a restore still running in the assignment callback,
	// which Close waits for, gives up instead of waiting for its changelog's end.
	sctx, endSession := context.WithCancel(ctx)
	defer endSession()
	p.sessionCtx.Store(&sctx)

	// A batch must end well within the transaction timeout, or the broker aborts it and fences the
	// producer. The poll size adapts: a batch that runs long is aborted and retried at a quarter of the
	// size; quick batches double it back up to MaxPollRecords.
	budget := p.cfg.TransactionTimeout / 2
	limit, failures := p.cfg.MaxPollRecords, 0
	nextExpire := time.Now().Add(expireEvery)
	for {
		select {
		case err := <-p.fatal:
			return err
		default:
		}
		if now := time.Now(); now.After(nextExpire) {
			n := p.dedup.Expire(now)
			p.log.Debug("dedup entries expired", "remaining", n)
			nextExpire = now.Add(expireEvery)
		}
		if ctx.Err() != nil {
			return nil
		}
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fetches := sess.PollRecords(pctx, limit)
		cancel()
		if fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, part int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				p.log.Warn("fetch error", "topic", t, "partition", part, "err", err)
			}
		})
		if fetches.NumRecords() == 0 {
			continue
		}
		start := time.Now()
		err := p.batch(ctx, sess, fetches, budget)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errModeChanged):
			p.log.Info("retrying a batch under the new dedup mode", "err", err)
		case errors.Is(err, errSlow):
			limit = max(1, limit/4)
			p.log.Warn("batch too slow for the transaction timeout; retrying smaller", "records", fetches.NumRecords(), "limit", limit)
		case err != nil:
			p.note(err)
			if failures++; failures >= maxFailures {
				return fmt.Errorf("%w: %w", errRebuild, err)
			}
			p.log.Warn("batch aborted; retrying", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(p.cfg.RetryBackoff):
			}
		default:
			failures = 0
			p.note(nil)
			if time.Since(start) < budget/4 {
				limit = min(p.cfg.MaxPollRecords, limit*2)
			}
		}
	}
}

// batch processes one poll in one transaction. It gives up with errSlow when the poll has more than one
// record and processing it outlasts budget.
//
// Dedup decides after enrichment, in one pass over the poll (ADR 0007): every id is checked against the
// set of the partition it arrived on; ids of districts in shared mode (hot, or switched within the window)
// are then claimed in the shared store in one round trip. After the batch's records are flushed, the
// dedup epoch is read: if a switch committed since the shared districts were read and changes them, the
// transaction is aborted and the poll judged again, so no batch that judged a district per partition
// commits after the district's switch without the switch's backfill seeing it.
func (p *Pipeline) batch(ctx context.Context, sess *kgo.GroupTransactSession, fetches kgo.Fetches, budget time.Duration) error {
	start := time.Now()
	modes, epoch, err := p.sharedModes(ctx)
	if err != nil {
		return err
	}
	if err := sess.Begin(); err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	var (
		mu      sync.Mutex
		prodErr error
	)
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			if prodErr == nil {
				prodErr = err
			}
			mu.Unlock()
		}
	}
	now := time.Now()
	var parts [][]*kgo.Record
	fetches.EachPartition(func(ft kgo.FetchTopicPartition) {
		if len(ft.Records) > 0 {
			parts = append(parts, ft.Records)
		}
	})
	records := fetches.NumRecords()
	slow := func() error {
		if records > 1 && time.Since(start) > budget {
			return errSlow
		}
		return nil
	}
	emit := func(stats *Stats, kept *[]passed, rec *kgo.Record, out enrich.Outcome) error {
		if err := slow(); err != nil {
			return err
		}
		ctx := rec.Context // carries the consume span continuing the gateway's trace
		if ctx == nil {
			ctx = context.Background()
		}
		switch {
		case out.Suppressed == enrich.SuppressedErased:
			stats.Erased++
		case out.Suppressed == enrich.SuppressedNoConsent:
			stats.NoConsent++
		case out.DLQ != nil:
			val, err := p.codec.Encode(out.DLQ)
			if err != nil {
				return fmt.Errorf("encoding dlq record: %w", err)
			}
			stats.Dead++
			stats.addPII(out.PII)
			sess.Produce(ctx, &kgo.Record{Topic: p.topics.DLQ, Key: rec.Key, Value: val, Context: ctx}, promise)
		case out.Enriched != nil:
			// Only records that are passed on occupy the dedup window: a dead letter replayed after a
			// fix, or an event suppressed for want of consent, is not a retry. Dedup decides below, once
			// for the poll; encoding stays here, on the partition's worker.
			val, err := p.codec.Encode(out.Enriched)
			if err != nil {
				return fmt.Errorf("encoding enriched record: %w", err)
			}
			*kept = append(*kept, passed{rec: rec, ev: out.Enriched, val: val, ctx: ctx, pii: out.PII})
		}
		return nil
	}
	// Partitions are independent: enrich them side by side, each in order.
	perPart := make([]Stats, len(parts))
	keptPer := make([][]passed, len(parts))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.cfg.Workers)
	for i, recs := range parts {
		g.Go(func() error {
			return p.enr.Batch(gctx, recs, func(rec *kgo.Record, out enrich.Outcome) error {
				return emit(&perPart[i], &keptPer[i], rec, out)
			})
		})
	}
	procErr := g.Wait()
	var stats Stats
	for _, s := range perPart {
		stats.add(s)
	}
	if procErr == nil {
		procErr = p.dedupAndProduce(ctx, sess, modes, keptPer, now, &stats, promise)
	}
	if procErr == nil {
		procErr = slow()
	}
	if procErr == nil && p.claims != nil {
		// Every record of this transaction is on the broker before the switches are checked: a switch
		// recorded after the check finds them when it copies the district's ids (dedup.TenantEntries
		// waits for this transaction to end).
		if err := sess.Client().Flush(ctx); err != nil {
			procErr = fmt.Errorf("flushing the batch: %w", err)
		} else {
			procErr = p.postCheck(ctx, modes, epoch)
		}
	}
	commit := kgo.TryCommit
	if procErr != nil {
		commit = kgo.TryAbort
	}
	committed, err := sess.End(ctx, commit)
	mu.Lock()
	perr := prodErr
	mu.Unlock()
	if committed && err == nil && perr == nil && procErr == nil {
		p.dedup.Commit(now)
		p.log.Debug("batch committed", "records", records, "enriched", stats.Enriched, "dead", stats.Dead,
			"duplicates", stats.Duplicates, "erased", stats.Erased, "no_consent", stats.NoConsent, "took", time.Since(start))
		if p.cfg.OnCommit != nil {
			p.cfg.OnCommit(stats)
		}
		p.storePII(ctx, stats.PII, now)
		return nil
	}
	p.dedup.Abort()
	if (errors.Is(procErr, errSlow) || errors.Is(procErr, errModeChanged)) && err == nil {
		return procErr
	}
	return errors.Join(procErr, perr, err, errIf(!committed, "transaction not committed"))
}

// storePII adds the personal data a committed batch found in free text to the districts' daily counts, in
// one statement per district, with the counts of earlier batches that could not be stored. The batch is
// committed: a failure keeps the counts for the next batch (and is logged) rather than failing it. Counts
// are stored after the commit so that a batch aborted and retried counts once; a crash between the
// commit and this write loses them (the metric, counted in OnCommit, has the same gap only if the process
// dies before it is scraped).
func (p *Pipeline) storePII(ctx context.Context, found map[PIIKey]int, day time.Time) {
	if p.pii == nil || len(found) == 0 && len(p.piiPending) == 0 {
		return
	}
	counts := p.piiPending
	for k, n := range found {
		counts = append(counts, quality.Count{Day: day.UTC(), Tenant: k.Tenant, Source: k.Source, Field: k.Field, Kind: k.Kind, Records: int64(n)})
	}
	// Written even while the pipeline stops: the batch is committed.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	failed, err := p.pii.Add(wctx, counts)
	if err != nil {
		p.log.Warn("storing the counts of personal data found in free text; those that can be retried wait for the next batch", "err", err,
			"pending", len(failed))
	}
	p.piiPending = failed
}

// passed is a record the enricher passes on, waiting for dedup to decide.
type passed struct {
	rec     *kgo.Record
	ev      *records.EnrichedEvent
	val     []byte // ev encoded
	ctx     context.Context
	pii     *enrich.PII // personal data found in its free text
	expires time.Time   // of its changelog entry, once dedup let it through
}

// dedupAndProduce drops the retries among kept (per partition, in order) and produces the rest with their
// changelog entries, the partitions side by side; modes are the districts judged in shared mode.
func (p *Pipeline) dedupAndProduce(ctx context.Context, sess *kgo.GroupTransactSession, modes map[string]claims.Mode,
	keptPer [][]passed, now time.Time, stats *Stats, promise func(*kgo.Record, error)) error {
	if err := p.decide(ctx, modes, keptPer, now, stats); err != nil {
		return err
	}
	var g errgroup.Group
	g.SetLimit(p.cfg.Workers)
	for _, kept := range keptPer {
		stats.Enriched += len(kept)
		for _, d := range kept {
			stats.addPII(d.pii)
		}
		g.Go(func() error {
			for _, d := range kept {
				// Same key as the raw record: a hot district's sub-keys keep per-student order downstream. The raw
				// record's timestamp (the gateway's) goes along in a header, so a store consumer's record age is
				// the time since receipt (as the record's own timestamp, an old one would count against the
				// producer's delivery timeout).
				sess.Produce(d.ctx, &kgo.Record{Topic: p.topics.Enriched, Key: d.rec.Key, Value: d.val, Context: d.ctx,
					Headers: []kgo.RecordHeader{kafkax.ReceivedHeader(d.rec.Timestamp)}}, promise)
				sess.Produce(d.ctx, &kgo.Record{Topic: p.topics.Dedup, Partition: d.rec.Partition, Context: d.ctx, // same trace
					Key: dedup.ChangelogKey(d.ev.TenantID, d.ev.EventID), Value: dedup.ChangelogValue(d.expires)}, promise)
			}
			return nil
		})
	}
	return g.Wait()
}

// decide drops the retries from keptPer (in place, keeping the order) and counts them in stats; the
// records left get the expiry of their changelog entries.
func (p *Pipeline) decide(ctx context.Context, modes map[string]claims.Mode, keptPer [][]passed, now time.Time, stats *Stats) error {
	type at struct{ part, i int }
	var (
		cs     []claims.Claim
		claim  []at // where each claim's record is
		last   string
		mode   claims.Mode
		mapped bool
	)
	ids := p.ids[:0]
	for _, kept := range keptPer {
		for _, k := range kept {
			ids = append(ids, dedup.ID{Partition: k.rec.Partition, Tenant: k.ev.TenantID, EventID: k.ev.EventID})
		}
	}
	dups := slices.Grow(p.dups[:0], len(ids))[:len(ids)]
	p.ids, p.dups = ids, dups
	expires := p.dedup.SeenOrAddBatch(ids, now, dups)
	n := 0
	for pi, kept := range keptPer {
		out := kept[:0]
		for _, k := range kept {
			dup := dups[n]
			n++
			if dup {
				stats.Duplicates++
				continue
			}
			ev := k.ev
			if len(modes) > 0 && (!mapped || ev.TenantID != last) { // with no district shared, no lookups
				last, mode, mapped = ev.TenantID, modes[ev.TenantID], true
			}
			if mode.Shared {
				claim = append(claim, at{pi, len(out)})
				cs = append(cs, claims.Claim{Tenant: ev.TenantID, EventID: ev.EventID, Partition: k.rec.Partition, Offset: k.rec.Offset})
			}
			k.expires = expires
			out = append(out, k)
		}
		keptPer[pi] = out
	}
	if len(cs) == 0 {
		return nil
	}
	won, err := p.claims.Claim(ctx, cs)
	if err != nil {
		return err
	}
	lost := map[at]bool{}
	for i, w := range won {
		if !w {
			lost[claim[i]] = true // another record holds the id: it arrived on another partition
		}
	}
	if len(lost) == 0 {
		return nil
	}
	for pi, kept := range keptPer {
		out := kept[:0]
		for i, k := range kept {
			if lost[at{pi, i}] {
				stats.Duplicates++
				continue
			}
			out = append(out, k)
		}
		keptPer[pi] = out
	}
	return nil
}

// modeTTL bounds how long the shared districts are reused without reading them: a switch is seen at once
// (postCheck), only a switch leaving the window is seen this late, and judging a district shared a little
// longer is safe.
const modeTTL = time.Minute

// sharedModes returns the districts judged in shared mode (any other is judged per partition) and the
// dedup epoch they are current for, read again when older than modeTTL. Every district that switched
// within the window has had the ids it kept before the switch copied into the shared store, once per
// switch. Without a shared store, no district is shared.
func (p *Pipeline) sharedModes(ctx context.Context) (map[string]claims.Mode, int64, error) {
	if p.claims == nil {
		return nil, 0, nil
	}
	if p.epoch < 0 || time.Since(p.sharedRead) >= modeTTL {
		if err := p.readShared(ctx, -1); err != nil {
			return nil, 0, err
		}
	}
	for t, m := range p.shared {
		if m.Recent {
			if err := p.backfill(ctx, t, m.Changed); err != nil {
				return nil, 0, err
			}
		}
	}
	return p.shared, p.epoch, nil
}

// readShared reads the shared districts, after the epoch (or with epoch, when already read) so that they
// are at least as new as it.
func (p *Pipeline) readShared(ctx context.Context, epoch int64) error {
	if epoch < 0 {
		e, err := p.claims.Epoch(ctx)
		if err != nil {
			return err
		}
		epoch = e
	}
	shared, err := p.claims.Shared(ctx)
	if err != nil {
		return err
	}
	p.epoch, p.shared, p.sharedRead = epoch, shared, time.Now()
	return nil
}

// postCheck fails with errModeChanged when a district switched since the batch's modes were read, in a way
// that changes how it is judged: the batch must then be judged again. Nothing switched if the epoch is
// the one the modes were current for.
func (p *Pipeline) postCheck(ctx context.Context, used map[string]claims.Mode, epoch int64) error {
	e, err := p.claims.Epoch(ctx)
	if err != nil || e == epoch {
		return err
	}
	if err := p.readShared(ctx, e); err != nil {
		return err
	}
	if !maps.EqualFunc(used, p.shared, claims.Mode.Same) {
		return errModeChanged
	}
	return nil
}

// backfill makes sure the ids district tenant kept before its switch at changed are in the shared store.
func (p *Pipeline) backfill(ctx context.Context, tenant string, changed time.Time) error {
	key := backfillKey{tenant, changed.UnixMicro()}
	if p.backfilled[key] {
		return nil
	}
	done, err := p.claims.IsBackfilled(ctx, tenant, changed)
	if err != nil {
		return err
	}
	if !done {
		start := time.Now()
		ids, err := dedup.TenantEntries(ctx, p.changelog.Backfill, p.topics.Dedup, tenant, time.Now())
		if err != nil {
			return err
		}
		if err := p.claims.Backfill(ctx, tenant, changed, ids); err != nil {
			return err
		}
		p.log.Info("dedup ids copied to the shared store after a hot switch", "tenant_id", tenant, "ids", len(ids), "took", time.Since(start))
	}
	p.backfilled[key] = true
	return nil
}

type backfillKey struct {
	tenant  string
	changed int64
}

func errIf(cond bool, msg string) error {
	if cond {
		return errors.New(msg)
	}
	return nil
}

// onAssigned restores the dedup state of the newly assigned partitions before their records are fetched:
// their changelog partitions are read side by side (at most RestoreWorkers at once), and the pipeline is
// ready once they are restored.
func (p *Pipeline) onAssigned(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
	if p.cfg.OnAssigned != nil {
		p.cfg.OnAssigned()
	}
	parts := assigned[p.topics.Raw]
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	if sctx := p.sessionCtx.Load(); sctx != nil {
		stop := context.AfterFunc(*sctx, cancel) // the session ended: Close is waiting for this callback
		defer stop()
	}
	states, err := dedup.Restore(rctx, p.changelog.Restore, p.topics.Dedup, parts, p.dedup, start, p.cfg.RestoreWorkers)
	cancel()
	if err != nil {
		select {
		case p.fatal <- fmt.Errorf("restoring dedup state of partitions %v: %w", parts, err):
		default:
		}
		return
	}
	for _, part := range parts {
		p.dedup.Own(part, states[part])
		p.log.Info("dedup state restored", "partition", part, "entries", states[part].Len(), "took", time.Since(start))
	}
	if p.ready != nil {
		p.ready(true)
	}
}

func (p *Pipeline) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	for _, part := range revoked[p.topics.Raw] {
		p.dedup.Disown(part)
	}
}
