package roster

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
)

// MaxPackageFiles bounds the entries of a package's zip.
const MaxPackageFiles = 32

// Package is a decoded OneRoster CSV package. Accepted and Rejected carry each record's position in
// the package, counted file by file in the order they are read: orgs, academicSessions, courses,
// classes, users, the roles.csv rows that have no user in users.csv, enrollments, demographics,
// lineItems, results. Every position is in exactly one of the two.
type Package struct {
	Accepted []ingest.Accepted
	Rejected []ingest.Rejected
	// Ignored names the OneRoster files of the package the platform does not carry, e.g. categories.csv.
	Ignored []string
	// Files are the files read, in the order read, with their positions. A file is bulk only when the
	// manifest says so: without a manifest nothing is implicitly deleted.
	Files []FileInfo
}

const (
	manifestFile = "manifest.csv"
	rolesFile    = "roles.csv"
	modeAbsent   = "absent"
	modeBulk     = "bulk"
	modeDelta    = "delta"
)

// ignoredFiles are the OneRoster 1.2 CSV files the platform does not carry.
var ignoredFiles = []string{"categories.csv", "classResources.csv", "courseResources.csv", "resources.csv",
	"scoreScales.csv", "userProfiles.csv", "userResources.csv", "lineItemLearningObjectiveIds.csv",
	"lineItemScoreScales.csv", "resultLearningObjectiveIds.csv", "resultScoreScales.csv"}

// columnAliases map column names some exporters use to the OneRoster 1.2 CSV ones.
var columnAliases = map[string]string{"preferredFirstName": "preferredGivenName", "preferredLastName": "preferredFamilyName"}

// DecodeCSVZip decodes a OneRoster CSV bulk or delta package within lim, charging mem with what it
// holds. It returns an error wrapping ErrInvalidPackage for a package it cannot read,
// ErrPackageTooLarge for one over a bound of lim (naming the file and, inside a file, the line),
// ingest.ErrTooManyEvents for more than lim.MaxRecords data rows, and mem's error wrapped.
//
// The files' declared sizes are checked before anything is unzipped, and the zip reader refuses to
// read a file past its declared size, so a small entry that inflates hugely (a zip bomb) is refused
// either by its declared size or as a corrupt zip after at most that many bytes.
func DecodeCSVZip(body []byte, meta ingest.Meta, lim Limits, mem Memory) (*Package, error) {
	return DecodeCSVZipEach(body, meta, lim, mem, nil)
}

