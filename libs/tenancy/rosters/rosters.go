// Package rosters is the roster import step: every roster upload (a OneRoster CSV package, a OneRoster
// JSON collection, a mapped SIS export) passes through it between decoding and raw. It keeps, in the
// district's schema, a ledger of what each source has sent and decides what of an upload goes on:
//
//   - Unchanged records are not sent again (a record is compared by the hash of its content without
//     dateLastModified), so a nightly bulk file costs what changed in it.
//   - A file a manifest marks bulk is the source's whole truth for its entity: a record the ledger holds
//     as active that the file lacks becomes a tombstone (status tobedeleted, naming the upload).
//   - Safety hold: an upload that would deactivate more than MaxDeletedPct, or change more than
//     MaxChangedPct, of a source's active records of any entity is held whole, nothing sent, until an
//     operator approves or rejects it (ctl roster approve|reject). The check applies to entities the
//     ledger holds at least MinLedgerRows active records of.
//   - References: an enrollment, class or result whose user, class, course, org, academic session or line
//     item is neither in the ledger (any source of the district) nor in the upload is held, not sent, and
//     released by the first later upload that brings the entity (or after approval of a held one); an
//     open hold expires after HoldRefsFor, which is a finding of the quality report.
//   - Every upload is recorded with its counts per file: rows received, accepted, rejected, held, and of
//     the accepted ones added, changed, unchanged and deactivated.
//
// Uploads of one district are applied one at a time (a transaction-scoped advisory lock), and the
// ledger changes only after Kafka acknowledged what was sent: a crash or a refused produce leaves the
// ledger as it was, so the retried upload sends the same records again (with the same event ids, which
// the enricher drops as retries).
package rosters

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/tenancy"
)

// OneRoster collections, the entity names of the ledger.
const (
	Orgs             = "orgs"
	AcademicSessions = "academicSessions"
	Courses          = "courses"
	Classes          = "classes"
	Users            = "users"
	Enrollments      = "enrollments"
	Demographics     = "demographics"
	LineItems        = "lineItems"
	Results          = "results"
)

// Mode is how a file speaks for its entity.
type Mode string

// Modes of a file.
const (
	// Bulk: the file is the source's whole truth for its entity.
	Bulk Mode = "bulk"
	// Delta: the file holds changes only.
	Delta Mode = "delta"
)

// Statuses of an upload.
const (
	StatusApplied    = "applied"
	StatusHeld       = "held"
	StatusApproved   = "approved"
	StatusRejected   = "rejected"
	StatusSuperseded = "superseded"
)

// Statuses of a held reference.
const (
	RefOpen     = "open"
	RefReleased = "released"
	RefExpired  = "expired"
)

// Errors callers branch on.
var (
	// ErrNotFound: no such upload in the district.
	ErrNotFound = errors.New("roster upload not found")
	// ErrNotHeld: the upload is not held (applied, or already decided).
	ErrNotHeld = errors.New("roster upload is not held")
	// ErrSuperseded: the source's ledger changed since the upload was held; it cannot be applied as it
	// was compared, and is marked superseded. The source sends it again to have it compared anew.
	ErrSuperseded = errors.New("roster upload superseded by a later one")
)

// Ref names an entity a record references.
type Ref struct{ Entity, SourcedID string }

func (r Ref) String() string { return r.Entity + ":" + r.SourcedID }

// ParseRef parses what Ref.String returns.
func ParseRef(s string) Ref {
	e, id, _ := strings.Cut(s, ":")
	return Ref{Entity: e, SourcedID: id}
}

// Item is one accepted record of an upload.
type Item struct {
	File      string // the file (or collection, or export) it came from
	Entity    string
	SourcedID string
	Active    bool   // false: status tobedeleted
	Person    string // the person a user-ish record is about (users, demographics, enrollments, results)
	Hash      []byte // of the record's content without dateLastModified
	Refs      []Ref  // entities it needs; an unknown one holds it
}

