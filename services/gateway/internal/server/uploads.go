package server

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/edtech-analytics/platform/libs/mapping"
	"github.com/edtech-analytics/platform/libs/tenancy/mappings"
	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
	"github.com/edtech-analytics/platform/services/gateway/internal/roster"
)

// Mapped uploads (POST /v1/sources/{source}/uploads) carry a SIS's own export, CSV or JSON, or a zip of
// several: each file is mapped into OneRoster records with the source's current mapping rules
// (libs/tenancy/mappings, stored with 'ctl mapping apply'), and the records take the path of OneRoster
// input: decoded and checked record by record, through the roster import step, to raw. A row the rules
// cannot map (a required value missing, a value no map knows) is rejected naming file, line, column
// and target, and dead-lettered; good rows beside it go on.
//
// Query parameters: file names the body's file when it is not a zip (the rules' match globs choose the
// export; default: the export named by export); export names the export directly; mode is bulk or
// delta (default delta): a bulk file is the source's whole truth for its entity, unless a row of it
// was rejected (a rejected row names no record, so nothing of the entity is deactivated, and a finding
// says so); dry_run=true maps and checks without ingesting and answers the first rows (rows=N, default
// 20) and every error.

// mappedOrder is the order a zip's files are mapped in: entities before the records that reference them.
var mappedOrder = []string{rosters.Orgs, rosters.AcademicSessions, rosters.Courses, rosters.Classes, rosters.Users,
	rosters.Enrollments, rosters.Demographics, rosters.LineItems, rosters.Results}

// maxFindings bounds the findings an answer lists (all are counted).
const maxFindings = 100

// MappedResponse answers a mapped upload.
type MappedResponse struct {
	RosterResponse
	// RulesVersion is the version of the source's mapping rules the upload was mapped with.
	RulesVersion int `json:"rules_version"`
	// Findings are data-quality findings that rejected no row (e.g. an empty value a rule reads), the
	// first maxFindings of them, and FindingCount all of them.
	Findings     []Finding `json:"findings"`
	FindingCount int       `json:"finding_count"`
	// Rows are the first mapped records of a dry run.
	Rows []MappedRow `json:"rows,omitempty"`
}

// Finding is a data-quality finding of a mapped upload: where (file, line, the export's column) and
// what (kind: empty, unmapped, incomplete, bulk-skipped).
type Finding struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Column  string `json:"column,omitempty"`
	Target  string `json:"target,omitempty"`
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

func findingOf(f mapping.Finding) Finding {
	return Finding{File: f.File, Line: f.Line, Column: f.Column, Target: f.Target, Kind: f.Kind, Message: f.Message}
}

// MappedRow is a mapped record of a dry run.
type MappedRow struct {
	File       string          `json:"file"`
	Line       int             `json:"line"`
	Collection string          `json:"collection"`
	Record     json.RawMessage `json:"record"`
}

// mappedFile is one file of a mapped upload and the export that maps it.
type mappedFile struct {
	name   string
	body   []byte
	export *mapping.Export
}

func (s *Server) postSourceUpload(w http.ResponseWriter, r *http.Request, key Key) {
	ctx := r.Context()
	source := r.PathValue("source")
	if source != key.SourceID {
		writeProblem(w, http.StatusForbidden, "forbidden", "Forbidden",
			fmt.Sprintf("this key sends for source %q, not %q", key.SourceID, source), 0)
		return
	}
	q := r.URL.Query()
	mode := rosters.Mode(q.Get("mode"))
	if mode == "" {
		mode = rosters.Delta
	}
	dryRun := q.Get("dry_run") == "true"
	rowsWanted := 20
	if v := q.Get("rows"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeProblem(w, http.StatusBadRequest, "malformed-request", "Malformed request", "rows: a count of rows, 0 or more", 0)
			return
		}
		rowsWanted = n
	}
	if mode != rosters.Bulk && mode != rosters.Delta {
		writeProblem(w, http.StatusBadRequest, "malformed-request", "Malformed request", "mode: bulk or delta", 0)
		return
	}
	ctype, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ctype != "text/csv" && ctype != "application/json" && ctype != "application/zip" {
		writeProblem(w, http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type",
			"Content-Type must be text/csv, application/json or application/zip", 0)
		return
	}
	rules, version, err := s.mappings.Current(context.WithoutCancel(ctx), key.TenantID, source)
	switch {
	case errors.Is(err, mappings.ErrNoRules):
		writeProblem(w, http.StatusConflict, "no-mapping-rules", "No mapping rules", err.Error(), 0)
		return
	case err != nil:
		s.log.WarnContext(ctx, "reading mapping rules", "tenant_id", key.TenantID, "err", err)
		writeProblem(w, http.StatusServiceUnavailable, "roster-store-unavailable", "Cannot accept the upload now",
			"the mapping rules could not be read; nothing was accepted; retry the same request", retryAfterBusy)
		return
	}
	mem := s.budget.reserve()
	defer mem.release()
	body, ok := s.readRosterBody(w, r, mem)
	if !ok {
		return
	}
	files, err := s.mappedFiles(rules, ctype, q.Get("file"), q.Get("export"), body, mem)
	if err != nil {
		writeDecodeError(w, err)
		return
	}
	meta := ingest.Meta{TenantID: key.TenantID, SourceID: key.SourceID, ReceivedAt: s.now()}
	mu := &mappedUpload{meta: meta, files: files, mode: mode, maxRows: s.limits.Roster.WithDefaults().MaxRecords}
	if dryRun {
		var rows []MappedRow
		accepted := 0
		if err := mu.run(nil, func(_ ingest.Accepted, row mapping.Row) error {
			accepted++
			if len(rows) < rowsWanted {
				rows = append(rows, MappedRow{File: row.File, Line: row.Line, Collection: row.Collection, Record: row.Record})
			}
			return nil
		}); err != nil {
			writeDecodeError(w, err)
			return
		}
		out := mu.response(RosterResponse{EventsResponse: EventsResponse{Accepted: accepted, Rejected: mu.rejected}}, version.Version)
		out.Rows = rows
		writeJSON(w, http.StatusOK, out)
		return
	}
	s.importRoster(w, r, key, fmt.Sprintf("mapped:v%d", version.Version), body, mu, mem, func(rr RosterResponse, _ *decoded) any {
		return mu.response(rr, version.Version)
	})
}