// DecodeCSVZipEach is DecodeCSVZip passing each accepted record to each as it is decoded, in package
// order, instead of collecting them in Package.Accepted; an error from each stops decoding and is
// returned. What each is given is charged to mem like a collected record: a caller that lets records go
// gives their memory back to its own accounting.
func DecodeCSVZipEach(body []byte, meta ingest.Meta, lim Limits, mem Memory, each func(ingest.Accepted) error) (*Package, error) {
	lim = lim.withDefaults()
	zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		return nil, fmt.Errorf("%w: not a zip archive: %v", ErrInvalidPackage, err)
	}
	files, ignored, size, err := listFiles(zr, &lim)
	if err != nil {
		return nil, err
	}
	// What is read stays, as the text of the records: charged before a byte is unzipped.
	if err := grow(mem, size); err != nil {
		return nil, fmt.Errorf("%d bytes unzipped: %w", size, err)
	}
	d := &csvDecoder{meta: meta, lim: &lim, mem: mem, left: lim.MaxUnzippedBytes, roleOf: map[string]string{}}
	d.out.each = each
	modes := map[string]string{}
	if f := files[manifestFile]; f != nil {
		if modes, err = d.readManifest(f); err != nil {
			return nil, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(modes)) {
		if mode := modes[name]; mode != modeAbsent && files[name] == nil {
			return nil, fmt.Errorf("%w: manifest.csv declares %s %s but the package does not hold it", ErrInvalidPackage, name, mode)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if modes[name] == modeAbsent {
			return nil, fmt.Errorf("%w: manifest.csv declares %s absent but the package holds it", ErrInvalidPackage, name)
		}
	}
	var roles *roleRows
	if f := files[rolesFile]; f != nil {
		if roles, err = d.readRoles(f, modes[rolesFile] == modeDelta); err != nil {
			return nil, err
		}
	}
	var read []FileInfo
	for _, e := range entities {
		if f := files[e.collection+".csv"]; f != nil {
			from := d.next
			d.present = nil
			if err := d.readEntity(e, f, modes[f.Name] == modeDelta, roles); err != nil {
				return nil, err
			}
			read = append(read, FileInfo{Name: f.Name, Collection: e.collection, Mode: importMode(modes[f.Name]), From: from, To: d.next, Present: d.present})
		}
		if e.collection == "users" && roles != nil {
			from := d.next
			d.rejectOrphans(roles)
			if d.next > from {
				read = append(read, FileInfo{Name: rolesFile, Collection: e.collection, Mode: rosters.Delta, From: from, To: d.next})
			}
		}
	}
	return &Package{Accepted: d.out.accepted, Rejected: d.out.rejected, Ignored: ignored, Files: read}, nil
}

// listFiles indexes the package's files by name, refusing unknown names and oversized packages, and
// returns the declared unzipped size of the files that will be read. Directory entries and macOS
// resource forks (__MACOSX/) are skipped.
func listFiles(zr *zip.Reader, lim *Limits) (map[string]*zip.File, []string, int64, error) {
	if len(zr.File) > MaxPackageFiles {
		return nil, nil, 0, fmt.Errorf("%w: %d files, at most %d", ErrPackageTooLarge, len(zr.File), MaxPackageFiles)
	}
	files := make(map[string]*zip.File, len(zr.File))
	ignored := []string{}
	var total, read uint64
	for _, f := range zr.File {
		name := f.Name
		if strings.HasSuffix(name, "/") || strings.HasPrefix(name, "__MACOSX/") {
			continue
		}
		if f.UncompressedSize64 > uint64(lim.MaxFileBytes) {
			return nil, nil, 0, fmt.Errorf("%w: %s: %d bytes unzipped, at most %d a file", ErrPackageTooLarge, name, f.UncompressedSize64, lim.MaxFileBytes)
		}
		if total += f.UncompressedSize64; total > uint64(lim.MaxUnzippedBytes) {
			return nil, nil, 0, fmt.Errorf("%w: %s: the files up to this one hold %d bytes unzipped, at most %d a package",
				ErrPackageTooLarge, name, total, lim.MaxUnzippedBytes)
		}
		if files[name] != nil {
			return nil, nil, 0, fmt.Errorf("%w: %q appears twice", ErrInvalidPackage, name)
		}
		switch {
		case slices.Contains(ignoredFiles, name):
			ignored = append(ignored, name)
		case name != manifestFile && name != rolesFile && !isEntityFile(name):
			for _, known := range append(Collections(), strings.TrimSuffix(manifestFile, ".csv"), strings.TrimSuffix(rolesFile, ".csv")) {
				if known += ".csv"; strings.EqualFold(name, known) {
					return nil, nil, 0, fmt.Errorf("%w: unknown file %q: OneRoster file names are case-sensitive; the file is %q", ErrInvalidPackage, name, known)
				}
			}
			return nil, nil, 0, fmt.Errorf("%w: unknown file %q: a package holds manifest.csv and OneRoster CSV files (%s.csv, %s) at its root",
				ErrInvalidPackage, name, strings.Join(Collections(), ".csv, "), rolesFile)
		default:
			read += f.UncompressedSize64
		}
		files[name] = f
	}
	slices.Sort(ignored)
	return files, ignored, int64(read), nil
}

// importMode is the import step's mode of a file the manifest declares mode (empty: no manifest entry).
func importMode(mode string) rosters.Mode {
	if mode == modeBulk {
		return rosters.Bulk
	}
	return rosters.Delta
}

func isEntityFile(name string) bool {
	collection, ok := strings.CutSuffix(name, ".csv")
	_, known := entityByCollection(collection)
	return ok && known
}

// csvDecoder reads one package.
type csvDecoder struct {
	meta   ingest.Meta
	lim    *Limits
	mem    Memory
	rows   int   // data rows read so far
	left   int64 // unzipped bytes the package may still hold
	out    results
	next   int               // position of the next record
	roleOf map[string]string // accepted users' primary roles, for demographics
	// present are the sourcedIds of the rejected rows of the file being read.
	present []string
}

// readManifest reads manifest.csv: each file's mode, keyed by file name.
func (d *csvDecoder) readManifest(f *zip.File) (map[string]string, error) {
	modes := map[string]string{}
	seen := map[string]bool{}
	err := d.readTable(f, []string{"propertyName", "value"}, []string{"propertyName", "value"}, false, func(s *csvSource) error {
		if p := s.problem(); p != "" {
			return fmt.Errorf("%w: %s %s", ErrInvalidPackage, s.where(), p)
		}
		key, value := s.value("propertyName"), s.value("value")
		if seen[key] {
			return fmt.Errorf("%w: %s: property %q appears twice", ErrInvalidPackage, s.where(), key)
		}
		seen[key] = true
		if key == "oneroster.version" && !strings.HasPrefix(value, "1.") {
			return fmt.Errorf("%w: %s: unsupported oneroster.version %q; supported: 1.1, 1.2", ErrInvalidPackage, s.where(), value)
		}
		name, ok := strings.CutPrefix(key, "file.")
		if !ok {
			return nil
		}
		mode := strings.ToLower(value)
		if mode != modeAbsent && mode != modeBulk && mode != modeDelta {
			return fmt.Errorf("%w: %s: %s must be absent, bulk or delta", ErrInvalidPackage, s.where(), key)
		}
		if name += ".csv"; name == rolesFile || isEntityFile(name) || slices.Contains(ignoredFiles, name) {
			modes[name] = mode
		}
		return nil
	})
	return modes, err
}

// roleRows are the rows of roles.csv by user, in file order.
type roleRows struct {
	byUser map[string][]source
	rows   []*csvSource
	user   []string        // user of each row
	taken  map[string]bool // users of users.csv, who took their rows
}

func (d *csvDecoder) readRoles(f *zip.File, delta bool) (*roleRows, error) {
	rr := &roleRows{byUser: map[string][]source{}, taken: map[string]bool{}}
	err := d.readTable(f, roleColumns, roleRequired, delta, func(s *csvSource) error {
		if err := d.countRow(); err != nil {
			return err
		}
		user := s.value(userColumn)
		if user != "" {
			rr.byUser[user] = append(rr.byUser[user], s)
		}
		rr.rows = append(rr.rows, s)
		rr.user = append(rr.user, user)
		return nil
	})
	return rr, err
}

// rejectOrphans rejects the roles.csv rows that no user of users.csv took.
func (d *csvDecoder) rejectOrphans(roles *roleRows) {
	for i, s := range roles.rows {
		user := roles.user[i]
		var fe ingest.FieldError
		switch {
		case roles.taken[user]:
			continue // taken by its user, accepted or rejected with it
		case s.problem() != "":
			fe = ingest.FieldError{Field: s.where(), Message: s.problem()}
		case user == "":
			fe = ingest.FieldError{Field: s.at(same(userColumn)), Message: msgRequired}
		default:
			fe = ingest.FieldError{Field: s.at(same(userColumn)),
				Message: fmt.Sprintf("user %q is not in users.csv; a role is sent with its user", user)}
		}
		d.out.reject(d.next, []ingest.FieldError{fe}, s.raw())
		d.next++
	}
}

// charge charges mem for what the row at line of file makes the decoder hold.
func (d *csvDecoder) charge(file string, line int, n int64) error {
	if err := grow(d.mem, n); err != nil {
		return fmt.Errorf("%s line %d: %w", file, line, err)
	}
	return nil
}

// reject rejects the row at position i; its report is charged twice: the answer and its dead letter.
func (d *csvDecoder) reject(i int, errs []ingest.FieldError, s *csvSource) error {
	raw := s.raw()
	if err := d.charge(s.file, s.line, 2*int64(len(raw))); err != nil {
		return err
	}
	if id := s.value("sourcedId"); id != "" {
		d.present = append(d.present, id)
	}
	d.out.reject(i, errs, raw)
	return nil
}

func (d *csvDecoder) readEntity(e *entity, f *zip.File, delta bool, roles *roleRows) error {
	seen := map[string]string{}
	return d.readTable(f, e.columns, e.required, delta, func(s *csvSource) error {
		if err := d.countRow(); err != nil {
			return err
		}
		i := d.next
		d.next++
		if id := s.value("sourcedId"); e.collection == "users" && roles != nil && id != "" {
			s.joined = roles.byUser[id]
			roles.taken[id] = true
		}
		if p := s.problem(); p != "" {
			return d.reject(i, []ingest.FieldError{{Field: s.where(), Message: p}}, s)
		}
		r := &rec{src: s, bulk: !delta, now: d.meta.ReceivedAt}
		if e.collection == "demographics" {
			r.roleOf = func(id string) string { return d.roleOf[id] }
		}
		ev, errs := decodeRecord(e, r, d.meta)
		errs = checkDuplicate(seen, r.sourcedID, errs, s)
		if len(errs) > 0 {
			return d.reject(i, errs, s)
		}
		if err := d.charge(s.file, s.line, metadataCost*int64(len(r.meta))); err != nil {
			return err
		}
		if ev.RosterUser != nil {
			d.roleOf[ev.RosterUser.SourcedID] = ev.Actor.Role
		}
		return d.out.accept(i, ev, r.hash, r.size)
	})
}

func (d *csvDecoder) countRow() error {
	if d.rows++; d.rows > d.lim.MaxRecords {
		return fmt.Errorf("%w: more than %d rows", ingest.ErrTooManyEvents, d.lim.MaxRecords)
	}
	return nil
}

// readTable reads one CSV file: it checks the header against the allowed and required columns (and,
// in delta mode, status and dateLastModified) and calls each for every data row.
func (d *csvDecoder) readTable(f *zip.File, columns, need []string, delta bool, each func(*csvSource) error) error {
	name := f.Name
	rc, err := f.Open()
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalidPackage, name, err)
	}
	defer func() { _ = rc.Close() }() // read-only: nothing to lose on close; a bad checksum fails the reads
	guard := newCSVGuard(&budgetReader{r: rc, d: d}, name, d.lim)
	br := bufio.NewReader(guard)
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte("\xef\xbb\xbf")) {
		_, _ = br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: %s has no header row", ErrInvalidPackage, name)
		}
		return readError(name, guard, err)
	}
	cols, err := checkHeader(name, header, columns, need, delta)
	if err != nil {
		return err
	}
	for {
		row, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return readError(name, guard, err)
		}
		line, _ := cr.FieldPos(0)
		if err := d.charge(name, line, recordCost+fieldCost*int64(len(row))); err != nil {
			return err
		}
		if err := each(&csvSource{file: name, line: line, header: header, cols: cols, row: row}); err != nil {
			return err
		}
	}
}

