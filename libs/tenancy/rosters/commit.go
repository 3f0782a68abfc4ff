package rosters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edtech-analytics/platform/libs/tenancy"
)

// Result is what an upload did.
type Result struct {
	ID       string       `json:"id"`
	Status   string       `json:"status"`
	Reason   string       `json:"reason,omitempty"`
	Hold     *Hold        `json:"hold,omitempty"`
	Sent     int          `json:"sent"`     // records produced to raw, tombstones and released records included
	Missing  int          `json:"missing"`  // tombstones of records bulk files lacked
	Held     int          `json:"held"`     // records held for references
	Released int          `json:"released"` // earlier held records this upload completed
	Expired  int          `json:"expired"`
	Files    []FileCounts `json:"files"`
}

// ledgerWrite is one row the ledger takes.
type ledgerWrite struct {
	source, entity, sourcedID string
	active                    bool
	hash                      []byte
	person                    string
}

// Stream sends an upload's records to raw in order: its own (Plan.Sent, then the tombstones of
// Plan.Missing), then released (earlier held records this upload completes), and returns once Kafka
// acknowledged every one, with how many it sent and the encoded records of Plan.Held, in order.
type Stream func(ctx context.Context, released []Encoded) (sent int, held []Encoded, err error)

// Spool hands over the encoded records of a held upload in order, Plan.Sent then Plan.Missing, in
// chunks, calling put for each, and returns those of Plan.Held; Store keeps them with the upload.
type Spool func(ctx context.Context, put func([]Encoded) error) (held []Encoded, err error)

// Commit finishes the plan with every record already encoded: enc holds those of Sent then Missing,
// held those of Held. A held upload is stored whole and nothing is sent; otherwise the records (and the
// released ones after them) are sent with produce. See Apply and Store, which take them as a stream.
func (p *Plan) Commit(ctx context.Context, by string, produce Produce, enc []Encoded, held []Encoded) (*Result, error) {
	if len(enc) != len(p.Sent)+len(p.Missing) || len(held) != len(p.Held) {
		defer p.Rollback(ctx)
		return nil, fmt.Errorf("roster upload %s: %d records encoded for %d sent and %d tombstones, %d for %d held",
			p.ID, len(enc), len(p.Sent), len(p.Missing), len(held), len(p.Held))
	}
	if p.Hold != nil {
		return p.Store(ctx, func(ctx context.Context, put func([]Encoded) error) ([]Encoded, error) { return held, put(enc) })
	}
	return p.Apply(ctx, by, func(ctx context.Context, released []Encoded) (int, []Encoded, error) {
		all := append(append([]Encoded{}, enc...), released...)
		if len(all) == 0 {
			return 0, held, nil
		}
		return len(all), held, produce(ctx, all)
	})
}

// Apply sends the upload with stream and records it: only once Kafka acknowledged every record does the
// ledger take the sent records and the tombstones, the records held for references (as stream returns
// them) their rows, and the source its next version, in one commit with the upload's counts. The
// ledger's rows are written while stream sends. The plan's lock is released.
func (p *Plan) Apply(ctx context.Context, by string, stream Stream) (*Result, error) {
	defer p.Rollback(ctx) // a no-op after the commit
	if p.Hold != nil {
		return nil, fmt.Errorf("roster upload %s is over a threshold (%s): store it, do not apply it", p.ID, p.Hold.Reason)
	}
	up := p.Upload
	p.ledgerFromPlan = true // the ledger takes Sent and Missing
	var writes []ledgerWrite
	holds := func(held []Encoded) ([]heldRef, error) {
		if len(held) != len(p.Held) {
			return nil, fmt.Errorf("roster upload %s: %d records encoded for %d held", p.ID, len(held), len(p.Held))
		}
		out := make([]heldRef, len(p.Held))
		for j, h := range p.Held {
			out[j] = heldRef{uploadID: p.ID, seq: j, sourceID: up.SourceID, entity: h.Entity, sourcedID: h.SourcedID, hash: h.Hash,
				person: h.Person, missing: h.Missing, key: held[j].Key, value: held[j].Value}
		}
		return out, nil
	}
	sent, err := p.send(ctx, stream, writes, holds, StatusApplied, "", by)
	if err != nil {
		return nil, err
	}
	return &Result{ID: p.ID, Status: StatusApplied, Files: p.Files, Missing: len(p.Missing), Held: len(p.Held), Sent: sent,
		Released: p.Released, Expired: p.Expired}, nil
}