// mappedFiles returns the files of a mapped upload with the exports that map them, in dependency order.
func (s *Server) mappedFiles(rules *mapping.Rules, ctype, file, export string, body []byte, mem *reservation) ([]mappedFile, error) {
	pick := func(name string) (*mapping.Export, error) {
		if export != "" {
			if e, ok := rules.Export(export); ok {
				return e, nil
			}
			return nil, fmt.Errorf("%w: export %q is not in the source's rules; they have %s", roster.ErrInvalidPackage, export, strings.Join(rules.Exports(), ", "))
		}
		if e, ok := rules.Match(name); ok {
			return e, nil
		}
		return nil, fmt.Errorf("%w: no export of the source's rules matches the file %q (exports: %s); name the file (file=) or the export (export=)",
			roster.ErrInvalidPackage, name, strings.Join(rules.Exports(), ", "))
	}
	var out []mappedFile
	if ctype != "application/zip" {
		name := file
		if name == "" {
			name = "upload"
			if export == "" {
				return nil, fmt.Errorf("%w: give the file's name (file=) or the export (export=)", roster.ErrInvalidPackage)
			}
		}
		e, err := pick(name)
		if err != nil {
			return nil, err
		}
		out = append(out, mappedFile{name: name, body: body, export: e})
	} else {
		zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
		if err != nil {
			return nil, fmt.Errorf("%w: not a zip archive: %v", roster.ErrInvalidPackage, err)
		}
		if len(zr.File) > roster.MaxPackageFiles {
			return nil, fmt.Errorf("%w: %d files, at most %d", roster.ErrPackageTooLarge, len(zr.File), roster.MaxPackageFiles)
		}
		lim := s.limits.Roster.WithDefaults()
		var total uint64
		seen := map[string]string{} // lower-case name -> the name
		for _, f := range zr.File {
			if strings.HasSuffix(f.Name, "/") || strings.HasPrefix(f.Name, "__MACOSX/") {
				continue
			}
			if other, ok := seen[strings.ToLower(f.Name)]; ok {
				// Extracted on a file system that ignores case, one would replace the other.
				return nil, fmt.Errorf("%w: %q and %q: file names in a zip must differ by more than case", roster.ErrInvalidPackage, other, f.Name)
			}
			seen[strings.ToLower(f.Name)] = f.Name
			if total += f.UncompressedSize64; f.UncompressedSize64 > uint64(lim.MaxFileBytes) || total > uint64(lim.MaxUnzippedBytes) {
				return nil, fmt.Errorf("%w: %s: %d bytes unzipped; at most %d a file and %d a package", roster.ErrPackageTooLarge,
					f.Name, f.UncompressedSize64, lim.MaxFileBytes, lim.MaxUnzippedBytes)
			}
			e, err := pick(f.Name)
			if err != nil {
				return nil, err
			}
			if err := mem.Grow(int64(f.UncompressedSize64)); err != nil {
				return nil, fmt.Errorf("%s: %w", f.Name, err)
			}
			rc, err := f.Open()
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %v", roster.ErrInvalidPackage, f.Name, err)
			}
			// The declared size bounds the read: the zip reader refuses a file that inflates past it.
			b, err := io.ReadAll(io.LimitReader(rc, int64(f.UncompressedSize64)+1))
			_ = rc.Close() // read-only
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %v", roster.ErrInvalidPackage, f.Name, err)
			}
			out = append(out, mappedFile{name: f.Name, body: b, export: e})
		}
	}
	slices.SortStableFunc(out, func(a, b mappedFile) int {
		return slices.Index(mappedOrder, a.export.Collection()) - slices.Index(mappedOrder, b.export.Collection())
	})
	return out, nil
}

