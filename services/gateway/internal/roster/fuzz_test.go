package roster

import (
	"archive/zip"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
)

// checkOutcomes asserts that positions 0..n-1 each appear exactly once among accepted and rejected,
// that every accepted event is complete and every rejection names a field.
func checkOutcomes(t *testing.T, acc []ingest.Accepted, rej []ingest.Rejected, n int) {
	t.Helper()
	if len(acc)+len(rej) != n {
		t.Fatalf("%d accepted + %d rejected for %d records", len(acc), len(rej), n)
	}
	seen := make([]bool, n)
	mark := func(i int) {
		if i < 0 || i >= n || seen[i] {
			t.Fatalf("position %d out of range or seen twice (n=%d)", i, n)
		}
		seen[i] = true
	}
	for _, a := range acc {
		mark(a.Index)
		ev := a.Event
		if err := ev.CheckPayload(); err != nil || !uuidV5.MatchString(ev.EventID) || ev.OccurredAt.IsZero() ||
			ev.Actor.SISID == "" || ev.Actor.Role == "" || ev.TenantID != meta.TenantID || sourcedIDOf(ev) == "" {
			t.Fatalf("incomplete event (%v): %+v", err, ev)
		}
		if _, err := json.Marshal(ev); err != nil {
			t.Fatalf("event does not encode: %v", err)
		}
	}
	for _, r := range rej {
		mark(r.Index)
		if len(r.Errors) == 0 {
			t.Fatalf("rejection without errors: %+v", r)
		}
		for _, fe := range r.Errors {
			if fe.Field == "" || fe.Message == "" {
				t.Fatalf("error without field or message: %+v", r)
			}
		}
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, c := range Collections() {
		f.Add(c, body(c, validJSON[c]))
		f.Add(c, body(c, validJSON[c], `{}`, `[]`, `{"sourcedId":"x","status":"tobedeleted","dateLastModified":"2026-01-01T00:00:00Z"}`))
	}
	f.Add("users", []byte(`{"users":[{"roles":[{"org":{"sourcedId":1}},null],"userIds":[null],"metadata":{"a":[1,{"b":null}]}}]}`))
	f.Add("lineItems", []byte(`{"lineItems":[{"resultValueMin":1e308,"resultValueMax":"-1e400"}]}`))
	f.Fuzz(func(t *testing.T, collection string, b []byte) {
		acc, rej, err := DecodeJSON(collection, b, meta, Limits{MaxRecords: 50}, nil)
		if err != nil {
			var se *ingest.SyntaxError
			if acc != nil || rej != nil ||
				(!errors.As(err, &se) && !errors.Is(err, ErrUnknownCollection) && !errors.Is(err, ingest.ErrTooManyEvents)) {
				t.Fatalf("error %v (%T) with accepted %v, rejected %v", err, err, acc, rej)
			}
			return
		}
		var doc map[string][]json.RawMessage
		if json.Unmarshal(b, &doc) != nil {
			t.Fatalf("accepted a body that is not a collection: %q", b)
		}
		checkOutcomes(t, acc, rej, len(doc[collection]))
	})
}

// packageOf builds a zip from up to two named files; without a first name the data is the zip itself.
// It reports false for names zip.Writer refuses (a directory name with data).
func packageOf(name1 string, data1 []byte, name2 string, data2 []byte) ([]byte, bool) {
	if name1 == "" {
		return data1, true
	}
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for _, f := range []file{{name1, string(data1)}, {name2, string(data2)}} {
		if f.name == "" {
			continue
		}
		fw, err := w.Create(f.name)
		if err != nil {
			return nil, false
		}
		if _, err := io.WriteString(fw, f.content); err != nil {
			return nil, false
		}
	}
	return buf.Bytes(), w.Close() == nil
}

// rowCounts counts the data rows of the package's carried files, roles.csv apart.
func rowCounts(t *testing.T, body []byte) (records, roles int) {
	zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range zr.File {
		if f.Name != rolesFile && !isEntityFile(f.Name) {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		cr := csv.NewReader(rc)
		cr.FieldsPerRecord = -1
		n := -1 // the header
		for {
			if _, err := cr.Read(); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f.Name, err)
			}
			n++
		}
		_ = rc.Close()
		if f.Name == rolesFile {
			roles += n
		} else {
			records += n
		}
	}
	return records, roles
}

func FuzzDecodeCSVZip(f *testing.F) {
	content := func(name string) []byte {
		for _, fl := range fullPackage {
			if fl.name == name {
				return []byte(fl.content)
			}
		}
		return nil
	}
	f.Add("", zipOf(f, fullPackage...), "", []byte(nil))
	f.Add("users.csv", content("users.csv"), "roles.csv", content("roles.csv"))
	f.Add("manifest.csv", content("manifest.csv"), "orgs.csv", content("orgs.csv"))
	for _, fl := range fullPackage[1:] {
		f.Add(fl.name, []byte(fl.content), "", []byte(nil))
	}
	f.Add("users.csv", []byte(usersHeader+"u1,active,2026-09-01T08:00:00Z,true,\"org-1,,org-2\",student,a,Ada,L,pw\nu1,x\n"), "roles.csv",
		[]byte("userSourcedId,roleType,role,orgSourcedId\nu1,primary,teacher,o\nu2,primary\n,,,\n"))
	f.Add("demographics.csv", []byte("\ufeffsourcedId,sex,metadata.a\n\"s\n1\",male,\"x\"\"y\"\n"), "manifest.csv", []byte("propertyName,value\nfile.demographics,delta\n"))
	f.Fuzz(func(t *testing.T, name1 string, data1 []byte, name2 string, data2 []byte) {
		if name1 != "" && name1 == name2 {
			return
		}
		body, ok := packageOf(name1, data1, name2, data2)
		if !ok {
			return
		}
		pkg, err := DecodeCSVZip(body, meta, Limits{MaxRecords: 200}, nil)
		if err != nil {
			if pkg != nil || (!errors.Is(err, ErrInvalidPackage) && !errors.Is(err, ErrPackageTooLarge) && !errors.Is(err, ingest.ErrTooManyEvents)) {
				t.Fatalf("error %v with package %+v", err, pkg)
			}
			return
		}
		recs, roles := rowCounts(t, body)
		n := len(pkg.Accepted) + len(pkg.Rejected)
		if n < recs || n > recs+roles {
			t.Fatalf("%d outcomes for %d records and %d role rows", n, recs, roles)
		}
		checkOutcomes(t, pkg.Accepted, pkg.Rejected, n)
		for _, r := range pkg.Rejected {
			if !strings.Contains(r.Errors[0].Field, ".csv:") {
				t.Fatalf("rejection does not name its file and line: %+v", r.Errors)
			}
		}
	})
}
