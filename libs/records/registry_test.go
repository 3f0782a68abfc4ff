package records

import (
	"context"
	"errors"
	"os"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

func testSubjects() map[Kind]string {
	return map[Kind]string{
		KindRaw: "edtech.raw-value", KindEnriched: "edtech.enriched-value",
		KindDLQ: "edtech.dlq-value", KindControl: "edtech.control-value",
	}
}

func newRegistry(t *testing.T) (*srfake.Registry, *sr.Client) {
	t.Helper()
	reg := srfake.New()
	t.Cleanup(reg.Close)
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	return reg, cl
}

func TestRegistryCodec(t *testing.T) {
	ctx := context.Background()
	reg, cl := newRegistry(t)
	// Something else registered first, so registry ids differ from the catalog's.
	if _, _, err := reg.RegisterSchema("other-value", sr.Schema{Schema: `"string"`}); err != nil {
		t.Fatal(err)
	}
	producer, err := NewCodec(ctx, cl, testSubjects())
	if err != nil {
		t.Fatal(err)
	}
	again, err := NewCodec(ctx, cl, testSubjects())
	if err != nil {
		t.Fatal(err)
	}
	catalog := embeddedCatalog(t)
	for _, kind := range Kinds() {
		id, ok := producer.SchemaIDOf(kind)
		id2, _ := again.SchemaIDOf(kind)
		if !ok || id != id2 {
			t.Errorf("%s: registering twice gave ids %d and %d", kind, id, id2)
		}
		latest := mustLatest(t, catalog, kind)
		got, ok := reg.GetSchema(testSubjects()[kind], 1)
		if !ok || got.ID != int(id) || got.Schema.Schema != latest.JSON {
			t.Errorf("%s: subject %s holds %+v, want id %d with the catalog schema", kind, testSubjects()[kind], got, id)
		}
		if _, ok := reg.GetSchema(testSubjects()[kind], 2); ok {
			t.Errorf("%s: registering twice created a second version", kind)
		}
	}

	// A consumer that registers nothing itself learns every writer id from the registry.
	consumerClient, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	consumer, err := NewCodec(ctx, consumerClient, map[Kind]string{KindDLQ: "edtech.dlq-value"})
	if err != nil {
		t.Fatal(err)
	}
	in := sampleEnriched(t, TypeRosterUser)
	b, err := producer.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := SchemaID(b); id == mustLatest(t, catalog, KindEnriched).ID {
		t.Fatalf("frame carries the catalog id %d, want the registry's", id)
	}
	var out EnrichedEvent
	if err := consumer.Decode(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, &out) {
		t.Fatalf("registry round trip changed the record:\n in: %+v\nout: %+v", in, out)
	}
	if _, err := consumer.Encode(in); err == nil {
		t.Fatal("codec without a subject for enriched encoded an enriched event")
	}
	if _, err := consumer.Encode(sampleDLQ()); err != nil {
		t.Fatalf("encoding a kind with a subject: %v", err)
	}

	t.Run("older writer fetched by id", func(t *testing.T) {
		old, err := LoadCatalog(os.DirFS("testdata/evolution"))
		if err != nil {
			t.Fatal(err)
		}
		v1, _ := old.ByID(1001)
		ss, err := cl.CreateSchema(ctx, "legacy-value", sr.Schema{Schema: v1.JSON})
		if err != nil {
			t.Fatal(err)
		}
		want := sampleRaw(t, TypeAttendance)
		v1.ID = uint32(ss.ID)
		var got RawEvent
		if err := consumer.Decode(frame(t, v1, want), &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&got, want) {
			t.Fatalf("v1 data from the registry decoded as %+v, want %+v", got, want)
		}
	})
	t.Run("unknown id", func(t *testing.T) {
		err := consumer.Decode([]byte{0, 0, 0, 0x7f, 0x7f, 0}, new(RawEvent))
		if !errors.Is(err, ErrUnknownSchema) {
			t.Fatalf("Decode = %v, want ErrUnknownSchema", err)
		}
	})
	t.Run("registry down is transient", func(t *testing.T) {
		reg.Close()
		err := consumer.Decode([]byte{0, 0, 0, 0x7f, 0x7e, 0}, new(RawEvent))
		if err == nil || errors.Is(err, ErrUnknownSchema) || errors.Is(err, ErrBadFrame) {
			t.Fatalf("Decode with the registry down = %v, want a transient error", err)
		}
		// Ids already seen still decode.
		if err := consumer.Decode(b, &out); err != nil {
			t.Fatalf("cached id with the registry down: %v", err)
		}
	})
}

func TestRegistryRejectsInvalidSubjectKind(t *testing.T) {
	_, cl := newRegistry(t)
	if _, err := NewCodec(context.Background(), cl, map[Kind]string{Kind(9): "x-value"}); err == nil {
		t.Fatal("NewCodec accepted a subject for an invalid kind")
	}
}

func mustLatest(t *testing.T, c *Catalog, kind Kind) *Snapshot {
	t.Helper()
	s, ok := c.Latest(kind.SchemaName())
	if !ok {
		t.Fatalf("catalog has no %s", kind.SchemaName())
	}
	return s
}