// mappedUpload maps a mapped upload's files row by row; it is the upload's rosterSource.
type mappedUpload struct {
	meta    ingest.Meta
	files   []mappedFile
	mode    rosters.Mode
	maxRows int // rows an upload may hold (the roster limits' MaxRecords)

	infos    []roster.FileInfo
	rejected []ingest.Rejected
	findings []Finding
	nFinding int
}

func (mu *mappedUpload) pass(_ []byte, _ ingest.Meta, mem roster.Memory, each func(ingest.Accepted) error) (*decoded, error) {
	if err := mu.run(mem, func(a ingest.Accepted, _ mapping.Row) error { return each(a) }); err != nil {
		return nil, err
	}
	d := &decoded{rejected: mu.rejected, files: mu.infos}
	d.findings, _ = json.Marshal(mu.findings)
	return d, nil
}

func (mu *mappedUpload) fileOf(a ingest.Accepted) string { return a.File }

// run maps every file, passing each decoded record to each; mem, when set, is charged for them. It keeps
// the rejected rows, the findings and the files.
func (mu *mappedUpload) run(mem roster.Memory, each func(ingest.Accepted, mapping.Row) error) error {
	dec := roster.NewRecordDecoder(mu.meta)
	next := 0
	for _, f := range mu.files {
		info := roster.FileInfo{Name: f.name, Collection: f.export.Collection(), Mode: mu.mode, From: next, Export: f.export.Name()}
		// The header, for the quality report's comparison with the export's file before (an unreadable
		// header fails the mapping below with the same error).
		info.Columns, _ = f.export.Header(f.name, bytes.NewReader(f.body))
		rejectedBefore := len(mu.rejected)
		exp := f.export.WithModified(mu.meta.ReceivedAt).WithValues()
		err := exp.Map(f.name, bytes.NewReader(f.body), func(row mapping.Row) error {
			i := info.From + row.Index
			if next = i + 1; next > mu.maxRows {
				return fmt.Errorf("%w: more than %d rows", ingest.ErrTooManyEvents, mu.maxRows)
			}
			info.Findings += len(row.Findings)
			for _, fd := range row.Findings {
				if mu.nFinding++; len(mu.findings) < maxFindings {
					mu.findings = append(mu.findings, findingOf(fd))
				}
			}
			if row.Errors != nil {
				errs := make([]ingest.FieldError, len(row.Errors))
				for j, fe := range row.Errors {
					errs[j] = ingest.FieldError{Field: where(fe.Position) + " (" + fe.Target + ")", Message: fe.Message}
				}
				mu.rejected = append(mu.rejected, ingest.Rejected{Index: i, Errors: errs, Raw: row.Raw})
				return nil
			}
			a, errs, err := dec.DecodeMapped(row.Collection, row.Record, row.Values, row.File+":"+strconv.Itoa(row.Line), mem)
			if err != nil {
				return err
			}
			if errs != nil {
				mu.rejected = append(mu.rejected, ingest.Rejected{Index: i, Errors: errs, Raw: row.Raw})
				return nil
			}
			a.Index, a.File = i, f.name
			return each(a, row)
		})
		if err != nil {
			if errors.Is(err, mapping.ErrInvalidExport) || errors.Is(err, mapping.ErrWrongFormat) {
				return fmt.Errorf("%w: %v", roster.ErrInvalidPackage, err)
			}
			return err
		}
		info.To = next
		if info.Mode == rosters.Bulk && len(mu.rejected) > rejectedBefore {
			// A rejected row names no record: nothing of the entity may be taken as missing.
			info.Mode = rosters.Delta
			mu.nFinding++
			mu.findings = append(mu.findings, Finding{File: f.name, Kind: "bulk-skipped",
				Message: fmt.Sprintf("%d rows were rejected, so the file was taken as a delta: nothing missing from it was deactivated", len(mu.rejected)-rejectedBefore)})
		}
		mu.infos = append(mu.infos, info)
	}
	return nil
}

// where names a position as the roster decoder does: file:line:column.
func where(p mapping.Position) string {
	if p.Column == "" {
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	return fmt.Sprintf("%s:%d:%s", p.File, p.Line, p.Column)
}

func (mu *mappedUpload) response(rr RosterResponse, version int) MappedResponse {
	out := MappedResponse{RosterResponse: rr, RulesVersion: version, Findings: mu.findings, FindingCount: mu.nFinding}
	if out.Findings == nil {
		out.Findings = []Finding{}
	}
	if out.Rejected == nil {
		out.Rejected = []ingest.Rejected{}
	}
	return out
}