// Store keeps a held upload whole, nothing sent: its records as spool hands them over (Sent, then
// Missing, in order), then those held for references (as spool returns them). The plan's lock is
// released.
func (p *Plan) Store(ctx context.Context, spool Spool) (*Result, error) {
	defer p.Rollback(ctx) // a no-op after the commit
	if p.Hold == nil {
		return nil, fmt.Errorf("roster upload %s is within the thresholds: apply it", p.ID)
	}
	if err := p.insertUpload(ctx, StatusHeld, p.Hold.Reason); err != nil {
		return nil, err
	}
	if err := p.storeHeldUpload(ctx, spool); err != nil {
		return nil, err
	}
	if err := p.tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("storing held roster upload %s: %w", p.ID, err)
	}
	return &Result{ID: p.ID, Status: StatusHeld, Reason: p.Hold.Reason, Hold: p.Hold, Files: p.Files, Missing: len(p.Missing), Held: len(p.Held)}, nil
}

// send streams the records and records the ledger's writes, the new holds, the released and expired
// ones, the source's next version and the upload's status, in one commit once stream returned.
func (p *Plan) send(ctx context.Context, stream Stream, writes []ledgerWrite, holds func([]Encoded) ([]heldRef, error), status, reason, by string) (int, error) {
	released := make([]Encoded, len(p.released))
	for i, h := range p.released {
		released[i] = Encoded{Key: h.key, Value: h.value}
		writes = append(writes, ledgerWrite{h.sourceID, h.entity, h.sourcedID, true, h.hash, h.person})
	}
	// Kafka takes the records while the ledger's rows are written; the transaction commits only once
	// Kafka acknowledged every record.
	type outcome struct {
		n    int
		held []Encoded
		err  error
	}
	produced := make(chan outcome, 1)
	go func() {
		n, held, err := stream(ctx, released)
		produced <- outcome{n, held, err}
	}()
	fail := func(err error) (int, error) {
		<-produced // nothing is answered while records are still on their way
		return 0, err
	}
	if err := p.writeLedger(ctx, writes); err != nil {
		return fail(err)
	}
	if err := p.settle(ctx); err != nil {
		return fail(err)
	}
	if _, err := p.tx.Exec(ctx, `INSERT INTO `+p.table("import_sources")+` (source_id, version) VALUES ($1, 1)
		ON CONFLICT (source_id) DO UPDATE SET version = import_sources.version + 1`, p.Upload.SourceID); err != nil {
		return fail(fmt.Errorf("bumping the roster source's version: %w", err))
	}
	if status == StatusApplied {
		if err := p.insertUpload(ctx, status, reason); err != nil {
			return fail(err)
		}
	} else if _, err := p.tx.Exec(ctx, `UPDATE `+p.table("import_uploads")+` SET status = $2, decided_at = now(), decided_by = $3 WHERE id = $1`,
		p.ID, status, by); err != nil {
		return fail(err)
	}
	out := <-produced
	if out.err != nil {
		return 0, fmt.Errorf("sending roster upload %s: %w", p.ID, out.err)
	}
	refs, err := holds(out.held)
	if err != nil {
		return 0, err
	}
	if err := p.storeHolds(ctx, refs); err != nil {
		return 0, err
	}
	if err := p.tx.Commit(ctx); err != nil {
		// What was sent stays sent; a retried upload sends it again under the same ids.
		return 0, fmt.Errorf("recording roster upload %s: %w", p.ID, err)
	}
	return out.n, nil
}

func (p *Plan) table(name string) string { return pgx.Identifier{p.schema, name}.Sanitize() }

