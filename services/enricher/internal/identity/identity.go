// Package identity maps a district's SIS ids to stable internal student ids. The mapping lives in the
// district's schema in PostgreSQL (students, student_identities) and is cached in memory.
//
//   - An event for a student the roster has not delivered yet gets a fresh id at once (Resolve); when the
//     student's roster.user record arrives, it links to that id (Link).
//   - A district that switches SIS vendor keeps its students' ids: Link finds the existing student by the
//     district's matching key (e.g. the state student id) and maps the new (source, SIS id) to it.
//   - Two enricher instances racing on a cache miss agree on one id: the primary key of
//     student_identities lets one insert win, and links of one matching key are serialised by an
//     advisory lock.
//   - Erasing a student replaces its SIS ids and matching key with keyed hashes ("erased:<hmac>"), so the
//     district keeps no clear identifier, yet a later record carrying them still resolves to the erased id
//     (and is suppressed) instead of minting a new one.
package identity

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Identity is a person's internal id and district-keyed pseudonym.
type Identity struct {
	InternalID string
	Pseudonym  string
}

// Resolver resolves and creates internal ids. It is safe for concurrent use.
type Resolver struct {
	pools Pools

	// Both are bounded (golang-lru): a full cache evicts the oldest entries one by one instead of
	// emptying itself. Reads Peek, under a read lock, so an id's place is when it was cached, not last
	// read: on the hot path the workers' reads must not queue on the lock that recording recency takes.
	cache  *lru.Cache[cacheKey, Identity]
	linked *lru.Cache[cacheKey, string] // the matching key each roster user was last linked with
}

type cacheKey struct{ tenant, source, sis string }

// Pools finds the pool of the instance a district's schema lives on (fleet.DistrictPools).
type Pools interface {
	Pool(ctx context.Context, tenantID string) (*pgxpool.Pool, error)
}

// New returns a resolver caching up to maxCached mappings, over the districts' schemas wherever pools
// places them.
func New(pools Pools, maxCached int) *Resolver {
	cache, err := lru.New[cacheKey, Identity](max(maxCached, 1))
	if err != nil {
		panic(err) // only for a size below 1
	}
	linked, err := lru.New[cacheKey, string](max(maxCached, 1))
	if err != nil {
		panic(err)
	}
	return &Resolver{pools: pools, cache: cache, linked: linked}
}

// begin runs fn in a transaction on the instance of q's district.
func (r *Resolver) begin(ctx context.Context, q queries, fn func(pgx.Tx) error) error {
	pool, err := r.pools.Pool(ctx, q.tenant)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, pool, fn)
}

// Resolve returns the identity of (source, sis id) in the district, creating the student on first sight.
func (r *Resolver) Resolve(ctx context.Context, t tenants.Tenant, source, sis string) (Identity, error) {
	k := cacheKey{t.ID, source, sis}
	if id, ok := r.cached(k); ok {
		return id, nil
	}
	q, err := queriesFor(t.ID)
	if err != nil {
		return Identity{}, err
	}
	var internal string
	for attempt := 0; ; attempt++ {
		internal, err = r.lookupOrCreate(ctx, q, t.PseudonymKey, source, sis)
		if !errors.Is(err, errRaced) || attempt == 3 {
			break
		}
	}
	if err != nil {
		return Identity{}, fmt.Errorf("resolving student of tenant %s: %w", t.ID, err)
	}
	return r.remember(k, t.PseudonymKey, internal), nil
}

// Key is a SIS id in a source's namespace.
type Key struct{ Source, SIS string }

