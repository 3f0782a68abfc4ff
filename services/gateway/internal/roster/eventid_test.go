package roster

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/mapping"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
)

// eventIDByMarshal is eventID as it was first written (json.Marshal, sha1.New): the reference the
// ledger's hashes and the ids already sent were made with.
func eventIDByMarshal(meta ingest.Meta, collection, sourcedID string, modified time.Time, p records.Payloads) (string, []byte, int, error) {
	c, ok := p.RosterCommon()
	if !ok {
		return "", nil, 0, fmt.Errorf("%s: not a roster payload", collection)
	}
	stamped := *c.DateLastModified
	*c.DateLastModified = time.Time{}
	payload, err := json.Marshal(p)
	*c.DateLastModified = stamped
	if err != nil {
		return "", nil, 0, err
	}
	sum := sha256.Sum256(payload)
	var stamp string
	if !modified.IsZero() {
		stamp = modified.UTC().Format(time.RFC3339Nano)
	}
	h := sha1.New()
	h.Write(idNamespace[:])
	for _, part := range []string{meta.TenantID, meta.SourceID, collection, sourcedID, stamp} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write(payload)
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:]), sum[:16], len(payload), nil
}

// TestEventIDIsTheMarshalledOne: eventID gives the id, content hash and size of the reference over
// thousands of records of every collection (generated with good, bad and unusual values: HTML
// characters, line separators, control characters, long texts, numbers), with and without a
// dateLastModified, as the decoder and the ledger's Describe call it.
func TestEventIDIsTheMarshalledOne(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	checked := map[string]int{}
	check := func(collection string, m ingest.Meta, a ingest.Accepted) {
		p := a.Event.Payloads()
		c, _ := p.RosterCommon()
		for _, mod := range []time.Time{*c.DateLastModified, {}} {
			id, hash, size, err := eventID(m, collection, *c.SourcedID, mod, p)
			rid, rhash, rsize, rerr := eventIDByMarshal(m, collection, *c.SourcedID, mod, p)
			if id != rid || !bytes.Equal(hash, rhash) || size != rsize || fmt.Sprint(err) != fmt.Sprint(rerr) {
				j, _ := json.Marshal(p)
				t.Fatalf("%s %s: %s %x %d %v, want %s %x %d %v", collection, j, id, hash, size, err, rid, rhash, rsize, rerr)
			}
		}
		// The decoder's own id and hash are the reference's.
		if id, hash, _, _ := eventIDByMarshal(m, collection, *c.SourcedID, *c.DateLastModified, p); m == meta && (a.Event.EventID != id || !bytes.Equal(a.Hash, hash)) {
			t.Fatalf("%s %s: decoded with id %s hash %x, the reference gives %s %x", collection, *c.SourcedID, a.Event.EventID, a.Hash, id, hash)
		}
		checked[collection]++
	}
	for round := range 4 {
		for _, collection := range Collections() {
			exp, in := generatedExport(t, collection, rng, 600)
			dec := NewRecordDecoder(meta)
			err := exp.WithValues().Map(collection+".csv", in, func(row mapping.Row) error {
				if row.Record == nil {
					return nil
				}
				a, errs, err := dec.DecodeMapped(row.Collection, row.Record, row.Values, "x", nil)
				if err != nil || errs != nil {
					return err
				}
				check(collection, meta, a)
				check(collection, ingest.Meta{TenantID: fmt.Sprintf("t%d", round), SourceID: "<s&>"}, a)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	for collection, body := range validJSON {
		accepted, rejected, err := DecodeJSON(collection, []byte(`{"`+collection+`":[`+body+`]}`), meta, Limits{}, nil)
		if err != nil || len(rejected) > 0 || len(accepted) != 1 {
			t.Fatalf("%s: %v %v", collection, rejected, err)
		}
		check(collection, meta, accepted[0])
	}
	for _, collection := range Collections() {
		if checked[collection] < 100 {
			t.Errorf("%s: %d records checked", collection, checked[collection])
		}
	}
	t.Logf("checked %v", checked)
}