// readError is the error of a file the CSV reader stopped on: the guard's, when it stopped the read
// (the reader may report a syntax error in the part of the record it was given instead).
func readError(name string, guard *csvGuard, err error) error {
	if guard.err != nil {
		return guard.err
	}
	if errors.Is(err, ErrPackageTooLarge) {
		return err
	}
	return fmt.Errorf("%w: %s: %v", ErrInvalidPackage, name, err)
}

// checkHeader maps each column to its position, normalising the header in place.
func checkHeader(name string, header, columns, need []string, delta bool) (map[string]int, error) {
	cols := make(map[string]int, len(header))
	for i, h := range header {
		h = strings.TrimSpace(h)
		if alias, ok := columnAliases[h]; ok {
			h = alias
		}
		header[i] = h
		if !slices.Contains(columns, h) && !isMetadataColumn(h) {
			return nil, fmt.Errorf("%w: %s: unknown column %q; extensions go in metadata.* columns", ErrInvalidPackage, name, h)
		}
		if _, dup := cols[h]; dup {
			return nil, fmt.Errorf("%w: %s: column %q appears twice", ErrInvalidPackage, name, h)
		}
		cols[h] = i
	}
	if delta {
		need = append(slices.Clip(need), "status", "dateLastModified")
	}
	for _, c := range need {
		if _, ok := cols[c]; !ok {
			return nil, fmt.Errorf("%w: %s: missing column %q", ErrInvalidPackage, name, c)
		}
	}
	return cols, nil
}

