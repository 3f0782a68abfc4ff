package app

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
)

// chRows renders the rows of a ClickHouse query, whatever its columns, as JSON objects or CSV records:
// each column is scanned into a value of the driver's type for it and formatted by a function chosen
// once per column, so that a row costs no reflection.
type chRows struct {
	rows  driver.Rows
	names []string
	dests []any
	cols  []chColumn
	keys  [][]byte // each column's `"name":`
	n     int64    // rows scanned so far
}

type chColumn struct {
	json func(b []byte) []byte // appends the value as JSON
	text func() string         // the value as CSV text; NULL is empty
}

func newCHRows(rows driver.Rows) *chRows {
	r := &chRows{rows: rows}
	for _, ct := range rows.ColumnTypes() {
		dest := reflect.New(ct.ScanType()).Interface()
		r.names = append(r.names, ct.Name())
		r.dests = append(r.dests, dest)
		r.cols = append(r.cols, columnFormat(dest, ct.DatabaseTypeName()))
		r.keys = append(r.keys, append(appendJSONString(nil, ct.Name()), ':'))
	}
	return r
}

// each scans every row and calls fn after each; it returns the number of rows and closes the rows.
func (r *chRows) each(fn func() error) (n int64, err error) {
	defer func() {
		if cerr := r.rows.Close(); err == nil {
			err = cerr
		}
	}()
	for r.rows.Next() {
		if err := r.rows.Scan(r.dests...); err != nil {
			return r.n, fmt.Errorf("reading clickhouse row %d: %w", r.n+1, err)
		}
		r.n++
		if err := fn(); err != nil {
			return r.n - 1, err
		}
	}
	return r.n, r.rows.Err()
}

// appendJSON appends the current row as a JSON object.
func (r *chRows) appendJSON(b []byte) []byte {
	b = append(b, '{')
	for i, c := range r.cols {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r.keys[i]...)
		b = c.json(b)
	}
	return append(b, '}')
}

// texts fills record (one string per column) with the current row's CSV text.
func (r *chRows) texts(record []string) {
	for i, c := range r.cols {
		record[i] = c.text()
	}
}

// columnFormat chooses how to format the values scanned into dest, a pointer to the driver's type of a
// column of ClickHouse type dbType.
func columnFormat(dest any, dbType string) chColumn {
	layout := time.RFC3339
	if strings.TrimSuffix(strings.TrimPrefix(dbType, "Nullable("), ")") == "Date" {
		layout = time.DateOnly
	}
	for _, try := range []func(any) (chColumn, bool){
		formatOf(appendJSONString, func(s string) string { return s }),
		formatOf(func(b []byte, u uuid.UUID) []byte { return appendJSONString(b, u.String()) }, uuid.UUID.String),
		formatOf(func(b []byte, t time.Time) []byte {
			return append(t.UTC().AppendFormat(append(b, '"'), layout), '"')
		}, func(t time.Time) string { return t.UTC().Format(layout) }),
		formatOf(appendUint[uint8], formatUint[uint8]), formatOf(appendUint[uint16], formatUint[uint16]),
		formatOf(appendUint[uint32], formatUint[uint32]), formatOf(appendUint[uint64], formatUint[uint64]),
		formatOf(appendInt[int8], formatInt[int8]), formatOf(appendInt[int16], formatInt[int16]),
		formatOf(appendInt[int32], formatInt[int32]), formatOf(appendInt[int64], formatInt[int64]),
		formatOf(appendFloat[float32], formatFloat[float32]), formatOf(appendFloat[float64], formatFloat[float64]),
		formatOf(strconv.AppendBool, strconv.FormatBool),
		formatOf(appendFloats, func(v []float64) string { return string(appendFloats(nil, v)) }), // quantiles
	} {
		if f, ok := try(dest); ok {
			return f
		}
	}
	// Anything else (arrays, decimals, ...): its JSON, in both formats.
	v := reflect.ValueOf(dest).Elem()
	encode := func() []byte {
		b, err := json.Marshal(v.Interface())
		if err != nil {
			return appendJSONString(nil, fmt.Sprint(v.Interface()))
		}
		return b
	}
	return chColumn{json: func(b []byte) []byte { return append(b, encode()...) }, text: func() string { return string(encode()) }}
}

// formatOf returns a function that formats the values of a column scanned into *T, or into **T when the
// column is Nullable (nil: JSON null, empty text).
func formatOf[T any](js func([]byte, T) []byte, text func(T) string) func(any) (chColumn, bool) {
	return func(dest any) (chColumn, bool) {
		switch p := dest.(type) {
		case *T:
			return chColumn{json: func(b []byte) []byte { return js(b, *p) }, text: func() string { return text(*p) }}, true
		case **T:
			return chColumn{
				json: func(b []byte) []byte {
					if *p == nil {
						return append(b, "null"...)
					}
					return js(b, **p)
				},
				text: func() string {
					if *p == nil {
						return ""
					}
					return text(**p)
				},
			}, true
		}
		return chColumn{}, false
	}
}

func appendUint[T uint8 | uint16 | uint32 | uint64](b []byte, v T) []byte {
	return strconv.AppendUint(b, uint64(v), 10)
}
func formatUint[T uint8 | uint16 | uint32 | uint64](v T) string {
	return strconv.FormatUint(uint64(v), 10)
}
func appendInt[T int8 | int16 | int32 | int64](b []byte, v T) []byte {
	return strconv.AppendInt(b, int64(v), 10)
}
func formatInt[T int8 | int16 | int32 | int64](v T) string { return strconv.FormatInt(int64(v), 10) }

// appendFloat writes NaN and infinities, which JSON has no numbers for, as null.
func appendFloat[T float32 | float64](b []byte, v T) []byte {
	if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, float64(v), 'g', -1, floatBits(v))
}
func formatFloat[T float32 | float64](v T) string {
	return strconv.FormatFloat(float64(v), 'g', -1, floatBits(v))
}

// floatBits is the precision to print v with: a float32 prints as its shortest float32 form.
func floatBits[T float32 | float64](v T) int {
	if _, ok := any(v).(float32); ok {
		return 32
	}
	return 64
}

// appendFloats appends a JSON array of numbers (NaN, which an empty quantile state merges to, as null).
func appendFloats(b []byte, v []float64) []byte {
	b = append(b, '[')
	for i, f := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendFloat(b, f)
	}
	return append(b, ']')
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	return append(append(append(b, '"'), s...), '"')
}
