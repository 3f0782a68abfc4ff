package rosters

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// Plan is what an upload does, decided under the district's roster lock, which it holds until Commit
// or Rollback.
type Plan struct {
	ID      string
	Upload  *Upload
	Produce []int      // indexes of the items sent, in order
	Missing []Missing  // records bulk files lack, sent as tombstones after the items
	Held    []HeldItem // items held until the entities they reference arrive
	// Hold is set when the upload passes a threshold: Commit stores it whole and sends nothing.
	Hold  *Hold
	Files []FileCounts
	// Released are earlier held records that this upload completes (sent after everything else), and
	// Expired those whose bound passed.
	Released, Expired int

	tx       pgx.Tx
	now      time.Time
	schema   string
	version  int64
	settings Settings
	released []heldRef
	expired  []heldRef
}

// HeldItem is an item held for the references it lacks.
type HeldItem struct {
	Index   int
	Missing []Ref
}

// heldRef is a stored held record.
type heldRef struct {
	uploadID  string
	seq       int
	sourceID  string
	entity    string
	sourcedID string
	hash      []byte
	person    string
	missing   []Ref
	key       []byte
	value     []byte
}

// Plan compares the upload with the source's ledger under the district's roster lock and says what it
// does. The caller encodes what it lists and calls Commit, or Rollback.
func (s *Store) Plan(ctx context.Context, up *Upload) (p *Plan, err error) {
	tx, schema, err := s.begin(ctx, up.TenantID)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	p = &Plan{ID: newID(), Upload: up, tx: tx, schema: schema, now: s.now()}
	if p.settings, err = settings(ctx, tx, schema); err != nil {
		return nil, fmt.Errorf("reading roster settings: %w", err)
	}
	if p.version, err = sourceVersion(ctx, tx, schema, up.SourceID); err != nil {
		return nil, err
	}
	ledger, err := loadLedger(ctx, tx, schema, up.SourceID, sortedEntities(up))
	if err != nil {
		return nil, err
	}
	held, err := p.holdReferences(ctx)
	if err != nil {
		return nil, err
	}
	p.compare(ledger, held)
	if p.Hold != nil {
		return p, nil
	}
	produced := map[Ref]bool{}
	for _, i := range p.Produce {
		if it := up.Items[i]; it.Active {
			produced[Ref{it.Entity, it.SourcedID}] = true
		}
	}
	if err := p.release(ctx, produced); err != nil {
		return nil, err
	}
	return p, nil
}

func sourceVersion(ctx context.Context, tx pgx.Tx, schema, source string) (int64, error) {
	var v int64
	err := tx.QueryRow(ctx, `SELECT version FROM `+pgx.Identifier{schema, "roster_sources"}.Sanitize()+` WHERE source_id = $1`, source).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading the roster source's version: %w", err)
	}
	return v, nil
}

// holdReferences finds the items whose references are neither in the ledger nor among the upload's own
// items that are not held themselves.
func (p *Plan) holdReferences(ctx context.Context) (map[int][]Ref, error) {
	items := p.Upload.Items
	inUpload := map[Ref]int{}
	need := map[Ref]bool{}
	for i, it := range items {
		if it.Active {
			inUpload[Ref{it.Entity, it.SourcedID}] = i
		}
	}
	for _, it := range items {
		if !it.Active {
			continue
		}
		for _, r := range it.Refs {
			if _, ok := inUpload[r]; !ok {
				need[r] = true
			}
		}
	}
	inLedger, err := known(ctx, p.tx, p.schema, need)
	if err != nil {
		return nil, err
	}
	held := map[int][]Ref{}
	for changed := true; changed; { // an item that references a held item is held too
		changed = false
		for i, it := range items {
			if !it.Active || held[i] != nil {
				continue
			}
			var missing []Ref
			for _, r := range it.Refs {
				j, ok := inUpload[r]
				if inLedger[r] || ok && held[j] == nil {
					continue
				}
				missing = append(missing, r)
			}
			if missing != nil {
				held[i] = missing
				changed = true
			}
		}
	}
	return held, nil
}

