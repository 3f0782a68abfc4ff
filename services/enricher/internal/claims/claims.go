// Package claims is the enricher's shared dedup store (ADR 0007): (tenant, event id) claims in the control
// schema, for districts whose records may arrive on a partition other than the one an earlier copy
// arrived on (hot districts, and districts whose hot setting changed within the dedup window). A claim
// names the raw record that made it, so the same record processed again after an aborted transaction
// finds its own claim and passes, while any other record with that id is a client retry.
package claims

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Mode is how one district's ids are deduplicated.
type Mode struct {
	// Shared: the district is hot, or its hot setting changed within the window; its ids are claimed here.
	Shared bool
	// Recent: the hot setting changed within the window, so the ids the district had before the change
	// must be copied in (Backfill) before its records are judged here.
	Recent bool
	// Changed is when the hot setting last changed (zero: never since claims were introduced).
	Changed time.Time
}

// Same reports whether m and o decide the same way.
func (m Mode) Same(o Mode) bool {
	return m.Shared == o.Shared && m.Recent == o.Recent && m.Changed.Equal(o.Changed)
}

// Claim is one record's claim on an id: the id and the raw position of the record.
type Claim struct {
	Tenant, EventID string
	Partition       int32
	Offset          int64
}

// Backfilled is the position of claims copied from the changelog when a district switched: held by no raw
// record, so every record carrying the id is a retry.
const Backfilled = -1

// Store keeps claims in PostgreSQL.
type Store struct {
	pool   *pgxpool.Pool
	window time.Duration
}

// New returns the store; claims expire after window.
func New(pool *pgxpool.Pool, window time.Duration) *Store {
	return &Store{pool: pool, window: window}
}

// Epoch is the number of hot switches so far (control.dedup_epoch), in commit order: a switch that
// commits after a read of the epoch changes the value the next read returns.
func (s *Store) Epoch(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, "SELECT n FROM control.dedup_epoch").Scan(&n); err != nil {
		return 0, fmt.Errorf("reading the dedup epoch: %w", err)
	}
	return n, nil
}

// Shared returns the districts judged in shared mode now: hot, or whose hot setting changed within the
// window (deleted districts included: their records may still be in flight). Every other district is
// judged per partition.
func (s *Store) Shared(ctx context.Context) (map[string]Mode, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, coalesce(hot_changed_at > now() - $1::interval, false), hot_changed_at
		FROM control.tenants WHERE hot_shards > 0 OR hot_changed_at > now() - $1::interval`, s.window)
	if err != nil {
		return nil, fmt.Errorf("reading the districts whose ids are claimed: %w", err)
	}
	out := map[string]Mode{}
	var (
		id      string
		m       Mode
		changed *time.Time
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &m.Recent, &changed}, func() error {
		m.Shared, m.Changed = true, time.Time{}
		if changed != nil {
			m.Changed = *changed
		}
		out[id] = m
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading the districts whose ids are claimed: %w", err)
	}
	return out, nil
}

// Claim claims every id for its record and reports, per claim, whether the id is the record's: newly
// claimed, already claimed by the same record (its transaction aborted), or taken over from an expired
// claim. Otherwise another record holds it, and this one is a retry. Claims of one id in cs are decided
// together: at most one of them is the id's.
func (s *Store) Claim(ctx context.Context, cs []Claim) ([]bool, error) {
	if len(cs) == 0 {
		return nil, nil
	}
	type id struct{ tenant, event string }
	type pos struct {
		part int32
		off  int64
	}
	// One row per id, the first claim's position; inserted in key order so concurrent claimers lock in the
	// same order and never deadlock.
	first := make(map[id]pos, len(cs))
	for _, c := range cs {
		k := id{c.Tenant, c.EventID}
		if _, ok := first[k]; !ok {
			first[k] = pos{c.Partition, c.Offset}
		}
	}
	keys := make([]id, 0, len(first))
	for k := range first {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b id) int { return cmp.Or(cmp.Compare(a.tenant, b.tenant), cmp.Compare(a.event, b.event)) })
	tenants, events := make([]string, len(keys)), make([]string, len(keys))
	parts, offs := make([]int32, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		tenants[i], events[i], parts[i], offs[i] = k.tenant, k.event, first[k].part, first[k].off
	}
	holder := make(map[id]pos, len(keys))
	// Rows inserted, or taken over from an expired claim, come back; an id held by a live claim does not.
	rows, err := s.pool.Query(ctx, `INSERT INTO control.dedup_claims AS c (tenant_id, event_id, raw_partition, raw_offset, expires_at)
		SELECT t, e, p, o, now() + $5::interval FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[]) AS u(t, e, p, o)
		ON CONFLICT (tenant_id, event_id) DO UPDATE
			SET raw_partition = EXCLUDED.raw_partition, raw_offset = EXCLUDED.raw_offset, expires_at = EXCLUDED.expires_at
			WHERE c.expires_at <= now()
		RETURNING tenant_id, event_id`, tenants, events, parts, offs, s.window)
	if err != nil {
		return nil, fmt.Errorf("claiming %d ids: %w", len(keys), err)
	}
	var k id
	if _, err := pgx.ForEachRow(rows, []any{&k.tenant, &k.event}, func() error {
		holder[k] = first[k]
		return nil
	}); err != nil {
		return nil, fmt.Errorf("claiming %d ids: %w", len(keys), err)
	}
	if len(holder) < len(keys) { // some ids were held already: by whom?
		var ht, he []string
		for _, k := range keys {
			if _, ok := holder[k]; !ok {
				ht, he = append(ht, k.tenant), append(he, k.event)
			}
		}
		rows, err := s.pool.Query(ctx, `SELECT c.tenant_id, c.event_id, c.raw_partition, c.raw_offset
			FROM unnest($1::text[], $2::text[]) AS u(t, e)
			JOIN control.dedup_claims c ON c.tenant_id = u.t AND c.event_id = u.e`, ht, he)
		if err != nil {
			return nil, fmt.Errorf("reading the holders of %d claimed ids: %w", len(ht), err)
		}
		var p pos
		if _, err := pgx.ForEachRow(rows, []any{&k.tenant, &k.event, &p.part, &p.off}, func() error {
			holder[k] = p
			return nil
		}); err != nil {
			return nil, fmt.Errorf("reading the holders of %d claimed ids: %w", len(ht), err)
		}
	}
	won := make([]bool, len(cs))
	for i, c := range cs {
		h, ok := holder[id{c.Tenant, c.EventID}]
		if !ok {
			// The holder expired and was deleted between the two statements: claim again next time.
			return nil, fmt.Errorf("claim of %s/%s: %w", c.Tenant, c.EventID, ErrVanished)
		}
		won[i] = h == pos{c.Partition, c.Offset}
	}
	return won, nil
}

// ErrVanished means a claim expired while it was being read; the batch is retried.
var ErrVanished = errors.New("claim expired while being read")

// IsBackfilled reports whether the ids the district had before its switch at changed were copied in.
func (s *Store) IsBackfilled(ctx context.Context, tenant string, changed time.Time) (bool, error) {
	var done bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM control.dedup_backfills WHERE tenant_id = $1 AND changed_at = $2)`,
		tenant, changed).Scan(&done)
	if err != nil {
		return false, fmt.Errorf("reading dedup backfill of %s: %w", tenant, err)
	}
	return done, nil
}