func isMetadataColumn(h string) bool {
	key, ok := strings.CutPrefix(h, "metadata.")
	return ok && key != ""
}

// budgetReader charges what it reads to the package's unzipped budget.
type budgetReader struct {
	r io.Reader
	d *csvDecoder
}

func (b *budgetReader) Read(p []byte) (int, error) {
	tooLarge := fmt.Errorf("%w: more than %d bytes unzipped, at most %d a package", ErrPackageTooLarge, b.d.lim.MaxUnzippedBytes, b.d.lim.MaxUnzippedBytes)
	if b.d.left < 0 {
		return 0, tooLarge
	}
	if int64(len(p)) > b.d.left+1 {
		p = p[:b.d.left+1]
	}
	n, err := b.r.Read(p)
	if b.d.left -= int64(n); b.d.left < 0 {
		return n, tooLarge
	}
	return n, err
}

// csvSource is one row of a OneRoster CSV file. Values are trimmed; an empty value means none.
type csvSource struct {
	file   string
	line   int
	header []string
	cols   map[string]int
	row    []string
	joined []source // a user's roles.csv rows
}

func (s *csvSource) at(f field) string { return fmt.Sprintf("%s:%d:%s", s.file, s.line, f.csv) }
func (s *csvSource) where() string     { return fmt.Sprintf("%s:%d", s.file, s.line) }