func (p *Plan) insertUpload(ctx context.Context, status, reason string) error {
	up := p.Upload
	var r *string
	if reason != "" {
		r = &reason
	}
	findings := up.Findings
	if findings == nil {
		findings = json.RawMessage("[]")
	}
	if _, err := p.tx.Exec(ctx, `INSERT INTO `+p.table("import_uploads")+` (id, source_id, kind, received_at, status, reason, ledger_version, findings)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, p.ID, up.SourceID, up.Kind, up.ReceivedAt, status, r, p.version, string(findings)); err != nil {
		return fmt.Errorf("recording roster upload: %w", err)
	}
	rows := make([][]any, len(p.Files))
	for i, f := range p.Files {
		var export *string
		if f.Export != "" {
			export = &f.Export
		}
		rows[i] = []any{p.ID, f.File, f.Entity, string(f.Mode), f.Received, f.Accepted, f.Rejected, f.Held, f.Findings, f.Added, f.Changed,
			f.Unchanged, f.Deactivated, f.LedgerActive, export, f.Columns}
	}
	if _, err := p.tx.CopyFrom(ctx, pgx.Identifier{p.schema, "import_upload_files"}, []string{"upload_id", "file", "entity", "mode", "received",
		"accepted", "rejected", "held", "findings", "added", "changed", "unchanged", "deactivated", "ledger_active", "export", "columns"},
		pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("recording roster upload files: %w", err)
	}
	return nil
}

// storeHeldUpload stores a held upload's records as spool hands them over (Sent, then Missing), then
// those held for references, with COPY: the spool runs in its own goroutine and its chunks are copied
// as they come.
func (p *Plan) storeHeldUpload(ctx context.Context, spool Spool) error {
	chunks := make(chan []Encoded, 1)
	type outcome struct {
		held []Encoded
		err  error
	}
	spooled := make(chan outcome, 1)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		held, err := spool(sctx, func(enc []Encoded) error {
			select {
			case chunks <- enc:
				return nil
			case <-sctx.Done():
				return sctx.Err()
			}
		})
		close(chunks)
		spooled <- outcome{held, err}
	}()
	var held []Encoded
	var spoolErr error
	gotHeld := false
	total := len(p.Sent) + len(p.Missing)
	var cur []Encoded
	seq, h := 0, 0
	next := func() ([]any, bool) {
		for len(cur) == 0 && seq < total {
			c, ok := <-chunks
			if !ok {
				return nil, false
			}
			cur = c
		}
		switch {
		case seq < len(p.Sent):
			it, e := p.Sent[seq], cur[0]
			cur = cur[1:]
			seq++
			return []any{p.ID, seq - 1, it.Entity, it.SourcedID, it.Active, it.Hash, nullable(it.Person), nil, e.Key, e.Value}, true
		case seq < total:
			m, e := p.Missing[seq-len(p.Sent)], cur[0]
			cur = cur[1:]
			seq++
			return []any{p.ID, seq - 1, m.Entity, m.SourcedID, false, nil, nullable(m.Person), nil, e.Key, e.Value}, true
		case h < len(p.Held):
			if !gotHeld {
				for range chunks { // the spool is done once it closed chunks
				}
				o := <-spooled
				held, spoolErr, gotHeld = o.held, o.err, true
				if spoolErr != nil || len(held) != len(p.Held) {
					return nil, false
				}
			}
			it, e := p.Held[h], held[h]
			h++
			return []any{p.ID, total + h - 1, it.Entity, it.SourcedID, it.Active, it.Hash, nullable(it.Person), refStrings(it.Missing), e.Key, e.Value}, true
		}
		return nil, false
	}
	var row []any
	src := pgx.CopyFromFunc(func() ([]any, error) {
		r, ok := next()
		if !ok {
			return nil, nil
		}
		row = r
		return row, nil
	})
	n, err := p.tx.CopyFrom(ctx, pgx.Identifier{p.schema, "import_upload_records"}, []string{"upload_id", "seq", "entity", "sourced_id",
		"active", "hash", "person", "missing", "key", "value"}, src)
	if !gotHeld {
		cancel()
		for range chunks {
		}
		o := <-spooled
		held, spoolErr = o.held, o.err
	}
	if spoolErr != nil {
		return fmt.Errorf("storing the records of held roster upload %s: %w", p.ID, spoolErr)
	}
	if err != nil {
		return fmt.Errorf("storing the records of held roster upload %s: %w", p.ID, err)
	}
	if want := int64(total + len(p.Held)); n != want {
		return fmt.Errorf("storing the records of held roster upload %s: %d records stored, %d expected", p.ID, n, want)
	}
	return nil
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func refStrings(refs []Ref) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = r.String()
	}
	return out
}

// writeLedger upserts the rows, through COPY into a temporary table. A row of the empty source (rostered
// before the ledger) for the same record is claimed: deleted.
func (p *Plan) writeLedger(ctx context.Context, writes []ledgerWrite) error {
	n := len(writes)
	if p.ledgerFromPlan {
		n += len(p.Sent) + len(p.Missing)
	}
	if n == 0 {
		return nil
	}
	if _, err := p.tx.Exec(ctx, `CREATE TEMPORARY TABLE import_ledger_in (source_id text, entity text, sourced_id text, active boolean,
		hash bytea, person text) ON COMMIT DROP`); err != nil {
		return err
	}
	// The rows are made as COPY takes them: the plan's records, then writes.
	i := 0
	row := make([]any, 6)
	source := p.Upload.SourceID
	next := func() ([]any, error) {
		switch j := i; {
		case p.ledgerFromPlan && j < len(p.Sent):
			it := p.Sent[j]
			row[0], row[1], row[2], row[3], row[4], row[5] = source, it.Entity, it.SourcedID, it.Active, it.Hash, nullable(it.Person)
		case p.ledgerFromPlan && j < len(p.Sent)+len(p.Missing):
			m := p.Missing[j-len(p.Sent)]
			row[0], row[1], row[2], row[3], row[4], row[5] = source, m.Entity, m.SourcedID, false, nil, nullable(m.Person)
		default:
			if p.ledgerFromPlan {
				j -= len(p.Sent) + len(p.Missing)
			}
			if j >= len(writes) {
				return nil, nil
			}
			w := writes[j]
			row[0], row[1], row[2], row[3], row[4], row[5] = w.source, w.entity, w.sourcedID, w.active, w.hash, nullable(w.person)
		}
		i++
		return row, nil
	}
	if _, err := p.tx.CopyFrom(ctx, pgx.Identifier{"import_ledger_in"}, []string{"source_id", "entity", "sourced_id", "active", "hash", "person"},
		pgx.CopyFromFunc(next)); err != nil {
		return fmt.Errorf("writing the roster ledger: %w", err)
	}
	ledger := p.table("import_ledger")
	if _, err := p.tx.Exec(ctx, `INSERT INTO `+ledger+` AS l (source_id, entity, sourced_id, active, hash, person, upload_id, updated_at)
		SELECT DISTINCT ON (source_id, entity, sourced_id) source_id, entity, sourced_id, active, hash, person, $1::uuid, now() FROM import_ledger_in
		ON CONFLICT (source_id, entity, sourced_id) DO UPDATE SET active = excluded.active, hash = excluded.hash,
			person = coalesce(excluded.person, l.person), upload_id = excluded.upload_id, updated_at = excluded.updated_at`, p.ID); err != nil {
		return fmt.Errorf("writing the roster ledger: %w", err)
	}
	if _, err := p.tx.Exec(ctx, `DELETE FROM `+ledger+` l USING import_ledger_in i
		WHERE l.source_id = '' AND i.source_id <> '' AND l.entity = i.entity AND l.sourced_id = i.sourced_id`); err != nil {
		return fmt.Errorf("claiming ledger rows of before the ledger: %w", err)
	}
	return nil
}

// storeHolds stores records held for references.
func (p *Plan) storeHolds(ctx context.Context, holds []heldRef) error {
	if len(holds) == 0 {
		return nil
	}
	now := p.now
	rows := make([][]any, len(holds))
	for i, h := range holds {
		rows[i] = []any{h.uploadID, h.seq, h.sourceID, h.entity, h.sourcedID, h.hash, nullable(h.person), refStrings(h.missing), h.key, h.value,
			now, now.Add(p.settings.HoldRefsFor)}
	}
	if _, err := p.tx.CopyFrom(ctx, pgx.Identifier{p.schema, "import_held_refs"}, []string{"upload_id", "seq", "source_id", "entity", "sourced_id",
		"hash", "person", "missing", "key", "value", "held_at", "expires_at"}, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("storing held references: %w", err)
	}
	return nil
}

// settle marks the released and expired held records.
func (p *Plan) settle(ctx context.Context) error {
	for _, set := range []struct {
		status string
		refs   []heldRef
	}{{RefReleased, p.released}, {RefExpired, p.expired}} {
		if len(set.refs) == 0 {
			continue
		}
		ids := make([]string, len(set.refs))
		seqs := make([]int32, len(set.refs))
		for i, h := range set.refs {
			ids[i], seqs[i] = h.uploadID, int32(h.seq)
		}
		if _, err := p.tx.Exec(ctx, `UPDATE `+p.table("import_held_refs")+` h SET status = $3, decided_at = now()
			FROM unnest($1::uuid[], $2::int[]) AS q(upload_id, seq) WHERE h.upload_id = q.upload_id AND h.seq = q.seq`, ids, seqs, set.status); err != nil {
			return fmt.Errorf("marking held references %s: %w", set.status, err)
		}
	}
	return nil
}

// Approve applies a held upload as it was compared, if the source's ledger has not changed since:
// its records are sent, the ledger takes them, and earlier held records it completes are released.
// When the ledger changed, the upload is marked superseded and ErrSuperseded returned.
func (s *Store) Approve(ctx context.Context, tenantID, uploadID, by string, produce Produce) (*Result, error) {
	p, source, err := s.decide(ctx, tenantID, uploadID)
	if err != nil {
		return nil, err
	}
	defer p.Rollback(ctx)
	version, err := sourceVersion(ctx, p.tx, p.schema, source)
	if err != nil {
		return nil, err
	}
	if version != p.version {
		if _, err := p.tx.Exec(ctx, `UPDATE `+p.table("import_uploads")+` SET status = $2, decided_at = now(), decided_by = $3,
			reason = coalesce(reason || '; ', '') || 'superseded: the source sent another upload after it' WHERE id = $1`, uploadID, StatusSuperseded, by); err != nil {
			return nil, err
		}
		if err := p.deleteRecords(ctx); err != nil {
			return nil, err
		}
		if err := p.tx.Commit(ctx); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: upload %s was compared with version %d of source %s's ledger, which is now at %d", ErrSuperseded, uploadID, p.version, source, version)
	}
	rows, err := p.tx.Query(ctx, `SELECT seq, entity, sourced_id, active, hash, coalesce(person, ''), missing, key, value FROM `+
		p.table("import_upload_records")+` WHERE upload_id = $1 ORDER BY seq`, uploadID)
	if err != nil {
		return nil, err
	}
	var recs []Encoded
	var writes []ledgerWrite
	var holds []heldRef
	produced := map[Ref]bool{}
	inLedger := func(r Ref) bool { return produced[r] }
	for rows.Next() {
		var h heldRef
		var active bool
		var missing []string
		if err := rows.Scan(&h.seq, &h.entity, &h.sourcedID, &active, &h.hash, &h.person, &missing, &h.key, &h.value); err != nil {
			rows.Close()
			return nil, err
		}
		if missing != nil {
			h.uploadID, h.sourceID = uploadID, source
			for _, m := range missing {
				h.missing = append(h.missing, ParseRef(m))
			}
			h.seq = len(holds)
			holds = append(holds, h)
			continue
		}
		recs = append(recs, Encoded{Key: h.key, Value: h.value})
		writes = append(writes, ledgerWrite{source, h.entity, h.sourcedID, active, h.hash, h.person})
		if active {
			produced[Ref{h.entity, h.sourcedID}] = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// The upload's records held for references are compared again: what other sources sent while it
	// waited may complete them.
	need := map[Ref]bool{}
	for _, h := range holds {
		for _, r := range h.missing {
			if !produced[r] {
				need[r] = true
			}
		}
	}
	known, err := knownRefs(ctx, p.tx, p.schema, need)
	if err != nil {
		return nil, err
	}
	for changed := true; changed; { // a record sent may complete another
		changed = false
		holds = slices.DeleteFunc(holds, func(h heldRef) bool {
			for _, r := range h.missing {
				if !produced[r] && !known[r] {
					return false
				}
			}
			recs = append(recs, Encoded{Key: h.key, Value: h.value})
			writes = append(writes, ledgerWrite{source, h.entity, h.sourcedID, true, h.hash, h.person})
			produced[Ref{h.entity, h.sourcedID}], changed = true, true
			return true
		})
	}
	for i := range holds {
		holds[i].seq = i
	}
	if err := p.release(ctx, inLedger); err != nil {
		return nil, err
	}
	if err := p.deleteRecords(ctx); err != nil {
		return nil, err
	}
	sent, err := p.send(ctx, func(ctx context.Context, released []Encoded) (int, []Encoded, error) {
		all := append(recs, released...)
		if len(all) == 0 {
			return 0, nil, nil
		}
		return len(all), nil, produce(ctx, all)
	}, writes, func([]Encoded) ([]heldRef, error) { return holds, nil }, StatusApproved, "", by)
	if err != nil {
		return nil, err
	}
	return &Result{ID: uploadID, Status: StatusApproved, Sent: sent, Held: len(holds), Released: p.Released, Expired: p.Expired}, nil
}

// Reject discards a held upload: nothing of it is sent.
func (s *Store) Reject(ctx context.Context, tenantID, uploadID, by string) error {
	p, _, err := s.decide(ctx, tenantID, uploadID)
	if err != nil {
		return err
	}
	defer p.Rollback(ctx)
	if _, err := p.tx.Exec(ctx, `UPDATE `+p.table("import_uploads")+` SET status = $2, decided_at = now(), decided_by = $3 WHERE id = $1`,
		uploadID, StatusRejected, by); err != nil {
		return err
	}
	if err := p.deleteRecords(ctx); err != nil {
		return err
	}
	return p.tx.Commit(ctx)
}

// decide opens a plan over a held upload, under the district's roster lock.
func (s *Store) decide(ctx context.Context, tenantID, uploadID string) (*Plan, string, error) {
	tx, schema, err := s.begin(ctx, tenantID)
	if err != nil {
		return nil, "", err
	}
	p := &Plan{ID: uploadID, tx: tx, schema: schema, now: s.now()}
	var source, status string
	err = tx.QueryRow(ctx, `SELECT source_id, status, ledger_version FROM `+p.table("import_uploads")+` WHERE id::text = $1`, uploadID).
		Scan(&source, &status, &p.version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		err = fmt.Errorf("%w: %s in district %s", ErrNotFound, uploadID, tenantID)
	case err == nil && status != StatusHeld:
		err = fmt.Errorf("%w: upload %s is %s", ErrNotHeld, uploadID, status)
	}
	if err == nil {
		p.settings, err = settings(ctx, tx, schema)
	}
	if err != nil {
		p.Rollback(ctx)
		return nil, "", err
	}
	p.Upload = &Upload{TenantID: tenantID, SourceID: source}
	return p, source, nil
}

func (p *Plan) deleteRecords(ctx context.Context) error {
	_, err := p.tx.Exec(ctx, `DELETE FROM `+p.table("import_upload_records")+` WHERE upload_id = $1`, p.ID)
	return err
}

// UploadInfo is a recorded upload.
type UploadInfo struct {
	ID         string          `json:"id"`
	SourceID   string          `json:"source_id"`
	Kind       string          `json:"kind"`
	ReceivedAt time.Time       `json:"received_at"`
	Status     string          `json:"status"`
	Reason     string          `json:"reason,omitempty"`
	DecidedAt  *time.Time      `json:"decided_at,omitempty"`
	DecidedBy  string          `json:"decided_by,omitempty"`
	Files      []FileCounts    `json:"files"`
	Findings   json.RawMessage `json:"findings,omitempty"`
}

// Uploads lists the district's uploads received since, newest first, at most limit.
func (s *Store) Uploads(ctx context.Context, tenantID string, since time.Time, limit int) ([]UploadInfo, error) {
	tx, schema, err := s.begin(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	rows, err := tx.Query(ctx, `SELECT id::text, source_id, kind, received_at, status, coalesce(reason, ''), decided_at, coalesce(decided_by, ''), findings
		FROM `+pgx.Identifier{schema, "import_uploads"}.Sanitize()+` WHERE received_at >= $1 ORDER BY received_at DESC, id LIMIT $2`, since, limit)
	if err != nil {
		return nil, err
	}
	var out []UploadInfo
	byID := map[string]int{}
	for rows.Next() {
		var u UploadInfo
		var findings []byte
		if err := rows.Scan(&u.ID, &u.SourceID, &u.Kind, &u.ReceivedAt, &u.Status, &u.Reason, &u.DecidedAt, &u.DecidedBy, &findings); err != nil {
			rows.Close()
			return nil, err
		}
		u.Files = []FileCounts{}
		if string(findings) != "[]" {
			u.Findings = findings
		}
		byID[u.ID] = len(out)
		out = append(out, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(out) == 0 {
		return out, err
	}
	ids := make([]string, 0, len(out))
	for _, u := range out {
		ids = append(ids, u.ID)
	}
	rows, err = tx.Query(ctx, `SELECT upload_id::text, file, entity, mode, received, accepted, rejected, held, findings, added, changed, unchanged, deactivated, ledger_active,
		coalesce(export, ''), columns
		FROM `+pgx.Identifier{schema, "import_upload_files"}.Sanitize()+` WHERE upload_id = ANY($1::uuid[]) ORDER BY upload_id, file`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var f FileCounts
		if err := rows.Scan(&id, &f.File, &f.Entity, &f.Mode, &f.Received, &f.Accepted, &f.Rejected, &f.Held, &f.Findings, &f.Added, &f.Changed, &f.Unchanged,
			&f.Deactivated, &f.LedgerActive, &f.Export, &f.Columns); err != nil {
			return nil, err
		}
		out[byID[id]].Files = append(out[byID[id]].Files, f)
	}
	return out, rows.Err()
}

// Find reports whether the district has the upload.
func (s *Store) Find(ctx context.Context, tenantID, uploadID string) (bool, error) {
	schema, err := tenancy.SchemaName(tenantID)
	if err != nil {
		return false, err
	}
	pool, err := s.pools.Pool(ctx, tenantID)
	if err != nil {
		return false, err
	}
	var found bool
	err = pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'import_uploads')`,
		schema).Scan(&found)
	if err != nil || !found {
		return false, err
	}
	err = pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+pgx.Identifier{schema, "import_uploads"}.Sanitize()+` WHERE id::text = $1)`, uploadID).Scan(&found)
	return found, err
}

