package records

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

// Sentinel errors of Decode; callers route such records to the DLQ with the matching reason.
var (
	// ErrBadFrame means the bytes are not a Confluent-framed Avro record that decodes: too short, a
	// wrong magic byte, or an Avro body that does not match its schema (ReasonUndecodable).
	ErrBadFrame = errors.New("records: bad frame")
	// ErrUnknownSchema means the frame's schema id is unknown to the catalog or the registry, or names a
	// schema that cannot be read as the requested record (ReasonUnknownSchema).
	ErrUnknownSchema = errors.New("records: unknown schema")
)

const (
	magicByte  = 0
	headerSize = 5 // magic byte + 4-byte big-endian schema id

	// Decoding limits, so hostile bytes cannot make the decoder allocate without bound.
	maxBytesLen = 4 << 20 // longest string or bytes value (Kafka records are 1 MiB by default)
	maxArrayLen = 1 << 15 // most elements in one array

	maxPooledBuffer = 64 << 10 // encode buffers above this size are not reused
	fetchTimeout    = 10 * time.Second
)

// SchemaID returns the schema id of a Confluent-framed value. Errors wrap ErrBadFrame.
func SchemaID(b []byte) (uint32, error) {
	if len(b) < headerSize {
		return 0, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrBadFrame, len(b), headerSize)
	}
	if b[0] != magicByte {
		return 0, fmt.Errorf("%w: magic byte %#x, want 0", ErrBadFrame, b[0])
	}
	return binary.BigEndian.Uint32(b[1:headerSize]), nil
}

// Codec encodes and decodes the four top-level records in the Confluent wire format. It always writes
// the latest schema of each kind and reads any version it can resolve against it. A Codec is safe for
// concurrent use.
type Codec struct {
	api     avro.API
	catalog *Catalog
	reg     *sr.Client
	kinds   [KindControl + 1]kindSchema

	resolved sync.Map // readerKey(kind, id) -> avro.Schema: the kind's schema resolved against a writer id
	fetched  sync.Map // uint32 id -> avro.Schema fetched from the registry
	fetchMu  sync.Mutex
	writers  sync.Pool // *avro.Writer
	readers  sync.Pool // *avro.Reader
}

type kindSchema struct {
	latest *Snapshot
	id     uint32 // written by Encode
	canEnc bool   // false in registry mode when no subject was given for the kind
}

// readerKey keys Codec.resolved: the kind above the writer's schema id.
func readerKey(kind Kind, id uint32) uint64 { return uint64(kind)<<32 | uint64(id) }

// NewCodec builds a codec. With reg == nil ids come from the embedded catalog; otherwise each kind's
// latest schema is registered (idempotent CreateSchema) under subjects[kind] (e.g. "edtech.raw-value")
// and unknown ids met while decoding are fetched by id from the registry and cached. In registry mode a
// kind without a subject can be decoded but not encoded.
func NewCodec(ctx context.Context, reg *sr.Client, subjects map[Kind]string) (*Codec, error) {
	catalog, err := EmbeddedCatalog()
	if err != nil {
		return nil, fmt.Errorf("loading schema catalog: %w", err)
	}
	for _, kind := range Kinds() {
		if _, ok := catalog.Latest(kind.SchemaName()); !ok {
			return nil, fmt.Errorf("schema catalog has no %s", kind.SchemaName())
		}
	}
	return newCodec(ctx, catalog, reg, subjects)
}

// newCodec builds a codec over any catalog; kinds missing from it can be neither encoded nor decoded.