// File is one file of an upload, as read.
type File struct {
	Name     string
	Entity   string
	Mode     Mode
	Received int // rows (records) read
	Rejected int
	Findings int // data-quality findings of its rows (empty values, unexpected personal data)
	// Export and Columns are, for a mapped CSV file, the export of the mapping rules that read it and
	// its header: the quality report compares an export's columns with the upload before.
	Export  string
	Columns []string
	// Present are the sourcedIds of its rejected rows: a bulk file's bad row does not make its record
	// missing.
	Present []string
}

// Upload is a decoded roster upload.
type Upload struct {
	TenantID, SourceID string
	Kind               string // oneroster-csv, oneroster-json, mapped
	ReceivedAt         time.Time
	Files              []File
	Items              []Item          // accepted records, in the order they go to raw
	Findings           json.RawMessage // data-quality findings of the upload (a JSON array), kept with it
}

// Missing is a record a bulk file lacks: it is sent as a tombstone.
type Missing struct{ Entity, SourcedID, Person string }

// Hold says why an upload is held.
type Hold struct {
	// Gate names the quality gate's check that held the upload (rejected, held_references, findings);
	// empty for the safety hold, which names the entity.
	Gate        string `json:"gate,omitempty"`
	Entity      string `json:"entity"`
	Active      int    `json:"active"`
	Deactivated int    `json:"deactivated"`
	Changed     int    `json:"changed"`
	Reason      string `json:"reason"`
}

// FileCounts are one file's counts.
type FileCounts struct {
	File         string   `json:"file"`
	Entity       string   `json:"entity"`
	Mode         Mode     `json:"mode"`
	Received     int      `json:"received"`
	Accepted     int      `json:"accepted"`
	Rejected     int      `json:"rejected"`
	Held         int      `json:"held"`
	Findings     int      `json:"findings"`
	Export       string   `json:"export,omitempty"`
	Columns      []string `json:"columns,omitempty"`
	Added        int      `json:"added"`
	Changed      int      `json:"changed"`
	Unchanged    int      `json:"unchanged"`
	Deactivated  int      `json:"deactivated"`
	LedgerActive int      `json:"ledger_active"`
}

// Settings are a district's thresholds.
//
// The safety hold holds an upload that would deactivate more than MaxDeletedPct or change more than
// MaxChangedPct of an entity's active records (entities of at least MinLedgerRows). The quality gate
// holds an upload of at least MinUploadRows rows of which more than MaxRejectedPct were rejected, more
// than MaxHeldRefsPct of the accepted records wait for an entity they reference, or, when the district
// sets MaxFindingsPct, that has more findings per hundred rows (empty values are common in SIS exports:
// the check is off unless set).
type Settings struct {
	MaxDeletedPct  float64       `json:"max_deleted_pct"`
	MaxChangedPct  float64       `json:"max_changed_pct"`
	MinLedgerRows  int           `json:"min_ledger_rows"`
	HoldRefsFor    time.Duration `json:"hold_refs_for"`
	MaxRejectedPct float64       `json:"max_rejected_pct"`
	MaxHeldRefsPct float64       `json:"max_held_refs_pct"`
	MaxFindingsPct *float64      `json:"max_findings_pct"`
	MinUploadRows  int           `json:"min_upload_rows"`
}

// DefaultSettings are the thresholds of a district that set none.
var DefaultSettings = Settings{MaxDeletedPct: 10, MaxChangedPct: 75, MinLedgerRows: 10, HoldRefsFor: 7 * 24 * time.Hour,
	MaxRejectedPct: 5, MaxHeldRefsPct: 5, MinUploadRows: 10}

// Encoded is a record as it goes to raw.
type Encoded struct{ Key, Value []byte }

// Produce sends records to raw in order and returns once Kafka acknowledged every one.
type Produce func(ctx context.Context, recs []Encoded) error

