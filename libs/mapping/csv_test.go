package mapping

import (
	"errors"
	"strings"
	"testing"
)

const csvRules = `version: 1
exports:
  - name: s
    format: csv
    collection: users
    fields:
      - {target: sourcedId, from: id, required: true}
      - {target: givenName, from: first, required: true}
      - {target: familyName, from: last}
      - {target: "grades[]", from: grade, map: {"K": KG, "1": "01"}}
      - {target: "roles[0].beginDate", from: start, date: MM/DD/YYYY}
      - {target: enabledUser, const: "true"}
`

const header = "id,first,last,grade,start,note\n"

func TestMapCSVBadInput(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		lim     Limits
		want    []string // row summaries, compared by prefix
		wantErr []string // substrings of the file error; nil for none
	}{
		{name: "clean", in: header + "1,Ann,Lee,K,09/01/2026,x\n2,Bo,Ng,1,,y\n",
			want: []string{"2 ok", "3 ok; finding empty start(5)|roles[0].beginDate"}},
		{name: "BOM and CRLF", in: "\ufeff" + strings.ReplaceAll(header+"1,Ann,Lee,K,09/01/2026,x\n2,Bo,Ng,1,09/02/2026,y\n", "\n", "\r\n"),
			want: []string{"2 ok", "3 ok"}},
		{name: "no final line break", in: header + "1,Ann,Lee,K,,x", want: []string{"2 ok"}},
		{name: "blank lines are skipped, lines still counted", in: header + "\n1,Ann,Lee,K,,x\n\n\n2,Bo,Ng,1,,y\n",
			want: []string{"3 ok", "6 ok"}},
		{name: "quoted line break", in: header + "1,\"Ann\nMarie\",Lee,K,,x\n2,Bo,Ng,1,,y\n", want: []string{"2 ok", "4 ok"}},
		{name: "bare quote, rows around it kept", in: header + "1,Ann,Lee,K,,x\n2,B\"o,Ng,1,,y\n3,Cy,Oh,K,,z\n",
			want: []string{"2 ok", `3 err first(2)||bare " in non-quoted-field (line 3, byte 4)`, "4 ok"}},
		{name: "text after a closing quote", in: header + "1,Ann,Lee,K,,x\n2,\"Bo\"x,Ng,1,,y\n3,Cy,Oh,K,,z\n",
			want: []string{"2 ok", `3 err first(2)||extraneous or missing " in quoted-field`, "4 ok"}},
		{name: "unterminated quote to the end", in: header + "1,Ann,Lee,K,,x\n2,\"Bo,Ng,1,,y\n3,Cy,Oh,K,,z\n",
			want:    []string{"2 ok"},
			wantErr: []string{"invalid export file", "in:3", "opened on line 3 never closes", "line 3 to its end (line 4)"}},
		{name: "wrong number of fields", in: header + "1,Ann,Lee,K,,x\n2,Bo,Ng\n3,Cy,Oh,K,,z,extra\n4,Di,Ra,K,,w\n",
			want: []string{"2 ok", "3 err (0)||the row has 3 fields, the header 6", "4 err (0)||the row has 7 fields, the header 6", "5 ok"}},
		{name: "missing required column", in: "id,last\n1,Lee\n",
			wantErr: []string{"invalid export file", "in:1", `no column "first"`, "required field givenName"}},
		{name: "missing optional column", in: "id,first\n1,Ann\n", want: []string{"2 ok"}},
		{name: "columns by name ignoring case and spaces", in: " ID ,First,LAST\n1,Ann,Lee\n", want: []string{"2 ok"}},
		{name: "ambiguous column", in: "id,First,FIRST\n1,Ann,Lee\n", wantErr: []string{`column "first" matches both "First" (2) and "FIRST" (3)`}},
		{name: "duplicate header", in: "id,first,id\n1,Ann,2\n", wantErr: []string{`in:1: columns 1 and 3 are both named "id"`}},
		{name: "empty file", in: "", wantErr: []string{"in:1: the file is empty"}},
		{name: "header only", in: header, want: nil},
		{name: "invalid UTF-8 in a column read", in: header + "1,A\xffn,Lee,K,,x\n2,Bo,Ng,1,,y\n",
			want: []string{"2 err first(2)||the value is not valid UTF-8", "3 ok"}},
		{name: "invalid UTF-8 in a column not read", in: header + "1,Ann,Lee,K,,\xff\n", want: []string{"2 ok"}},
		{name: "field above MaxFieldBytes", lim: Limits{MaxFieldBytes: 8}, in: header + "1,Annabelle-Marie,Lee,K,,x\n2,Bo,Ng,1,,y\n",
			want: []string{"2 err first(2)||the value is 15 bytes, more than 8", "3 ok"}},
		{name: "row above MaxRowBytes", lim: Limits{MaxRowBytes: 64}, in: header + "1,Ann,Lee,K,,x\n2,Bo,Ng,1,," + strings.Repeat("y", 100) + "\n3,Cy,Oh,K,,z\n",
			want: []string{"2 ok", "3 err (0)||the row is 111 bytes, more than 64", "4 ok"}},
		{name: "row far above MaxRowBytes", lim: Limits{MaxRowBytes: 64}, in: header + "1,Ann,Lee,K,,x\n2,Bo,Ng,1,," + strings.Repeat("y", 300_000) + "\n3,Cy,Oh,K,,z\n",
			want:    []string{"2 ok"},
			wantErr: []string{"after line 2: a row longer than 64 bytes", "the rest of the file was not read"}},
		{name: "required value empty", in: header + "1,,Lee,K,,x\n, ,Lee,K,,x\n",
			want: []string{"2 err first(2)|givenName|is required but empty", "3 err id(1)|sourcedId|is required but empty"}},
		{name: "value not in the map", in: header + "1,Ann,Lee,7,,x\n", want: []string{`2 err grade(4)|grades[]|value "7" is not in the rule's map`}},
		{name: "value not a date", in: header + "1,Ann,Lee,K,2026-09-01,x\n2,Bo,Ng,1,02/30/2026,y\n",
			want: []string{`2 err start(5)|roles[0].beginDate|value "2026-09-01" is not a date in the layout MM/DD/YYYY`,
				`3 err start(5)|roles[0].beginDate|value "02/30/2026" is not a date`}},
		{name: "every error of a row", in: header + "1,,Lee,9,13/01/2026,x\n",
			want: []string{"2 err first(2)|givenName|is required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp := mustParse(t, csvRules, tt.lim)
			rows, err := collect(exp, tt.in)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("MapCSV: %v", err)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, ErrInvalidExport) {
					t.Fatalf("MapCSV: %v, want an error wrapping ErrInvalidExport", err)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
			}
			if len(rows) != len(tt.want) {
				t.Fatalf("%d rows, want %d: %v", len(rows), len(tt.want), summaries(rows))
			}
			for i, r := range rows {
				if got := summary(r); !strings.HasPrefix(got, tt.want[i]) {
					t.Errorf("row %d: %s\n          want %s", i, got, tt.want[i])
				}
				if r.File != "in" || r.Collection != "users" || len(r.Raw) == 0 {
					t.Errorf("row %d: file %q collection %q raw %q", i, r.File, r.Collection, r.Raw)
				}
			}
		})
	}
}