func newCodec(ctx context.Context, catalog *Catalog, reg *sr.Client, subjects map[Kind]string) (*Codec, error) {
	c := &Codec{
		api: avro.Config{
			TagKey:            "avro",
			MaxByteSliceSize:  maxBytesLen,
			MaxSliceAllocSize: maxArrayLen,
		}.Freeze(),
		catalog: catalog,
		reg:     reg,
	}
	c.writers.New = func() any { return avro.NewWriter(nil, 512, avro.WithWriterConfig(c.api)) }
	c.readers.New = func() any { return avro.NewReader(nil, 0, avro.WithReaderConfig(c.api)) }
	for kind := range subjects {
		if kind.SchemaName() == "" {
			return nil, fmt.Errorf("subject for invalid kind %d", kind)
		}
	}
	for _, kind := range Kinds() {
		latest, ok := catalog.Latest(kind.SchemaName())
		if !ok {
			continue
		}
		ks := kindSchema{latest: latest, id: latest.ID, canEnc: true}
		if reg != nil {
			subject := subjects[kind]
			if subject == "" {
				c.kinds[kind] = kindSchema{latest: latest}
				continue
			}
			ss, err := reg.CreateSchema(ctx, subject, sr.Schema{Schema: latest.JSON, Type: sr.TypeAvro})
			if err != nil {
				return nil, fmt.Errorf("registering %s under subject %q: %w", latest.FileName(), subject, err)
			}
			ks.id = uint32(ss.ID)
			c.fetched.Store(ks.id, latest.Schema)
		}
		c.kinds[kind] = ks
	}
	return c, nil
}

// SchemaIDOf returns the schema id Encode writes for kind, and false if the codec cannot encode it.
func (c *Codec) SchemaIDOf(kind Kind) (uint32, bool) {
	if kind.SchemaName() == "" || !c.kinds[kind].canEnc {
		return 0, false
	}
	return c.kinds[kind].id, true
}

// Encode returns v (*RawEvent, *EnrichedEvent, *DLQRecord or *ControlCommand) in the Confluent wire
// format with the latest schema of its kind.
func (c *Codec) Encode(v any) ([]byte, error) {
	return c.encode(nil, v, true)
}

// AppendEncode appends the encoding of v to dst and returns the extended slice (dst on error).
func (c *Codec) AppendEncode(dst []byte, v any) ([]byte, error) {
	return c.encode(dst, v, false)
}

func (c *Codec) encode(dst []byte, v any, exact bool) ([]byte, error) {
	kind, err := kindOf(v)
	if err != nil {
		return dst, err
	}
	ks := &c.kinds[kind]
	if !ks.canEnc {
		return dst, fmt.Errorf("encoding %s: no registry subject configured for it", kind)
	}
	w := c.writers.Get().(*avro.Writer)
	w.Reset(nil)
	w.Error = nil
	w.WriteVal(ks.latest.Schema, v)
	if w.Error != nil {
		err := w.Error
		c.release(w)
		return dst, fmt.Errorf("encoding %s: %w", kind, err)
	}
	body := w.Buffer()
	if exact {
		dst = make([]byte, 0, headerSize+len(body))
	}
	dst = append(dst, magicByte)
	dst = binary.BigEndian.AppendUint32(dst, ks.id)
	dst = append(dst, body...)
	c.release(w)
	return dst, nil
}

func (c *Codec) release(w *avro.Writer) {
	if cap(w.Buffer()) <= maxPooledBuffer {
		c.writers.Put(w)
	}
}

// Decode decodes the Confluent-framed value b into v (*RawEvent, *EnrichedEvent, *DLQRecord or
// *ControlCommand), which it resets first. A writer schema that differs from the latest is resolved
// against it (new fields take their defaults, removed ones are skipped), once per writer id.
//
// Errors wrap ErrBadFrame or ErrUnknownSchema for records that will never decode; any other error
// (the registry unreachable) is transient and worth a retry. Decode never panics on arbitrary bytes.
func (c *Codec) Decode(b []byte, v any) error {
	kind, err := reset(v)
	if err != nil {
		return err
	}
	id, err := SchemaID(b)
	if err != nil {
		return err
	}
	schema, err := c.readerSchema(kind, id)
	if err != nil {
		return err
	}
	if err := c.unmarshal(schema, b[headerSize:], v); err != nil {
		return fmt.Errorf("%w: decoding %s with schema id %d: %w", ErrBadFrame, kind, id, err)
	}
	return nil
}

// unmarshal decodes body into v. Unlike avro.Unmarshal it rejects a body that ends early or has bytes
// left over, and it turns a panic deep in the decoder into an error: a poison record must reach the
// DLQ, not crash its consumer in a loop.
func (c *Codec) unmarshal(schema avro.Schema, body []byte, v any) (err error) {
	r := c.readers.Get().(*avro.Reader)
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("decoder panic: %v", p)
			return
		}
		c.readers.Put(r)
	}()
	r.Reset(body)
	r.Error = nil
	r.ReadVal(schema, v)
	if r.Error != nil {
		if errors.Is(r.Error, io.EOF) || errors.Is(r.Error, io.ErrUnexpectedEOF) {
			return fmt.Errorf("body ends early: %w", r.Error)
		}
		return r.Error
	}
	if r.Peek(); r.Error == nil {
		return errors.New("bytes left over after the record")
	}
	return nil
}

