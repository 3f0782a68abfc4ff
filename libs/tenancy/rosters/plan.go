package rosters

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// Decision is what the import step does with one item.
type Decision int

// Decisions.
const (
	// Skip: the ledger holds the record as it is; nothing is sent.
	Skip Decision = iota
	// Send: the record goes to raw (or is stored with the upload, if the upload is held).
	Send
	// HoldRefs: the record waits for an entity it references (Import.Missing says which).
	HoldRefs
)

// Import compares an upload with the source's ledger as its records come, in chunks, under the
// district's roster lock (held until the plan Finish returns is committed or rolled back). Records
// must come in dependency order (an entity before the records that reference it), as a OneRoster CSV
// package's files are read.
type Import struct {
	p *Plan

	ledger map[ledgerKey]*ledgerRow // the source's rows of the upload's entities; seen marks those present
	loaded map[string]bool          // entities whose rows ledger holds
	added  map[Ref]bool             // referenceable records the upload makes active that the ledger lacked
	held   map[Ref]bool             // records held for references
	cache  map[Ref]bool             // references looked up in the ledger (every source)
	files  map[string]*FileCounts
	order  []string // file names, first seen first
	// deactivated and changed count, per entity, what the upload does to the source's active records.
	deactivated, changed map[string]int
	active               map[string]int // the source's active records per entity before the upload
}

// Plan is what an upload does, decided under the district's roster lock, which it holds until Commit
// or Rollback.
type Plan struct {
	ID     string
	Upload *Upload
	// Sent are the records sent, in order, then Missing: records bulk files lack, sent as tombstones.
	Sent    []Item
	Missing []Missing
	Held    []HeldItem // records held until the entities they reference arrive
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
	// ledgerFromPlan: the ledger takes Sent and Missing (besides what writeLedger is given).
	ledgerFromPlan bool
}