// Pools finds the PostgreSQL instance of a district (fleet.DistrictPools).
type Pools interface {
	Pool(ctx context.Context, tenantID string) (*pgxpool.Pool, error)
}

// Store imports uploads into districts' ledgers.
type Store struct {
	pools Pools
	now   func() time.Time
}

// New returns a Store over the districts' instances.
func New(pools Pools) *Store { return &Store{pools: pools, now: time.Now} }

// WithClock sets the store's clock (tests).
func (s *Store) WithClock(now func() time.Time) *Store { s.now = now; return s }

// lockKey is the transaction-scoped advisory lock that orders a district's uploads.
func lockKey(tenantID string) int64 {
	h := fnv.New64a()
	h.Write([]byte("edtech-analytics/rosters/" + tenantID)) // writes to a hash never fail
	return int64(h.Sum64())
}

// begin opens a transaction on the district's schema holding the district's shared lock and its
// roster lock; the schema is brought up to date first.
func (s *Store) begin(ctx context.Context, tenantID string) (pgx.Tx, string, error) {
	schema, err := tenancy.SchemaName(tenantID)
	if err != nil {
		return nil, "", err
	}
	pool, err := s.pools.Pool(ctx, tenantID)
	if err != nil {
		return nil, "", fmt.Errorf("finding the instance of district %s: %w", tenantID, err)
	}
	if err := tenancy.UpgradeDistrictSchema(ctx, pool, tenantID); err != nil {
		return nil, "", fmt.Errorf("upgrading the schema of district %s: %w", tenantID, err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return nil, "", err
	}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock_shared($1), pg_advisory_xact_lock($2)",
		tenancy.DistrictLockKey(tenantID), lockKey(tenantID)); err != nil {
		_ = tx.Rollback(ctx)
		return nil, "", fmt.Errorf("locking the roster of district %s: %w", tenantID, err)
	}
	return tx, schema, nil
}

// settings reads the district's thresholds.
func settings(ctx context.Context, tx pgx.Tx, schema string) (Settings, error) {
	st := DefaultSettings
	var every time.Duration
	err := tx.QueryRow(ctx, `SELECT max_deleted_pct, max_changed_pct, min_ledger_rows, hold_refs_for,
		max_rejected_pct, max_held_refs_pct, max_findings_pct, min_upload_rows FROM `+
		pgx.Identifier{schema, "import_settings"}.Sanitize()).Scan(&st.MaxDeletedPct, &st.MaxChangedPct, &st.MinLedgerRows, &every,
		&st.MaxRejectedPct, &st.MaxHeldRefsPct, &st.MaxFindingsPct, &st.MinUploadRows)
	if errors.Is(err, pgx.ErrNoRows) {
		return DefaultSettings, nil
	}
	st.HoldRefsFor = every
	return st, err
}