func summaries(rows []Row) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = summary(r)
	}
	return out
}

func TestMapCSVRowErrorsListEveryProblem(t *testing.T) {
	exp := mustParse(t, csvRules, Limits{})
	rows := mapCSV(t, exp, header+"1,,Lee,9,13/01/2026,x\n")
	var got []string
	for _, e := range rows[0].Errors {
		got = append(got, e.Error())
	}
	want := []string{
		`in:2: column "first" (2): givenName: is required but empty`,
		`in:2: column "grade" (4): grades[]: value "9" is not in the rule's map`,
		`in:2: column "start" (5): roles[0].beginDate: value "13/01/2026" is not a date in the layout MM/DD/YYYY`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestMapCSVRaw(t *testing.T) {
	exp := mustParse(t, csvRules, Limits{})
	in := "\ufeff" + header + "1,\"Ann\r\nMarie\",Lee,K,,x\r\n2,B\"o,Ng,1,,y\r\n3,Cy,Oh,K,,z"
	rows := mapCSV(t, exp, in)
	want := []string{"1,\"Ann\r\nMarie\",Lee,K,,x", "2,B\"o,Ng,1,,y", "3,Cy,Oh,K,,z"}
	for i, r := range rows {
		if string(r.Raw) != want[i] {
			t.Errorf("row %d raw %q, want %q", i, r.Raw, want[i])
		}
	}
	if got := string(rows[0].Record); got != `{"sourcedId":"1","status":"active","enabledUser":true,"givenName":"Ann\nMarie","familyName":"Lee","grades":["KG"]}` {
		t.Errorf("record %s", got)
	}
}

// TestMapCSVRawAcrossBuffers checks raw bytes of rows far from the start of a large file, where the
// reader's buffer has been compacted many times.
func TestMapCSVRawAcrossBuffers(t *testing.T) {
	exp := mustParse(t, csvRules, Limits{})
	var b strings.Builder
	b.WriteString(header)
	const n = 20_000
	for i := range n {
		b.WriteString(strings.Repeat("9", i%7+1))
		b.WriteString(",Ann,Lee,K,,note\n")
	}
	count := 0
	err := exp.MapCSV("big.csv", strings.NewReader(b.String()), func(r Row) error {
		want := strings.Repeat("9", count%7+1) + ",Ann,Lee,K,,note"
		if string(r.Raw) != want || r.Line != count+2 || r.Record == nil {
			t.Fatalf("row %d: line %d raw %q", count, r.Line, r.Raw)
		}
		count++
		return nil
	})
	if err != nil || count != n {
		t.Fatalf("MapCSV: %v after %d rows", err, count)
	}
}

func TestMapCSVStopsOnCallbackError(t *testing.T) {
	exp := mustParse(t, csvRules, Limits{})
	stop := errors.New("stop")
	calls := 0
	err := exp.MapCSV("in", strings.NewReader(header+"1,A,B,K,,x\n2,A,B,K,,x\n"), func(Row) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 || !strings.Contains(err.Error(), "in:2") {
		t.Errorf("MapCSV: %v after %d calls", err, calls)
	}
}

func TestMapCSVDeterministic(t *testing.T) {
	exp := mustParse(t, csvRules, Limits{})
	in := header + "1,Ann,Lee,K,09/01/2026,x\n2,Bo,Ng,1,,y\n"
	a, b := mapCSV(t, exp, in), mapCSV(t, exp, in)
	for i := range a {
		if string(a[i].Record) != string(b[i].Record) {
			t.Errorf("row %d differs: %s / %s", i, a[i].Record, b[i].Record)
		}
	}
}

// TestExportConcurrentUse maps files with one Export from several goroutines (run with -race).
func TestExportConcurrentUse(t *testing.T) {
	exp := mustParse(t, csvRules, Limits{})
	in := header + "1,Ann,Lee,K,09/01/2026,x\n2,Bo,Ng,1,,y\n3,,Oh,K,,z\n"
	want := summaries(mapCSV(t, exp, in))
	done := make(chan []string)
	for range 4 {
		go func() {
			rows, err := collect(exp.WithModified(exampleModified), in)
			if err != nil {
				done <- []string{err.Error()}
				return
			}
			done <- summaries(rows)
		}()
	}
	for range 4 {
		if got := <-done; strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("concurrent mapping: %v, want %v", got, want)
		}
	}
}