// ResolveMany resolves many SIS ids of one district in a few statements whatever their number, creating
// the students not seen yet, and caches the answers, so that the Resolve calls that follow hit the cache.
// A storm of first sightings (a new district, a new school year) then costs a batch, not a round trip
// per student.
func (r *Resolver) ResolveMany(ctx context.Context, t tenants.Tenant, keys []Key) error {
	var missing map[Key]bool
	for _, k := range keys {
		if !r.cache.Contains(cacheKey{t.ID, k.Source, k.SIS}) {
			if missing == nil {
				missing = map[Key]bool{}
			}
			missing[k] = true
		}
	}
	if len(missing) == 0 {
		return nil
	}
	q, err := queriesFor(t.ID)
	if err != nil {
		return err
	}
	if err := r.lookupMany(ctx, q, t, missing); err != nil {
		return fmt.Errorf("resolving students of tenant %s: %w", t.ID, err)
	}
	if len(missing) == 0 {
		return nil
	}
	var sources, sis, fresh []string
	// In one order, whatever the map's: two instances creating overlapping students insert their identity
	// rows in the same order, so one waits for the other instead of each holding a row the other needs
	// (a deadlock, which PostgreSQL breaks by failing one).
	ordered := slices.SortedFunc(maps.Keys(missing), func(a, b Key) int {
		return cmp.Or(strings.Compare(a.Source, b.Source), strings.Compare(a.SIS, b.SIS))
	})
	for _, k := range ordered {
		id, err := newUUID()
		if err != nil {
			return err
		}
		sources, sis, fresh = append(sources, k.Source), append(sis, k.SIS), append(fresh, id)
	}
	created := map[Key]string{}
	err = r.begin(ctx, q, func(tx pgx.Tx) error {
		clear(created)
		if _, err := tx.Exec(ctx, q.insertStudents, fresh); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, q.insertIdentities, sources, sis, fresh)
		if err != nil {
			return err
		}
		var k Key
		var id string
		ids := []string{} // not nil: "<> ALL(NULL)" matches nothing
		_, err = pgx.ForEachRow(rows, []any{&k.Source, &k.SIS, &id}, func() error {
			created[k] = id
			ids = append(ids, id)
			return nil
		})
		if err != nil || len(ids) == len(fresh) {
			return err
		}
		// Some were created concurrently by another instance: drop our students for them.
		_, err = tx.Exec(ctx, q.deleteUnused, fresh, ids)
		return err
	})
	if err != nil {
		return fmt.Errorf("creating students of tenant %s: %w", t.ID, err)
	}
	for k, id := range created {
		r.remember(cacheKey{t.ID, k.Source, k.SIS}, t.PseudonymKey, id)
		delete(missing, k)
	}
	if len(missing) > 0 {
		if err := r.lookupMany(ctx, q, t, missing); err != nil {
			return fmt.Errorf("resolving students of tenant %s: %w", t.ID, err)
		}
	}
	return nil
}

// lookupMany finds the stored identities of keys (in clear or erased form), caches them and removes
// them from keys.
func (r *Resolver) lookupMany(ctx context.Context, q queries, t tenants.Tenant, keys map[Key]bool) error {
	forms := make(map[Key]Key, 2*len(keys)) // stored form -> key
	var sources, sis []string
	for k := range keys {
		erased := Key{k.Source, keyring.ErasedSIS(t.PseudonymKey, k.Source, k.SIS)}
		forms[k], forms[erased] = k, k
		sources, sis = append(sources, k.Source, erased.Source), append(sis, k.SIS, erased.SIS)
	}
	pool, err := r.pools.Pool(ctx, q.tenant)
	if err != nil {
		return err
	}
	rows, err := pool.Query(ctx, q.lookupMany, sources, sis)
	if err != nil {
		return err
	}
	var stored Key
	var id string
	_, err = pgx.ForEachRow(rows, []any{&stored.Source, &stored.SIS, &id}, func() error {
		k := forms[stored]
		r.remember(cacheKey{t.ID, k.Source, k.SIS}, t.PseudonymKey, id)
		delete(keys, k)
		return nil
	})
	return err
}

// Link is Resolve for a roster.user record carrying the district's matching key: it maps (source, sis id)
// to the student with that key if there is one (a new SIS vendor), or gives the key to the student
// (source, sis id) already has (an event came first), or creates the student with it. When (source, sis
// id) had an id of its own and another student holds the key, the key wins: the SIS id moves to that
// student, and the orphaned id is marked merged_into it. An empty matchKey is Resolve.
func (r *Resolver) Link(ctx context.Context, t tenants.Tenant, source, sis, matchKey string) (Identity, error) {
	if matchKey == "" {
		return r.Resolve(ctx, t, source, sis)
	}
	k := cacheKey{t.ID, source, sis}
	id, cached := r.cache.Peek(k)
	linkedKey, _ := r.linked.Peek(k)
	same := cached && linkedKey == matchKey
	if same { // a roster re-sent unchanged (nightly bulk files) costs no round trip
		return id, nil
	}
	q, err := queriesFor(t.ID)
	if err != nil {
		return Identity{}, err
	}
	var internal string
	for attempt := 0; ; attempt++ {
		err = r.begin(ctx, q, func(tx pgx.Tx) error {
			internal, err = link(ctx, tx, q, t.PseudonymKey, source, sis, matchKey)
			return err
		})
		if !errors.Is(err, errRaced) || attempt == 3 {
			break
		}
	}
	if err != nil {
		return Identity{}, fmt.Errorf("linking student of tenant %s: %w", t.ID, err)
	}
	id = r.remember(k, t.PseudonymKey, internal)
	r.linked.Add(k, matchKey)
	return id, nil
}