// HeldRef is a record held for references, as the quality report shows it.
type HeldRef struct {
	UploadID  string    `json:"upload_id"`
	SourceID  string    `json:"source_id"`
	Entity    string    `json:"entity"`
	SourcedID string    `json:"sourced_id"`
	Missing   []string  `json:"missing"`
	HeldAt    time.Time `json:"held_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Status    string    `json:"status"`
}

// HeldRefs lists the district's held records that are open or expired, oldest first, at most limit.
func (s *Store) HeldRefs(ctx context.Context, tenantID string, limit int) ([]HeldRef, error) {
	tx, schema, err := s.begin(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	rows, err := tx.Query(ctx, `SELECT upload_id::text, source_id, entity, sourced_id, missing, held_at, expires_at,
		CASE WHEN status = 'open' AND expires_at < now() THEN 'expired' ELSE status END
		FROM `+pgx.Identifier{schema, "import_held_refs"}.Sanitize()+` WHERE status <> 'released' ORDER BY held_at, upload_id, seq LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (HeldRef, error) {
		var h HeldRef
		err := r.Scan(&h.UploadID, &h.SourceID, &h.Entity, &h.SourcedID, &h.Missing, &h.HeldAt, &h.ExpiresAt, &h.Status)
		return h, err
	})
}
