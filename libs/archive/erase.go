package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"

	"github.com/google/uuid"
	"github.com/parquet-go/parquet-go"
)

// Erasure in the archive.
//
// A district's erasure deletes every object of the district: its files of both layers, its erasure
// records and its temporaries. A student's erasure rewrites the district's enriched files that hold rows
// of the student (actor_internal_id) without them, each under its own key: the name still says which
// offsets the file covers, so the writer, replaying a batch after a crash, does not archive them again.
// A file left with no rows is kept as a Parquet file of no rows, for the same reason (deleting it would
// leave a gap a replay from an earlier offset would fill again). Rewritten files carry the RewrittenKey
// metadata entry. The raw layer is not rewritten: its identifying fields are sealed per person (ADR 0010)
// and the erasure shreds the key, and raw rows have no unsealed field that names the student to find
// them by.
//
// Before it rewrites anything, a student's erasure records the student under _erasures/ (an empty
// object named by the internal id). Compaction drops the rows of every recorded student from what it
// merges and gives up a merge when an erasure began while it read; an erasure drops the rows of every
// recorded student too and scans again when another erasure began meanwhile, so two erasures of one
// district at once do not write each other's rows back.

// Layers are the archive's layers.
var Layers = []string{"raw", "enriched"}

// Count is what the archive holds of a district or of a student.
type Count struct {
	Files int64 // objects (data files, and for a district its erasure records and temporaries)
	Rows  int64 // rows of the data files (a student's rows for CountStudent)
}

// tenantPrefixes are the prefixes of every object of a tenant.
func tenantPrefixes(tenant string) []string {
	var out []string
	for _, l := range Layers {
		out = append(out, TenantPrefix(l, tenant), erasuresPrefix(l, tenant), eraseTmp(l, tenant))
	}
	return out
}

func eraseTmp(layer, tenant string) string { return TmpPrefix + "erase/" + TenantPrefix(layer, tenant) }

// TenantObjects lists every object of a district in the archive: its files of both layers, its erasure
// records and its erasures' temporaries. It reads no file.
func TenantObjects(ctx context.Context, b Bucket, tenant string) ([]string, error) {
	var out []string
	for _, prefix := range tenantPrefixes(tenant) {
		keys, err := b.List(ctx, prefix)
		if err != nil {
			return nil, err
		}
		out = append(out, keys...)
	}
	return out, nil
}

// CountTenant counts the objects of a district in the archive (TenantObjects), and the rows of its data
// files (every data file, compacted files and the files they cover alike), reading each.
func CountTenant(ctx context.Context, b Bucket, tenant string) (Count, error) {
	keys, err := TenantObjects(ctx, b, tenant)
	if err != nil {
		return Count{}, err
	}
	c := Count{Files: int64(len(keys))}
	for _, k := range keys {
		if _, ok := ParseKey(k); !ok {
			continue
		}
		n, err := numRows(ctx, b, k)
		if err != nil {
			return c, err
		}
		c.Rows += n
	}
	return c, nil
}

func numRows(ctx context.Context, b Bucket, key string) (int64, error) {
	data, err := b.ReadAll(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return 0, nil // deleted since the listing (compaction)
	}
	if err != nil {
		return 0, err
	}
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", key, err)
	}
	return f.NumRows(), nil
}

// EraseTenant deletes every object of a district in the archive and returns how many it deleted.
func EraseTenant(ctx context.Context, b Bucket, tenant string) (removed int, err error) {
	if tenant == "" {
		return 0, errors.New("erasing a district of the archive: no district")
	}
	keys, err := TenantObjects(ctx, b, tenant)
	if err != nil {
		return 0, err
	}
	for _, k := range keys {
		if err := b.Delete(ctx, k); err != nil {
			return removed, fmt.Errorf("removing %s: %w", k, err)
		}
		removed++
	}
	return removed, nil
}

// EraseResult says what a student's erasure rewrote.
type EraseResult struct {
	FilesRewritten int   // files rewritten without the student's rows
	FilesEmptied   int   // of them, files left with no rows (kept, as Parquet files of no rows)
	RowsRemoved    int64 // rows removed (the student's, and those of students erased at the same time)
	Passes         int   // scans of the district's files
}

// maxErasePasses bounds the scans of a student's erasure. A scan after the first reads only files that
// appeared since the one before (a compaction's, or, from the writer, files of records the enricher no
// longer lets through); the files of a district stop changing in a few scans.
const maxErasePasses = 8