func link(ctx context.Context, tx pgx.Tx, q queries, key []byte, source, sis, match string) (string, error) {
	hashedMatch, hashedSIS := keyring.ErasedMatch(key, match), keyring.ErasedSIS(key, source, sis)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", q.schema+"/match/"+hashedMatch); err != nil {
		return "", err
	}
	var byMatch, bySIS, sisRow string
	err := tx.QueryRow(ctx, q.studentByMatch, match, hashedMatch).Scan(&byMatch)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return "", err
	}
	err = tx.QueryRow(ctx, q.identityForUpdate, source, sis, hashedSIS).Scan(&bySIS, &sisRow)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return "", err
	}
	matchErased := strings.HasPrefix(byMatch, "!") // studentByMatch flags an erased student
	byMatch = strings.TrimPrefix(byMatch, "!")
	switch {
	case byMatch == "" && bySIS == "":
		fresh, err := newUUID()
		if err != nil {
			return "", err
		}
		if _, err := tx.Exec(ctx, q.insertStudent, fresh, match); err != nil {
			return "", err
		}
		return insertIdentity(ctx, tx, q, source, sis, fresh)
	case byMatch == "":
		// The student came first through an event; the roster now gives it its key (unless erased).
		_, err := tx.Exec(ctx, q.setMatch, bySIS, match)
		return bySIS, err
	case bySIS == "" && matchErased:
		return insertIdentity(ctx, tx, q, source, hashedSIS, byMatch) // an erased student's new SIS id, hashed only
	case bySIS == "":
		return insertIdentity(ctx, tx, q, source, sis, byMatch)
	case byMatch == bySIS || strings.HasPrefix(sisRow, keyring.ErasedPrefix):
		return bySIS, nil
	}
	// The SIS id got a provisional id before its roster record; the student with the key keeps its id.
	move, args := q.moveIdentity, []any{source, sisRow, byMatch}
	if matchErased {
		move, args = q.hashIdentity, []any{source, sisRow, hashedSIS, byMatch}
	}
	if _, err := tx.Exec(ctx, move, args...); err != nil {
		return "", err
	}
	_, err = tx.Exec(ctx, q.markMerged, bySIS, byMatch)
	return byMatch, err
}

func insertIdentity(ctx context.Context, tx pgx.Tx, q queries, source, sis, internal string) (string, error) {
	var got string
	err := tx.QueryRow(ctx, q.insertIdentity, source, sis, internal).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", errRaced // created concurrently; the caller retries and finds it
	}
	return got, err
}

// Erase replaces the student's SIS ids and matching key with their keyed hashes and marks it erased,
// inside tx. Later records carrying those ids still resolve to internalID.
func (r *Resolver) Erase(ctx context.Context, tx pgx.Tx, t tenants.Tenant, internalID string) error {
	q, err := queriesFor(t.ID)
	if err != nil {
		return err
	}
	rows, err := tx.Query(ctx, q.clearIdentities, internalID)
	if err != nil {
		return fmt.Errorf("reading identities to erase: %w", err)
	}
	ids, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) ([2]string, error) {
		var id [2]string
		return id, row.Scan(&id[0], &id[1])
	})
	if err != nil {
		return fmt.Errorf("reading identities to erase: %w", err)
	}
	for _, id := range ids {
		if _, err := tx.Exec(ctx, q.hashIdentity, id[0], id[1], keyring.ErasedSIS(t.PseudonymKey, id[0], id[1]), internalID); err != nil {
			return fmt.Errorf("erasing identity: %w", err)
		}
	}
	var match *string
	err = tx.QueryRow(ctx, q.matchOf, internalID).Scan(&match)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("reading match key to erase: %w", err)
	}
	var hashed *string
	if match != nil && !strings.HasPrefix(*match, keyring.ErasedPrefix) {
		h := keyring.ErasedMatch(t.PseudonymKey, *match)
		hashed = &h
	}
	if _, err := tx.Exec(ctx, q.markErased, internalID, hashed); err != nil {
		return fmt.Errorf("marking student erased: %w", err)
	}
	for _, k := range r.cache.Keys() {
		if v, ok := r.cache.Peek(k); ok && k.tenant == t.ID && v.InternalID == internalID {
			r.cache.Remove(k)
			r.linked.Remove(k)
		}
	}
	return nil
}

// Reset empties the cache; call when partitions move, since another instance may have linked ids since.
func (r *Resolver) Reset() {
	r.cache.Purge()
	r.linked.Purge()
}

func (r *Resolver) cached(k cacheKey) (Identity, bool) {
	return r.cache.Peek(k) // a read lock only: reads from every partition's worker do not queue
}

func (r *Resolver) remember(k cacheKey, key []byte, internal string) Identity {
	id := Identity{InternalID: internal, Pseudonym: keyring.Pseudonym(key, internal)}
	r.cache.Add(k, id)
	return id
}

