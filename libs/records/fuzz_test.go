package records

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode for every kind, both as a whole frame and as an Avro body
// behind each kind's own header (so the fuzzer reaches the Avro decoder). Decode must return an error
// wrapping a sentinel, or a record that survives a re-encode unchanged; it must never panic (Decode
// turns decoder panics into errors, which this test reports).
func FuzzDecode(f *testing.F) {
	c := newTestCodec(f)
	seeds := []any{sampleRaw(f, TypeAttendance), sampleRaw(f, TypeRosterUser), sampleEnriched(f, TypeSession),
		sampleEnriched(f, TypeRosterResult), sampleDLQ(), sampleControl()}
	for _, v := range seeds {
		b, err := c.Encode(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-3])
	}
	f.Add([]byte{0, 0, 0, 0, 1})
	f.Add([]byte{0, 0, 0, 0, 3, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	kinds := []struct {
		kind  Kind
		fresh func() any
	}{
		{KindRaw, func() any { return new(RawEvent) }},
		{KindEnriched, func() any { return new(EnrichedEvent) }},
		{KindDLQ, func() any { return new(DLQRecord) }},
		{KindControl, func() any { return new(ControlCommand) }},
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, k := range kinds {
			id, _ := c.SchemaIDOf(k.kind)
			body := b
			if len(b) >= headerSize {
				body = b[headerSize:]
			}
			framed := append(binary.BigEndian.AppendUint32([]byte{magicByte}, id), body...)
			for _, in := range [][]byte{b, framed} {
				v := k.fresh()
				err := c.Decode(in, v)
				if err != nil {
					if strings.Contains(err.Error(), "decoder panic") {
						t.Fatalf("decoder panicked on %x: %v", in, err)
					}
					if !errors.Is(err, ErrBadFrame) && !errors.Is(err, ErrUnknownSchema) {
						t.Fatalf("error %v wraps neither sentinel", err)
					}
					continue
				}
				again, err := c.Encode(v)
				if err != nil {
					t.Fatalf("re-encoding a decoded %T: %v", v, err)
				}
				w := k.fresh()
				if err := c.Decode(again, w); err != nil {
					t.Fatalf("decoding a re-encoded %T: %v", v, err)
				}
				if !reflect.DeepEqual(v, w) {
					t.Fatalf("re-encode changed the record:\n%+v\n%+v", v, w)
				}
			}
		}
	})
}