// readerSchema returns the schema that decodes data written with schema id into kind's Go type.
func (c *Codec) readerSchema(kind Kind, id uint32) (avro.Schema, error) {
	if ks := &c.kinds[kind]; ks.canEnc && ks.id == id {
		return ks.latest.Schema, nil // written with the latest schema: no resolution needed
	}
	key := readerKey(kind, id)
	if s, ok := c.resolved.Load(key); ok {
		return s.(avro.Schema), nil
	}
	latest := c.kinds[kind].latest
	if latest == nil {
		return nil, fmt.Errorf("%w: the codec has no schema for %s", ErrUnknownSchema, kind)
	}
	writer, err := c.writerSchema(id)
	if err != nil {
		return nil, err
	}
	resolved, err := avro.NewSchemaCompatibility().Resolve(latest.Schema, writer)
	if err != nil {
		return nil, fmt.Errorf("%w: schema id %d cannot be read as %s: %w", ErrUnknownSchema, id, latest.Name, err)
	}
	s, _ := c.resolved.LoadOrStore(key, resolved)
	return s.(avro.Schema), nil
}

// writerSchema returns the schema with the given id, from the catalog or the registry.
func (c *Codec) writerSchema(id uint32) (avro.Schema, error) {
	if c.reg == nil {
		s, ok := c.catalog.ByID(id)
		if !ok {
			return nil, fmt.Errorf("%w: id %d is not in the schema catalog", ErrUnknownSchema, id)
		}
		return s.Schema, nil
	}
	if s, ok := c.fetched.Load(id); ok {
		return s.(avro.Schema), nil
	}
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	if s, ok := c.fetched.Load(id); ok {
		return s.(avro.Schema), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	got, err := c.reg.SchemaByID(ctx, int(id))
	if err != nil {
		if re := (*sr.ResponseError)(nil); errors.As(err, &re) &&
			(re.ErrorCode == sr.ErrSchemaNotFound.Code || re.StatusCode == http.StatusNotFound) {
			return nil, fmt.Errorf("%w: id %d is not in the schema registry", ErrUnknownSchema, id)
		}
		return nil, fmt.Errorf("fetching schema id %d from the registry: %w", id, err)
	}
	if got.Type != sr.TypeAvro || len(got.References) > 0 {
		return nil, fmt.Errorf("%w: schema id %d is not a self-contained Avro schema", ErrUnknownSchema, id)
	}
	s, err := avro.ParseBytesWithCache([]byte(got.Schema), "", &avro.SchemaCache{})
	if err != nil {
		return nil, fmt.Errorf("%w: parsing schema id %d: %w", ErrUnknownSchema, id, err)
	}
	c.fetched.Store(id, s)
	return s, nil
}

// kindOf returns the kind of a non-nil pointer to a top-level record.
func kindOf(v any) (Kind, error) {
	switch v := v.(type) {
	case *RawEvent:
		if v != nil {
			return KindRaw, nil
		}
	case *EnrichedEvent:
		if v != nil {
			return KindEnriched, nil
		}
	case *DLQRecord:
		if v != nil {
			return KindDLQ, nil
		}
	case *ControlCommand:
		if v != nil {
			return KindControl, nil
		}
	}
	return 0, fmt.Errorf("records: %T is not a non-nil *RawEvent, *EnrichedEvent, *DLQRecord or *ControlCommand", v)
}

// reset zeroes the record v points to and returns its kind.
func reset(v any) (Kind, error) {
	kind, err := kindOf(v)
	if err != nil {
		return 0, err
	}
	switch v := v.(type) {
	case *RawEvent:
		*v = RawEvent{}
	case *EnrichedEvent:
		*v = EnrichedEvent{}
	case *DLQRecord:
		*v = DLQRecord{}
	case *ControlCommand:
		*v = ControlCommand{}
	}
	return kind, nil
}