// Backfill copies the ids a district had before its switch at changed (event id -> expiry) into the
// claims, held by no record, then records the backfill done. Running it twice is harmless.
func (s *Store) Backfill(ctx context.Context, tenant string, changed time.Time, ids map[string]time.Time) error {
	events := make([]string, 0, len(ids))
	for e := range ids {
		events = append(events, e)
	}
	slices.Sort(events)
	for chunk := range slices.Chunk(events, 10_000) {
		exp := make([]time.Time, len(chunk))
		for i, e := range chunk {
			exp[i] = ids[e]
		}
		_, err := s.pool.Exec(ctx, `INSERT INTO control.dedup_claims AS c (tenant_id, event_id, raw_partition, raw_offset, expires_at)
			SELECT $1, e, $4::int, $5::bigint, x FROM unnest($2::text[], $3::timestamptz[]) AS u(e, x)
			ON CONFLICT (tenant_id, event_id) DO UPDATE
				SET raw_partition = EXCLUDED.raw_partition, raw_offset = EXCLUDED.raw_offset, expires_at = EXCLUDED.expires_at
				WHERE c.expires_at <= now()`, tenant, chunk, exp, Backfilled, Backfilled)
		if err != nil {
			return fmt.Errorf("copying %d ids of %s into dedup claims: %w", len(chunk), tenant, err)
		}
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO control.dedup_backfills (tenant_id, changed_at, entries) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, tenant, changed, len(ids))
	if err != nil {
		return fmt.Errorf("recording dedup backfill of %s: %w", tenant, err)
	}
	return nil
}

// RunExpiry deletes expired claims every interval until ctx is done, logging what fails.
func (s *Store) RunExpiry(ctx context.Context, log *slog.Logger, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for { // in slices, so no statement holds many locks for long
			n, err := s.Expire(ctx, 50_000)
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("expiring dedup claims", "err", err)
				}
				break
			}
			if n < 50_000 {
				break
			}
		}
	}
}

// Expire deletes expired claims (and backfill records older than the window), at most limit claims per
// call, and returns how many claims it deleted.
func (s *Store) Expire(ctx context.Context, limit int) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM control.dedup_claims WHERE ctid = ANY (ARRAY(
		SELECT ctid FROM control.dedup_claims WHERE expires_at <= now() LIMIT $1))`, limit)
	if err != nil {
		return 0, fmt.Errorf("deleting expired dedup claims: %w", err)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM control.dedup_backfills WHERE done_at < now() - $1::interval`, s.window); err != nil {
		return 0, fmt.Errorf("deleting old dedup backfill records: %w", err)
	}
	return tag.RowsAffected(), nil
}
