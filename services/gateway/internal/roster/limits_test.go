package roster

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// counter is a Memory that counts what it is charged.
type counter struct{ n int64 }

func (c *counter) Grow(n int64) error { c.n += n; return nil }

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestChargesCoverWhatDecodingHolds: for packages and collections of the shapes that cost the most per
// byte (many one-letter metadata values, rows of a few bytes, rejected rows reported with a wide header)
// and of a usual one, what decoding charges is at least what the decoded package holds on the heap.
func TestChargesCoverWhatDecodingHolds(t *testing.T) {
	const rows = 5000
	header := "sourcedId,status,dateLastModified,enabledUser,username,givenName,familyName,identifier,email,grades,orgSourcedIds,role"
	var meta100 strings.Builder
	for j := range 100 {
		fmt.Fprintf(&meta100, ",metadata.k%d", j)
	}
	csvCases := []struct {
		name, header string
		row          func(i int) string
	}{
		{"usual users", header, func(i int) string {
			return fmt.Sprintf("stu-%07d,active,2026-09-01T08:00:00Z,true,user%d,Given%d,Family%d,%d,user%d@example.org,09,org-1,student", i, i, i, i, i, i)
		}},
		{"one-letter metadata", header + meta100.String(), func(i int) string {
			return fmt.Sprintf("s%d,,,true,,G,F,,,,o,student", i) + strings.Repeat(",x", 100)
		}},
		{"short rows", header, func(i int) string { return fmt.Sprintf("s%d,,,true,,G,F,,,,o,student", i) }},
		{"rejected rows", header + meta100.String(), func(i int) string { return fmt.Sprintf("s%d,,,maybe,,G,F,,,,o,student", i) + strings.Repeat(",", 100) }},
	}
	for _, tc := range csvCases {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			b.WriteString(tc.header + "\n")
			for i := range rows {
				b.WriteString(tc.row(i) + "\n")
			}
			body := zipOf(t, file{"users.csv", b.String()})
			var mem counter
			before := heapAlloc()
			pkg, err := DecodeCSVZip(body, meta, Limits{}, &mem)
			held := heapAlloc() - before
			if err != nil || len(pkg.Accepted)+len(pkg.Rejected) != rows {
				t.Fatalf("err = %v", err)
			}
			t.Logf("%d bytes unzipped: charged %d, held %d", b.Len(), mem.n, held)
			if mem.n < int64(held) {
				t.Fatalf("charged %d bytes, the package holds %d", mem.n, held)
			}
			runtime.KeepAlive(pkg)
		})
	}
	t.Run("json users", func(t *testing.T) {
		recs := make([]string, rows)
		for i := range recs {
			recs[i] = strings.Replace(validJSON["users"], `"stu-1"`, fmt.Sprintf(`"stu-%d"`, i), 1)
		}
		b := body("users", recs...)
		var mem counter
		before := heapAlloc()
		acc, rej, err := DecodeJSON("users", b, meta, Limits{}, &mem)
		held := heapAlloc() - before
		if err != nil || len(acc) != rows {
			t.Fatalf("err = %v, %d rejected", err, len(rej))
		}
		t.Logf("%d bytes: charged %d, held %d", len(b), mem.n, held)
		if mem.n < int64(held) {
			t.Fatalf("charged %d bytes, the collection holds %d", mem.n, held)
		}
		runtime.KeepAlive(acc)
	})
}