// Settings returns the district's thresholds.
func (s *Store) Settings(ctx context.Context, tenantID string) (Settings, error) {
	tx, schema, err := s.begin(ctx, tenantID)
	if err != nil {
		return Settings{}, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	return settings(ctx, tx, schema)
}

// SetSettings stores the district's thresholds.
func (s *Store) SetSettings(ctx context.Context, tenantID string, st Settings) error {
	for _, pct := range []struct {
		name string
		v    float64
	}{{"deleted", st.MaxDeletedPct}, {"changed", st.MaxChangedPct}, {"rejected", st.MaxRejectedPct}, {"held references", st.MaxHeldRefsPct}} {
		if pct.v < 0 || pct.v > 100 {
			return fmt.Errorf("thresholds are percentages from 0 to 100: %s %v", pct.name, pct.v)
		}
	}
	if st.MaxFindingsPct != nil && *st.MaxFindingsPct < 0 {
		return fmt.Errorf("findings per hundred rows must not be negative: %v", *st.MaxFindingsPct)
	}
	if st.MinLedgerRows < 0 || st.MinUploadRows < 0 || st.HoldRefsFor <= 0 {
		return fmt.Errorf("min ledger rows (%d) and min upload rows (%d) must not be negative and the reference hold must be positive (%s)",
			st.MinLedgerRows, st.MinUploadRows, st.HoldRefsFor)
	}
	tx, schema, err := s.begin(ctx, tenantID)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `INSERT INTO `+pgx.Identifier{schema, "import_settings"}.Sanitize()+
		` (id, max_deleted_pct, max_changed_pct, min_ledger_rows, hold_refs_for, max_rejected_pct, max_held_refs_pct, max_findings_pct, min_upload_rows)
		VALUES (true, $1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (id) DO UPDATE SET max_deleted_pct = $1, max_changed_pct = $2, min_ledger_rows = $3, hold_refs_for = $4,
		max_rejected_pct = $5, max_held_refs_pct = $6, max_findings_pct = $7, min_upload_rows = $8`,
		st.MaxDeletedPct, st.MaxChangedPct, st.MinLedgerRows, st.HoldRefsFor, st.MaxRejectedPct, st.MaxHeldRefsPct, st.MaxFindingsPct, st.MinUploadRows); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// ledgerRow is the ledger's row of a record.
type ledgerRow struct {
	active bool
	hash   []byte
	person string
	seen   bool // the upload holds the record (or a rejected row of it)
}

// ledgerKey identifies a record of one source in the ledger.
type ledgerKey struct{ entity, sourcedID string }

// loadLedger reads the source's rows of the entities.
func loadLedger(ctx context.Context, tx pgx.Tx, schema, source string, entities []string) (map[ledgerKey]*ledgerRow, error) {
	rows, err := tx.Query(ctx, `SELECT entity, sourced_id, active, hash, coalesce(person, '') FROM `+
		pgx.Identifier{schema, "import_ledger"}.Sanitize()+` WHERE source_id = $1 AND entity = ANY($2)`, source, entities)
	if err != nil {
		return nil, fmt.Errorf("reading the roster ledger: %w", err)
	}
	defer rows.Close()
	out := map[ledgerKey]*ledgerRow{}
	for rows.Next() {
		var k ledgerKey
		r := &ledgerRow{}
		if err := rows.Scan(&k.entity, &k.sourcedID, &r.active, &r.hash, &r.person); err != nil {
			return nil, err
		}
		out[k] = r
	}
	return out, rows.Err()
}

// knownRefs returns which of refs the ledger holds as active, in any source.
func knownRefs(ctx context.Context, tx pgx.Tx, schema string, refs map[Ref]bool) (map[Ref]bool, error) {
	if len(refs) == 0 {
		return map[Ref]bool{}, nil
	}
	entities := make([]string, 0, len(refs))
	ids := make([]string, 0, len(refs))
	for r := range refs {
		entities = append(entities, r.Entity)
		ids = append(ids, r.SourcedID)
	}
	rows, err := tx.Query(ctx, `SELECT DISTINCT l.entity, l.sourced_id FROM unnest($1::text[], $2::text[]) AS q(entity, sourced_id)
		JOIN `+pgx.Identifier{schema, "import_ledger"}.Sanitize()+` l ON l.entity = q.entity AND l.sourced_id = q.sourced_id AND l.active`,
		entities, ids)
	if err != nil {
		return nil, fmt.Errorf("looking up references: %w", err)
	}
	defer rows.Close()
	out := make(map[Ref]bool, len(refs))
	for rows.Next() {
		var r Ref
		if err := rows.Scan(&r.Entity, &r.SourcedID); err != nil {
			return nil, err
		}
		out[r] = true
	}
	return out, rows.Err()
}

func sameHash(a, b []byte) bool { return a != nil && bytes.Equal(a, b) }

// newID returns a new upload id.
func newID() string { return uuid.NewString() }