// HeldItem is a record held for the references it lacks.
type HeldItem struct {
	Item
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

// referenceable are the entities records reference.
var referenceable = map[string]bool{Orgs: true, AcademicSessions: true, Courses: true, Classes: true, Users: true, LineItems: true}

// Begin starts an import of up (its Items are ignored; its Files' entities are loaded from the ledger,
// and entities names more): it takes the district's roster lock and reads the source's ledger.
func (s *Store) Begin(ctx context.Context, up *Upload, entities ...string) (im *Import, err error) {
	tx, schema, err := s.begin(ctx, up.TenantID)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	p := &Plan{ID: newID(), Upload: up, tx: tx, schema: schema, now: s.now()}
	if p.settings, err = settings(ctx, tx, schema); err != nil {
		return nil, fmt.Errorf("reading roster settings: %w", err)
	}
	if p.version, err = sourceVersion(ctx, tx, schema, up.SourceID); err != nil {
		return nil, err
	}
	im = &Import{p: p, ledger: map[ledgerKey]*ledgerRow{}, loaded: map[string]bool{}, added: map[Ref]bool{}, held: map[Ref]bool{},
		cache: map[Ref]bool{}, files: map[string]*FileCounts{}, deactivated: map[string]int{}, changed: map[string]int{}, active: map[string]int{}}
	for _, f := range up.Files {
		entities = append(entities, f.Entity)
		im.file(f.Name, f.Entity, f.Mode)
	}
	if err := im.load(ctx, entities); err != nil {
		return nil, err
	}
	return im, nil
}

// load reads the source's ledger rows of the entities not read yet.
func (im *Import) load(ctx context.Context, entities []string) error {
	var todo []string
	for _, e := range entities {
		if !im.loaded[e] {
			im.loaded[e] = true
			todo = append(todo, e)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	rows, err := loadLedger(ctx, im.p.tx, im.p.schema, im.p.Upload.SourceID, todo)
	if err != nil {
		return err
	}
	for k, r := range rows {
		im.ledger[k] = r
		if r.active {
			im.active[k.entity]++
		}
	}
	return nil
}

// file returns the counts of a file, created on first use.
func (im *Import) file(name, entity string, mode Mode) *FileCounts {
	fc := im.files[name]
	if fc == nil {
		if mode == "" {
			mode = Delta
		}
		fc = &FileCounts{File: name, Entity: entity, Mode: mode}
		im.files[name] = fc
		im.order = append(im.order, name)
	}
	return fc
}

// Add decides what happens to each item (in the order given, after those of earlier calls); the items
// it holds are in the plan's Held, with the references each lacks.
func (im *Import) Add(ctx context.Context, items []Item) ([]Decision, error) {
	var entities []string
	for _, it := range items {
		if !im.loaded[it.Entity] {
			entities = append(entities, it.Entity)
		}
	}
	if err := im.load(ctx, entities); err != nil {
		return nil, err
	}
	if err := im.lookUp(ctx, items); err != nil {
		return nil, err
	}
	decisions := make([]Decision, len(items))
	for i, it := range items {
		k := ledgerKey{it.Entity, it.SourcedID}
		fc := im.file(it.File, it.Entity, "")
		fc.Accepted++
		if it.Active {
			var missing []Ref
			for _, r := range it.Refs {
				if !im.known(r) {
					missing = append(missing, r)
				}
			}
			if missing != nil {
				fc.Held++
				im.held[Ref{it.Entity, it.SourcedID}] = true
				decisions[i] = HoldRefs
				im.p.Held = append(im.p.Held, HeldItem{Item: it, Missing: missing})
				continue
			}
		}
		row := im.ledger[k]
		if row != nil {
			row.seen = true
		}
		had := row != nil
		switch {
		case it.Active && (!had || !row.active):
			fc.Added++
		case it.Active && !sameHash(row.hash, it.Hash):
			fc.Changed++
			im.changed[it.Entity]++
		case !it.Active && had && row.active:
			fc.Deactivated++
			im.deactivated[it.Entity]++
		default:
			fc.Unchanged++
		}
		if it.Active && referenceable[it.Entity] && (!had || !row.active) {
			im.added[Ref{it.Entity, it.SourcedID}] = true
		}
		if had && row.active == it.Active && (!it.Active || sameHash(row.hash, it.Hash)) {
			continue // Skip: the ledger holds this record as it is
		}
		decisions[i] = Send
		im.p.Sent = append(im.p.Sent, it)
	}
	return decisions, nil
}

// known reports whether a reference is satisfied: by the upload so far (unless held), or by an active
// record of the ledger (of any source).
func (im *Import) known(r Ref) bool {
	if im.held[r] {
		return false
	}
	if im.added[r] {
		return true
	}
	if row := im.ledger[ledgerKey{r.Entity, r.SourcedID}]; row != nil && row.active {
		return true
	}
	return im.cache[r]
}

// lookUp reads from the ledger, in one query, the references of items that neither the upload so far
// nor the source's loaded rows answer.
func (im *Import) lookUp(ctx context.Context, items []Item) error {
	need := map[Ref]bool{}
	for _, it := range items {
		if !it.Active {
			continue
		}
		for _, r := range it.Refs {
			if _, asked := im.cache[r]; asked || im.added[r] || im.held[r] {
				continue
			}
			if row := im.ledger[ledgerKey{r.Entity, r.SourcedID}]; row != nil && row.active {
				continue
			}
			need[r] = true
		}
	}
	found, err := knownRefs(ctx, im.p.tx, im.p.schema, need)
	if err != nil {
		return err
	}
	for r := range need {
		im.cache[r] = found[r]
	}
	return nil
}

// Refuse takes back items Add sent or held that cannot become records (too large for Kafka): each is
// counted as rejected instead, and its record as present (a bulk file's bad row does not deactivate it).
func (im *Import) Refuse(items []Item) {
	gone := map[ledgerKey]bool{}
	for _, it := range items {
		gone[ledgerKey{it.Entity, it.SourcedID}] = true
		fc := im.file(it.File, it.Entity, "")
		fc.Accepted--
		fc.Rejected++
		row := im.ledger[ledgerKey{it.Entity, it.SourcedID}]
		if row != nil {
			row.seen = true
		}
		switch {
		case im.held[Ref{it.Entity, it.SourcedID}]:
			fc.Held--
			delete(im.held, Ref{it.Entity, it.SourcedID})
		case it.Active && (row == nil || !row.active):
			fc.Added--
			delete(im.added, Ref{it.Entity, it.SourcedID})
		case it.Active:
			fc.Changed--
			im.changed[it.Entity]--
		case row != nil && row.active:
			fc.Deactivated--
			im.deactivated[it.Entity]--
		default:
			fc.Unchanged--
		}
	}
	im.p.Sent = slices.DeleteFunc(im.p.Sent, func(it Item) bool { return gone[ledgerKey{it.Entity, it.SourcedID}] })
	im.p.Held = slices.DeleteFunc(im.p.Held, func(h HeldItem) bool { return gone[ledgerKey{h.Entity, h.SourcedID}] })
}

// Finish adds the files' counts of rows read and rejected (their Present ids are not missing), lists
// what bulk files lack, checks the thresholds and finds the held records the upload completes.
func (im *Import) Finish(ctx context.Context, files []File) (*Plan, error) {
	p := im.p
	p.Upload.Files = files
	entities := make([]string, len(files))
	for i, f := range files {
		entities[i] = f.Entity
	}
	if err := im.load(ctx, entities); err != nil {
		return nil, err
	}
	bulk := map[string]string{} // entity -> the bulk file that speaks for it
	for _, f := range files {
		fc := im.file(f.Name, f.Entity, f.Mode)
		fc.Mode = f.Mode
		fc.Received = f.Received
		fc.Rejected += f.Rejected
		fc.Findings += f.Findings
		fc.Export, fc.Columns = f.Export, f.Columns
		if f.Mode == Bulk {
			bulk[f.Entity] = f.Name
		}
		for _, id := range f.Present {
			if row := im.ledger[ledgerKey{f.Entity, id}]; row != nil {
				row.seen = true
			}
		}
	}
	for _, entity := range deleteOrder {
		if bulk[entity] == "" {
			continue
		}
		fc := im.files[bulk[entity]]
		for _, k := range sortedKeys(im.ledger, entity) {
			if row := im.ledger[k]; row.active && !row.seen {
				p.Missing = append(p.Missing, Missing{Entity: entity, SourcedID: k.sourcedID, Person: row.person})
				fc.Deactivated++
				im.deactivated[entity]++
			}
		}
	}
	for _, name := range im.order {
		fc := im.files[name]
		if fc.Received < fc.Accepted+fc.Rejected { // items of a file the caller did not count
			fc.Received = fc.Accepted + fc.Rejected
		}
		fc.LedgerActive = im.active[fc.Entity]
		p.Files = append(p.Files, *fc)
	}
	p.Hold = p.settings.check(im.active, im.deactivated, im.changed)
	if p.Hold == nil {
		p.Hold = p.settings.gate(p.Files)
	}
	if p.Hold != nil {
		return p, nil
	}
	if err := p.release(ctx, im.known); err != nil {
		return nil, err
	}
	return p, nil
}

// deleteOrder is the order tombstones go out in: records before the entities they reference.
var deleteOrder = []string{Results, LineItems, Demographics, Enrollments, Users, Classes, Courses, AcademicSessions, Orgs}

// Plan imports a whole upload at once: Begin, Add of every item, Finish.
func (s *Store) Plan(ctx context.Context, up *Upload) (*Plan, error) {
	im, err := s.Begin(ctx, up)
	if err != nil {
		return nil, err
	}
	if _, err := im.Add(ctx, up.Items); err != nil {
		im.p.Rollback(ctx)
		return nil, err
	}
	p, err := im.Finish(ctx, up.Files)
	if err != nil {
		im.p.Rollback(ctx)
		return nil, err
	}
	return p, nil
}

func sourceVersion(ctx context.Context, tx pgx.Tx, schema, source string) (int64, error) {
	var v int64
	err := tx.QueryRow(ctx, `SELECT version FROM `+pgx.Identifier{schema, "import_sources"}.Sanitize()+` WHERE source_id = $1`, source).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading the roster source's version: %w", err)
	}
	return v, nil
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

// gate returns why the upload's quality holds it, or nil: an upload of at least MinUploadRows rows with
// more of them rejected, of its accepted records waiting for references, or findings per row than the
// district allows.
func (st Settings) gate(files []FileCounts) *Hold {
	var rows, accepted, rejected, held, findings int
	for _, f := range files {
		rows += f.Received
		accepted += f.Accepted
		rejected += f.Rejected
		held += f.Held
		findings += f.Findings
	}
	if rows == 0 || rows < st.MinUploadRows {
		return nil
	}
	pct := func(n, of int) float64 { return 100 * float64(n) / float64(max(of, 1)) }
	switch {
	case pct(rejected, rows) > st.MaxRejectedPct:
		return &Hold{Gate: "rejected", Reason: fmt.Sprintf("rejected %d of %d rows (%.1f%%), over the district's %g%%",
			rejected, rows, pct(rejected, rows), st.MaxRejectedPct)}
	case pct(held, accepted) > st.MaxHeldRefsPct:
		return &Hold{Gate: "held_references", Reason: fmt.Sprintf("%d of %d records (%.1f%%) reference entities not known, over the district's %g%%",
			held, accepted, pct(held, accepted), st.MaxHeldRefsPct)}
	case st.MaxFindingsPct != nil && pct(findings, rows) > *st.MaxFindingsPct:
		return &Hold{Gate: "findings", Reason: fmt.Sprintf("%d data-quality findings in %d rows (%.1f per hundred), over the district's %g",
			findings, rows, pct(findings, rows), *st.MaxFindingsPct)}
	}
	return nil
}

// sortedKeys returns the ledger's keys of the entity in sourcedId order, so tombstones go out in a
// stable order.
func sortedKeys(ledger map[ledgerKey]*ledgerRow, entity string) []ledgerKey {
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

// release finds the open held records (of any source of the district) that known references (the
// upload's and the ledger's) complete, to be sent after the upload's own records, and those whose bound
// passed.
func (p *Plan) release(ctx context.Context, known func(Ref) bool) error {
	rows, err := p.tx.Query(ctx, `SELECT upload_id::text, seq, source_id, entity, sourced_id, hash, coalesce(person, ''), missing, key, value,
		expires_at < $1 FROM `+pgx.Identifier{p.schema, "import_held_refs"}.Sanitize()+` WHERE status = 'open' ORDER BY held_at, upload_id, seq`, p.now)
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
			if !known(r) {
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
	inLedger, err := knownRefs(ctx, p.tx, p.schema, need)
	if err != nil {
		return err
	}
	released := map[Ref]bool{}
	done := make([]bool, len(open))
	for changed := true; changed; { // a released record may complete another
		changed = false
		for i, h := range open {
			if done[i] {
				continue
			}
			complete := true
			for _, r := range h.missing {
				if !known(r) && !inLedger[r] && !released[r] {
					complete = false
					break
				}
			}
			if complete {
				done[i] = true
				changed = true
				p.released = append(p.released, h)
				released[Ref{h.entity, h.sourcedID}] = true
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

// Rollback gives up the import.
func (im *Import) Rollback(ctx context.Context) { im.p.Rollback(ctx) }