func (r *Resolver) lookupOrCreate(ctx context.Context, q queries, key []byte, source, sis string) (string, error) {
	pool, err := r.pools.Pool(ctx, q.tenant)
	if err != nil {
		return "", err
	}
	var id string
	err = pool.QueryRow(ctx, q.lookup, source, sis, keyring.ErasedSIS(key, source, sis)).Scan(&id)
	if err == nil || !errors.Is(err, pgx.ErrNoRows) {
		return id, err
	}
	fresh, err := newUUID()
	if err != nil {
		return "", err
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, q.insertStudent, fresh, nil); err != nil {
			return err
		}
		id, err = insertIdentity(ctx, tx, q, source, sis, fresh)
		return err
	})
	return id, err
}

var errRaced = errors.New("identity created concurrently")

// queries are the statements of one district schema.
type queries struct {
	tenant, schema                                                  string
	lookup, identityForUpdate, insertIdentity, moveIdentity         string
	studentByMatch, insertStudent, setMatch, markMerged, markErased string
	clearIdentities, hashIdentity, matchOf                          string
	lookupMany, insertStudents, insertIdentities, deleteUnused      string
}

func queriesFor(tenantID string) (queries, error) {
	schema, err := tenancy.SchemaName(tenantID)
	if err != nil {
		return queries{}, err
	}
	ids := pgx.Identifier{schema, "student_identities"}.Sanitize()
	students := pgx.Identifier{schema, "students"}.Sanitize()
	return queries{
		tenant: tenantID,
		schema: schema,
		lookup: `SELECT internal_id::text FROM ` + ids + ` WHERE source_id = $1 AND sis_id IN ($2, $3) LIMIT 1`,
		identityForUpdate: `SELECT internal_id::text, sis_id FROM ` + ids + `
			WHERE source_id = $1 AND sis_id IN ($2, $3) LIMIT 1 FOR UPDATE`,
		insertIdentity: `INSERT INTO ` + ids + ` (source_id, sis_id, internal_id) VALUES ($1, $2, $3)
			ON CONFLICT (source_id, sis_id) DO NOTHING RETURNING internal_id::text`,
		moveIdentity: `UPDATE ` + ids + ` SET internal_id = $3 WHERE source_id = $1 AND sis_id = $2`,
		// An erased student comes back prefixed with "!" so Link keeps new SIS ids of it hashed.
		studentByMatch: `SELECT CASE WHEN erased_at IS NULL THEN '' ELSE '!' END || internal_id::text FROM ` + students + `
			WHERE match_key IN ($1, $2)`,
		insertStudent: `INSERT INTO ` + students + ` (internal_id, match_key) VALUES ($1, $2)`,
		setMatch:      `UPDATE ` + students + ` SET match_key = $2 WHERE internal_id = $1 AND erased_at IS NULL`,
		markMerged: `UPDATE ` + students + ` SET merged_into = $2 WHERE internal_id = $1 AND match_key IS NULL
			AND NOT EXISTS (SELECT 1 FROM ` + ids + ` WHERE internal_id = $1)`,
		markErased: `UPDATE ` + students + ` SET erased_at = coalesce(erased_at, now()),
			match_key = coalesce($2, match_key) WHERE internal_id = $1`,
		clearIdentities: `SELECT source_id, sis_id FROM ` + ids + ` WHERE internal_id = $1 AND sis_id NOT LIKE 'erased:%'`,
		// The hashed row may exist already (a new SIS id of an erased student); then the clear one just goes.
		hashIdentity: `WITH ins AS (INSERT INTO ` + ids + ` (source_id, sis_id, internal_id) VALUES ($1, $3, $4)
			ON CONFLICT (source_id, sis_id) DO NOTHING)
			DELETE FROM ` + ids + ` WHERE source_id = $1 AND sis_id = $2`,
		matchOf: `SELECT match_key FROM ` + students + ` WHERE internal_id = $1`,
		lookupMany: `SELECT i.source_id, i.sis_id, i.internal_id::text FROM ` + ids + ` i
			JOIN unnest($1::text[], $2::text[]) AS k(source_id, sis_id) USING (source_id, sis_id)`,
		insertStudents: `INSERT INTO ` + students + ` (internal_id) SELECT unnest($1::uuid[])`,
		insertIdentities: `INSERT INTO ` + ids + ` (source_id, sis_id, internal_id)
			SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[])
			ON CONFLICT (source_id, sis_id) DO NOTHING RETURNING source_id, sis_id, internal_id::text`,
		deleteUnused: `DELETE FROM ` + students + ` WHERE internal_id = ANY($1::uuid[]) AND internal_id <> ALL($2::uuid[])`,
	}, nil
}

// newUUID returns a random (version 4) UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
