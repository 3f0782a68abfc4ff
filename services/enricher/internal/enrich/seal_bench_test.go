package enrich_test

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkEnrichSealed enriches one learning event whose actor SIS id the gateway sealed, against the
// same event in plaintext: the difference is opening the raw field and sealing the enriched record's
// identifying fields again (data keys cached, as in steady state). Each call is one record's batch, so
// its database round trips dominate.
func BenchmarkEnrichSealed(b *testing.B) {
	e := newEnv(b, "d1")
	for _, c := range []struct {
		name   string
		sealed bool
	}{{"plaintext", false}, {"sealed", true}} {
		b.Run(c.name, func(b *testing.B) {
			recs := make([]*kgo.Record, 256)
			for i := range recs {
				ev := e.event("d1", "sis", "A", session("tablet-7"))
				if c.sealed {
					ev = e.seal(ev)
				}
				recs[i] = e.record(ev)
			}
			e.run(recs[0]) // the identity and the key, cached
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if out := e.run(recs[i%len(recs)]); out.Enriched == nil {
					b.Fatalf("not enriched: %+v", out)
				}
			}
		})
	}
}