// EraseStudent rewrites the district's enriched files that hold rows of the student internalID without
// them (see above). Run again after an error, it finds less or nothing to do.
func EraseStudent(ctx context.Context, b Bucket, tenant, internalID string) (EraseResult, error) {
	var res EraseResult
	if tenant == "" || internalID == "" || strings.ContainsAny(internalID, "/?#%") {
		return res, fmt.Errorf("erasing student %q of district %q from the archive: not a district and an internal id", internalID, tenant)
	}
	const layer = "enriched"
	tmp := eraseTmp(layer, tenant) + internalID + "/" // this student's: erasures of others may be running
	if err := deleteAll(ctx, b, tmp); err != nil {
		return res, err
	}
	if err := b.WriteAll(ctx, erasuresPrefix(layer, tenant)+internalID, nil); err != nil {
		return res, fmt.Errorf("recording the erasure: %w", err)
	}
	scanned := map[string]bool{}
	var prev map[string]bool
	for res.Passes < maxErasePasses {
		erased, err := erasedStudents(ctx, b, layer, tenant)
		if err != nil {
			return res, err
		}
		if !maps.Equal(erased, prev) {
			clear(scanned) // another erasure began: what was scanned may hold its rows again
		}
		keys, err := b.List(ctx, TenantPrefix(layer, tenant))
		if err != nil {
			return res, err
		}
		var todo []string
		for _, k := range keys {
			if _, ok := ParseKey(k); ok && !scanned[k] {
				todo = append(todo, k)
			}
		}
		if len(todo) == 0 {
			break
		}
		res.Passes++
		for _, k := range todo {
			if err := rewriteWithout(ctx, b, k, tmp, erased, &res); err != nil {
				return res, err
			}
			scanned[k] = true
		}
		prev = erased
	}
	return res, nil
}

// rewriteWithout rewrites the enriched file key without the rows of the students erased, if it holds
// any: written under tmp, then copied over key.
func rewriteWithout(ctx context.Context, b Bucket, key, tmp string, erased map[string]bool, res *EraseResult) error {
	data, err := b.ReadAll(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil // merged into a compacted file since the listing: the next scan reads that one
	}
	if err != nil {
		return err
	}
	f, _ := ParseKey(key)
	n, err := countRows(data, func(r *EnrichedRow) bool { return erased[r.ActorInternalID] })
	if err != nil {
		return fmt.Errorf("reading %s: %w", key, err)
	}
	if n == 0 {
		return nil
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[EnrichedRow](&buf, parquet.Compression(&parquet.Zstd), parquet.MaxRowsPerRowGroup(rowGroupRows))
	w.SetKeyValueMetadata(RewrittenKey, "true")
	c, err := copyRows(w, f, data, func(r *EnrichedRow) bool { return !erased[r.ActorInternalID] })
	if err != nil {
		return fmt.Errorf("rewriting %s: %w", key, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("encoding parquet: %w", err)
	}
	tmpKey := tmp + uuid.NewString()
	if err := b.WriteAll(ctx, tmpKey, buf.Bytes()); err != nil {
		return fmt.Errorf("writing %s: %w", tmpKey, err)
	}
	if err := b.Copy(ctx, key, tmpKey); err != nil {
		return fmt.Errorf("replacing %s: %w", key, err)
	}
	if err := b.Delete(ctx, tmpKey); err != nil {
		return fmt.Errorf("removing %s: %w", tmpKey, err)
	}
	res.FilesRewritten++
	res.RowsRemoved += c.dropped
	if c.rows == 0 {
		res.FilesEmptied++
	}
	return nil
}

// CountStudent counts the rows of the student internalID in the district's enriched files (every data
// file, compacted files and the files they cover alike); Files is the files that hold any.
func CountStudent(ctx context.Context, b Bucket, tenant, internalID string) (Count, error) {
	var c Count
	keys, err := b.List(ctx, TenantPrefix("enriched", tenant))
	if err != nil {
		return c, err
	}
	for _, k := range keys {
		if _, ok := ParseKey(k); !ok {
			continue
		}
		data, err := b.ReadAll(ctx, k)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return c, err
		}
		n, err := countRows(data, func(r *EnrichedRow) bool { return r.ActorInternalID == internalID })
		if err != nil {
			return c, fmt.Errorf("reading %s: %w", k, err)
		}
		if n > 0 {
			c.Files++
			c.Rows += n
		}
	}
	return c, nil
}

// countRows counts the rows of an enriched file that match.
func countRows(data []byte, match func(*EnrichedRow) bool) (int64, error) {
	r := parquet.NewGenericReader[EnrichedRow](bytes.NewReader(data))
	rows := make([]EnrichedRow, readRows)
	var n int64
	for {
		k, err := r.Read(rows)
		for i := range rows[:k] {
			if match(&rows[i]) {
				n++
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, err
		}
	}
	return n, r.Close()
}