// compare classifies every item against the ledger, lists the tombstones of bulk files, counts per file
// and checks the thresholds.
func (p *Plan) compare(ledger map[ledgerKey]ledgerRow, held map[int][]Ref) {
	up := p.Upload
	files := make(map[string]*FileCounts, len(up.Files))
	bulkFile := map[string]string{} // entity -> the bulk file that speaks for it
	present := map[ledgerKey]bool{}
	for _, f := range up.Files {
		files[f.Name] = &FileCounts{File: f.Name, Entity: f.Entity, Mode: f.Mode, Received: f.Received, Rejected: f.Rejected}
		if f.Mode == Bulk {
			bulkFile[f.Entity] = f.Name
		}
		for _, id := range f.Present {
			present[ledgerKey{f.Entity, id}] = true
		}
	}
	active := map[string]int{}
	for k, r := range ledger {
		if r.active {
			active[k.entity]++
		}
	}
	deactivated, changed := map[string]int{}, map[string]int{}
	for i, it := range up.Items {
		k := ledgerKey{it.Entity, it.SourcedID}
		present[k] = true
		fc := files[it.File]
		if fc == nil { // an item of a file the caller did not list: count it under its own name
			fc = &FileCounts{File: it.File, Entity: it.Entity, Mode: Delta}
			files[it.File] = fc
		}
		fc.Accepted++
		if missing := held[i]; missing != nil {
			fc.Held++
			p.Held = append(p.Held, HeldItem{Index: i, Missing: missing})
			continue
		}
		row, had := ledger[k]
		switch {
		case it.Active && (!had || !row.active):
			fc.Added++
		case it.Active && !sameHash(row.hash, it.Hash):
			fc.Changed++
			changed[it.Entity]++
		case !it.Active && had && row.active:
			fc.Deactivated++
			deactivated[it.Entity]++
		default:
			fc.Unchanged++
			if had && row.active == it.Active && (!it.Active || sameHash(row.hash, it.Hash)) {
				continue // nothing to send: the ledger holds this record as it is
			}
		}
		p.Produce = append(p.Produce, i)
	}
	for entity, name := range bulkFile {
		fc := files[name]
		for _, k := range sortedKeys(ledger, entity) {
			if row := ledger[k]; row.active && !present[k] {
				p.Missing = append(p.Missing, Missing{Entity: entity, SourcedID: k.sourcedID, Person: row.person})
				fc.Deactivated++
				deactivated[entity]++
			}
		}
	}
	// Files in the order given, then any the items named.
	seen := map[string]bool{}
	for _, f := range up.Files {
		if !seen[f.Name] {
			seen[f.Name] = true
			fc := files[f.Name]
			fc.LedgerActive = active[fc.Entity]
			p.Files = append(p.Files, *fc)
		}
	}
	for _, it := range up.Items {
		if !seen[it.File] {
			seen[it.File] = true
			fc := files[it.File]
			fc.LedgerActive = active[fc.Entity]
			p.Files = append(p.Files, *fc)
		}
	}
	p.Hold = p.settings.check(active, deactivated, changed)
}

// check returns the first entity (in name order) over a threshold, or nil.
func (st Settings) check(active, deactivated, changed map[string]int) *Hold {
	var entities []string
	for e := range active {
		entities = append(entities, e)
	}
	slices.Sort(entities)
	for _, e := range entities {
		n := active[e]
		if n == 0 || n < st.MinLedgerRows {
			continue
		}
		h := &Hold{Entity: e, Active: n, Deactivated: deactivated[e], Changed: changed[e]}
		switch {
		case float64(h.Deactivated)*100 > st.MaxDeletedPct*float64(n):
			h.Reason = fmt.Sprintf("would deactivate %d of %d active %s (%.1f%%), over the district's %.0f%%",
				h.Deactivated, n, e, 100*float64(h.Deactivated)/float64(n), st.MaxDeletedPct)
		case float64(h.Changed)*100 > st.MaxChangedPct*float64(n):
			h.Reason = fmt.Sprintf("would change %d of %d active %s (%.1f%%), over the district's %.0f%%",
				h.Changed, n, e, 100*float64(h.Changed)/float64(n), st.MaxChangedPct)
		default:
			continue
		}
		return h
	}
	return nil
}

// sortedKeys returns the ledger's keys of the entity in sourcedId order, so tombstones go out in a
// stable order.
func sortedKeys(ledger map[ledgerKey]ledgerRow, entity string) []ledgerKey {
	var out []ledgerKey
	for k := range ledger {
		if k.entity == entity {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b ledgerKey) int {
		if a.sourcedID < b.sourcedID {
			return -1
		}
		if a.sourcedID > b.sourcedID {
			return 1
		}
		return 0
	})
	return out
}

// release finds the open held records (of any source of the district) that what the ledger holds plus
// produced complete, to be sent after the upload's own records, and those whose bound passed.
func (p *Plan) release(ctx context.Context, produced map[Ref]bool) error {
	rows, err := p.tx.Query(ctx, `SELECT upload_id::text, seq, source_id, entity, sourced_id, hash, coalesce(person, ''), missing, key, value,
		expires_at < $1 FROM `+pgx.Identifier{p.schema, "roster_held_refs"}.Sanitize()+` WHERE status = 'open' ORDER BY held_at, upload_id, seq`, p.now)
	if err != nil {
		return fmt.Errorf("reading held references: %w", err)
	}
	var open []heldRef
	var expired []bool
	need := map[Ref]bool{}
	for rows.Next() {
		var h heldRef
		var missing []string
		var exp bool
		if err := rows.Scan(&h.uploadID, &h.seq, &h.sourceID, &h.entity, &h.sourcedID, &h.hash, &h.person, &missing, &h.key, &h.value, &exp); err != nil {
			rows.Close()
			return err
		}
		for _, m := range missing {
			r := ParseRef(m)
			h.missing = append(h.missing, r)
			if !produced[r] {
				need[r] = true
			}
		}
		open = append(open, h)
		expired = append(expired, exp)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(open) == 0 {
		return nil
	}
	inLedger, err := known(ctx, p.tx, p.schema, need)
	if err != nil {
		return err
	}
	done := make([]bool, len(open))
	for changed := true; changed; { // a released record may complete another
		changed = false
		for i, h := range open {
			if done[i] {
				continue
			}
			complete := true
			for _, r := range h.missing {
				if !produced[r] && !inLedger[r] {
					complete = false
					break
				}
			}
			if complete {
				done[i] = true
				changed = true
				p.released = append(p.released, h)
				produced[Ref{h.entity, h.sourcedID}] = true
			}
		}
	}
	for i, h := range open {
		if !done[i] && expired[i] {
			p.expired = append(p.expired, h)
		}
	}
	p.Released, p.Expired = len(p.released), len(p.expired)
	return nil
}

// Rollback gives up the plan: nothing is recorded and the lock is released.
func (p *Plan) Rollback(ctx context.Context) { _ = p.tx.Rollback(context.WithoutCancel(ctx)) }