// problem reports a row whose width differs from the header's.
func (s *csvSource) problem() string {
	if len(s.row) != len(s.header) {
		return fmt.Sprintf("has %d fields; the header has %d", len(s.row), len(s.header))
	}
	return ""
}

func (s *csvSource) value(col string) string {
	i, ok := s.cols[col]
	if !ok || col == "" || i >= len(s.row) {
		return ""
	}
	return strings.TrimSpace(s.row[i])
}

// raw is the row with its header, as CSV, for a rejection report; a password is blanked.
func (s *csvSource) raw() []byte {
	row := slices.Clone(s.row)
	if i, ok := s.cols["password"]; ok && i < len(row) {
		row[i] = ""
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write(s.header) // writes to a bytes.Buffer cannot fail
	_ = w.Write(row)
	w.Flush()
	return buf.Bytes()
}

func (s *csvSource) text(f field) (string, string) { return s.value(f.csv), "" }
func (s *csvSource) ref(f field) (string, string)  { return s.value(f.csv), "" }

// texts splits a list column: comma-separated values inside one (quoted) field.
func (s *csvSource) texts(f field) ([]string, string) {
	out := []string{}
	for _, v := range strings.Split(s.value(f.csv), ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out, ""
}

func (s *csvSource) refs(f field) ([]string, string) { return s.texts(f) }

func (s *csvSource) flag(f field) (*bool, string) {
	v := s.value(f.csv)
	if v == "" {
		return nil, ""
	}
	b, ok := parseBool(v)
	if !ok {
		return nil, "must be true or false"
	}
	return &b, ""
}

func (s *csvSource) number(f field) (*float64, string) {
	v := s.value(f.csv)
	if v == "" {
		return nil, ""
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return nil, "must be a number"
	}
	return &n, ""
}

// userIDs parses "{type:identifier},{type:identifier}".
func (s *csvSource) userIDs(f field) ([]records.RosterUserID, string) {
	const problem = "must be {type:identifier} entries separated by commas"
	out := []records.RosterUserID{}
	rest := s.value(f.csv)
	for rest != "" {
		inner, after, ok := strings.Cut(strings.TrimPrefix(rest, "{"), "}")
		typ, id, colon := strings.Cut(inner, ":")
		if !strings.HasPrefix(rest, "{") || !ok || !colon {
			return nil, problem
		}
		out = append(out, records.RosterUserID{Type: strings.TrimSpace(typ), Identifier: strings.TrimSpace(id)})
		rest = strings.TrimSpace(after)
		if rest != "" {
			if rest, ok = strings.CutPrefix(rest, ","); !ok {
				return nil, problem
			}
			rest = strings.TrimSpace(rest)
		}
	}
	return out, ""
}

func (s *csvSource) metadata() (map[string]string, string) {
	out := map[string]string{}
	for col := range s.cols {
		if key, ok := strings.CutPrefix(col, "metadata."); ok {
			if v := s.value(col); v != "" {
				out[key] = v
			}
		}
	}
	return out, ""
}

func (s *csvSource) roles() ([]source, string) { return s.joined, "" }
