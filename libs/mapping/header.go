package mapping

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
)

// Header returns the column names of a CSV export's header row as the file has them (a byte order mark
// skipped), for comparing an export's columns between uploads; nil for a JSON export, whose records
// need not share their keys.
func (e *Export) Header(fileName string, r io.Reader) ([]string, error) {
	if e.format != formatCSV {
		return nil, nil
	}
	br := bufio.NewReader(io.LimitReader(r, int64(e.lim.MaxRowBytes)+readSlack))
	if b, err := br.Peek(len(bom)); err == nil && bytes.Equal(b, bom) {
		if _, err := br.Discard(len(bom)); err != nil {
			return nil, fmt.Errorf("%s: skipping the byte order mark: %w", fileName, err)
		}
	}
	cr := csv.NewReader(br)
	cr.Comma = e.comma
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %s:1: the file is empty: a header row is required", ErrInvalidExport, fileName)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: reading the header: %w", ErrInvalidExport, fileName, err)
	}
	if len(header) > e.lim.MaxColumns {
		return nil, fmt.Errorf("%w: %s:1: the header has %d columns, more than %d (Limits.MaxColumns)", ErrInvalidExport, fileName, len(header), e.lim.MaxColumns)
	}
	return header, nil
}
