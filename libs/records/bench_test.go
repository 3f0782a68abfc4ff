package records

import "testing"

// benchRaw is a typical raw event: an attendance mark with school and class context.
func benchRaw(b *testing.B) *RawEvent {
	ev := sampleRaw(b, TypeAttendance)
	ev.SessionID = nil
	return ev
}

func BenchmarkEncodeRaw(b *testing.B) {
	c := newTestCodec(b)
	ev := benchRaw(b)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = c.AppendEncode(buf[:0], ev); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkEncodeRawAlloc(b *testing.B) {
	c := newTestCodec(b)
	ev := benchRaw(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Encode(ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeRaw(b *testing.B) {
	c := newTestCodec(b)
	data, err := c.Encode(benchRaw(b))
	if err != nil {
		b.Fatal(err)
	}
	var ev RawEvent
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Decode(data, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeEnriched(b *testing.B) {
	c := newTestCodec(b)
	data, err := c.Encode(sampleEnriched(b, TypeAssignmentSubmission))
	if err != nil {
		b.Fatal(err)
	}
	var ev EnrichedEvent
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Decode(data, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeRawParallel(b *testing.B) {
	c := newTestCodec(b)
	data, err := c.Encode(benchRaw(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var ev RawEvent
		for pb.Next() {
			if err := c.Decode(data, &ev); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
