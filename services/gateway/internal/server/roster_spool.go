package server

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
)

// rosterSpool keeps a roster request's encoded records on disk between the two steps of its import: the
// first pass compares, seals and encodes them as it decodes the upload; once the upload is decided they
// are read back, in order, and sent to Kafka or stored with the held upload. The file is unlinked as soon
// as it is created, so a crash leaves nothing behind; it holds exactly the bytes that go to raw (the
// identifying fields sealed under each person's data key).
//
// Each record is its key's and value's lengths (uvarints), a flag (held for references or not), then the
// key and the value.
type rosterSpool struct {
	f       *os.File
	w       *bufio.Writer
	records int
	bytes   int64
}

// errSpool marks a failure to write or read a request's spool file (the disk is full or failing).
var errSpool = errors.New("roster spool unavailable")

// spoolBuffer is the spool file's write and read buffer.
const spoolBuffer = 256 << 10

func newRosterSpool(dir string) (*rosterSpool, error) {
	f, err := os.CreateTemp(dir, "roster-*.spool")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errSpool, err)
	}
	if err := os.Remove(f.Name()); err != nil {
		_ = f.Close() // the error that matters is the one returned
		return nil, fmt.Errorf("%w: %w", errSpool, err)
	}
	return &rosterSpool{f: f, w: bufio.NewWriterSize(f, spoolBuffer)}, nil
}

// write appends encoded records, each flagged held (for references) or not.
func (s *rosterSpool) write(recs []rosters.Encoded, held bool) error {
	var head [2*binary.MaxVarintLen64 + 1]byte
	for _, r := range recs {
		n := binary.PutUvarint(head[:], uint64(len(r.Key)))
		n += binary.PutUvarint(head[n:], uint64(len(r.Value)))
		head[n] = 0
		if held {
			head[n] = 1
		}
		n++
		if _, err := s.w.Write(head[:n]); err != nil {
			return fmt.Errorf("%w: %w", errSpool, err)
		}
		if _, err := s.w.Write(r.Key); err != nil {
			return fmt.Errorf("%w: %w", errSpool, err)
		}
		if _, err := s.w.Write(r.Value); err != nil {
			return fmt.Errorf("%w: %w", errSpool, err)
		}
		s.records++
		s.bytes += int64(len(r.Key) + len(r.Value))
	}
	return nil
}

// replay reads the records back in order, in chunks of at most chunkRecords records and chunkBytes
// bytes (a record larger than that is a chunk of its own; an array is no larger than what is left, nor
// much larger than a chunk of average records): send is given those not held, each chunk in
// a fresh array it may keep; the held ones are returned. grow is charged for every array before it is
// filled, shrink given back what a chunk handed to send was charged once send returns (Kafka's producer
// holds what it was given until acknowledged, within its own bound).
func (s *rosterSpool) replay(chunkRecords int, chunkBytes int64, grow func(int64) error, shrink func(int64),
	send func([]rosters.Encoded) error) ([]rosters.Encoded, error) {
	if err := s.w.Flush(); err != nil {
		return nil, fmt.Errorf("%w: %w", errSpool, err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("%w: %w", errSpool, err)
	}
	r := bufio.NewReaderSize(s.f, spoolBuffer)
	var held []rosters.Encoded
	var chunk []rosters.Encoded
	var arena []byte
	var charged int64
	left := s.bytes // not yet read back
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		err := send(chunk)
		shrink(charged)
		chunk, arena, charged = nil, nil, 0
		return err
	}
	for range s.records {
		kl, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, fmt.Errorf("%w: reading back: %w", errSpool, err)
		}
		vl, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, fmt.Errorf("%w: reading back: %w", errSpool, err)
		}
		flag, err := r.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("%w: reading back: %w", errSpool, err)
		}
		n := int64(kl + vl)
		left -= n
		if flag == 1 {
			// Held records are kept until the upload is committed: each its own array, charged for good.
			b := make([]byte, n)
			if err := grow(n); err != nil {
				return nil, err
			}
			if _, err := io.ReadFull(r, b); err != nil {
				return nil, fmt.Errorf("%w: reading back: %w", errSpool, err)
			}
			held = append(held, rosters.Encoded{Key: b[:kl:kl], Value: b[kl:]})
			continue
		}
		if len(chunk) >= chunkRecords || int64(len(arena))+n > int64(cap(arena)) {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		if arena == nil {
			// No more than what is left to read, nor much more than a chunk of average records takes.
			size := min(chunkBytes, n+left, s.bytes/int64(s.records)*int64(chunkRecords)*5/4)
			size = max(size, n)
			if err := grow(size); err != nil {
				return nil, err
			}
			charged += size
			arena = make([]byte, 0, size)
		}
		start := len(arena)
		arena = arena[:start+int(n)]
		if _, err := io.ReadFull(r, arena[start:]); err != nil {
			return nil, fmt.Errorf("%w: reading back: %w", errSpool, err)
		}
		rec := arena[start : start+int(n) : start+int(n)]
		chunk = append(chunk, rosters.Encoded{Key: rec[:kl:kl], Value: rec[kl:]})
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return held, nil
}

// close closes (and so deletes) the spool file.
func (s *rosterSpool) close() {
	_ = s.f.Close() // the file is unlinked: nothing to keep
}
