// Package mapping maps the exports of student information systems (SIS) that do not speak OneRoster
// into OneRoster 1.2 records in the JSON binding the gateway decodes (services/gateway/internal/roster).
// A district's exports are described once, in a YAML rules document; the engine then streams each
// export file, CSV or JSON, one row at a time and hands every row to a callback: its OneRoster record,
// or the errors that reject it, with the data-quality findings that do not.
//
// The package is pure: no HTTP, no Kafka, no database. Rules compile once (Parse) into immutable Rules,
// safe for concurrent use.
//
//	rules, err := mapping.Parse(yamlBytes, mapping.Limits{})
//	exp, ok := rules.Match("students_2026.csv") // or rules.Export("students")
//	err = exp.WithModified(exportedAt).MapCSV("students_2026.csv", f, func(row mapping.Row) error {
//		if row.Errors != nil {
//			return deadLetter(row.Raw, row.Errors)
//		}
//		return send(row.Collection, row.Record)
//	})
//
// # Rules document
//
// Decoding is strict: a key this reference does not list is an error naming its line.
//
//	version: 1                 # the rules format; 1 is the only one
//	exports:                   # one entry per export shape the SIS produces
//	  - name: students         # unique; callers pick an export by name...
//	    match: "students*.csv" # ...or by file name: a glob (path.Match) on the base name, ignoring case
//	    format: csv            # csv or json
//	    delimiter: ";"         # csv only: the field separator, one character; "," when left out
//	    records: "$.students"  # json only: the path of the array of records; "$" (the default) when the
//	                           # document is the array itself
//	    collection: users      # the OneRoster collection the export produces
//	    fields:                # the field rules, one per target
//	      - target: sourcedId
//	        from: Student_Number
//	        required: true
//
// Rules.Match returns the first export, in document order, whose match fits; an export without match is
// found by name only. Several exports may read the same file (a students export producing users, and
// another producing demographics): the caller runs each.
//
// Collections are orgs, academicSessions, courses, classes, users, enrollments, demographics,
// lineItems and results. Every export needs a rule writing sourcedId.
//
// # Targets
//
// A rule's target is a field of its collection, spelt as in the OneRoster JSON binding:
//
//   - a scalar field: givenName, email, classType, birthDate, enabledUser (a boolean), score (a number);
//   - a reference: school or school.sourcedId, both written {"sourcedId": "..."};
//   - a list: grades[], subjects[], periods[] (strings), terms[], agents[], orgs[], children[]
//     (references, also spelt terms[].sourcedId); every rule with the same list target appends to it,
//     in document order;
//   - an object of roles or userIds: roles[N].roleType, roles[N].role, roles[N].org.sourcedId,
//     roles[N].beginDate, roles[N].endDate, roles[N].status, roles[N].dateLastModified, userIds[N].type,
//     userIds[N].identifier, N from 0 to 99; the rules with the same N make one object;
//   - a metadata entry: metadata.<key>, written as a string in the record's metadata object.
//
// The fields of each collection (besides sourcedId, status, dateLastModified and metadata, which all
// have):
//
//	orgs              name type identifier parent children[]
//	academicSessions  title type startDate endDate schoolYear parent children[]
//	courses           title schoolYear courseCode grades[] subjects[] subjectCodes[] org
//	classes           title classCode classType location grades[] subjects[] subjectCodes[] periods[]
//	                  course school terms[]
//	users             enabledUser username userIds[N] givenName familyName middleName
//	                  preferredFirstName preferredLastName pronouns identifier userMasterIdentifier
//	                  email sms phone agents[] grades[] roles[N] role orgs[]
//	enrollments       user class school role primary beginDate endDate
//	demographics      birthDate sex americanIndianOrAlaskaNative asian blackOrAfricanAmerican
//	                  nativeHawaiianOrOtherPacificIslander white demographicRaceTwoOrMoreRaces
//	                  hispanicOrLatinoEthnicity countryOfBirthCode stateOfBirthAbbreviation cityOfBirth
//	                  publicSchoolResidenceStatus
//	lineItems         title description assignDate dueDate class school category gradingPeriod
//	                  academicSession scoreScale resultValueMin resultValueMax
//	results           lineItem student class scoreScale scoreStatus score textScore scoreDate comment
//	                  inProgress incomplete late missing
//
// A target the collection lacks is an error that names the collections having it (birthDate belongs to
// demographics, not users). Two rules writing the same scalar, reference, object field or metadata key
// are an error.
//
// # Sources
//
// Each rule takes its value from exactly one of:
//
//   - from: a column (CSV) or a JSON path (JSON), or a list of them, the first with a non-empty value
//     winning: from: [Preferred_Email, Email]. CSV columns are found by exact name, else by name
//     ignoring case and surrounding spaces. JSON paths are relative to the record: $.id, $.name.first,
//     $.ids[0], $["lunch pin"]. A JSON string, number or boolean is read as its text; null is empty; an
//     array is read only by a list target, each element a value; an object is an error.
//   - const: a constant, written as it is (no transform applies).
//   - concat: a list of columns (or JSON paths) and literals, joined. An item written plain is a column,
//     a quoted item ("...", '...') a literal: concat: [Homeroom_Teacher, " - ", Room]. With sep: " - ",
//     literals are left out and the non-empty columns are joined with sep, so an empty column leaves no
//     stray separator. When every column of a concat is empty, the value is empty. A JSON path with
//     brackets must be written in block style (- $["b c"]), since a bracket is YAML syntax in a flow
//     list.
//   - default alone: a value for every row.
//
// default gives the value written when the source is empty (after the transforms below); it satisfies
// required.
//
// # Transforms
//
// The value read goes through these steps, in this order:
//
//  1. split: {sep: ",", index: 0} keeps one part of the value split on sep (index 0 is the first part,
//     -1 the last); a part that does not exist is empty. On a list target, split without index makes
//     each part a value (grades "09;10" with split: {sep: ";"}).
//  2. trim: surrounding white space is removed; on by default, trim: false keeps it.
//  3. case: upper, lower or title (each word's first letter upper-cased, the rest lower-cased; a word
//     starts after anything that is not a letter or digit, so O'DONNELL-SMITH becomes O'Donnell-Smith).
//  4. map: a value map, {"K": KG, "1": "01"}, looked up by exact key, then ignoring case. A key "" maps
//     empty values. unmapped says what a value outside the map does: error (the default) rejects the row;
//     keep writes the value as it is, default writes the rule's default, drop leaves the field out; these
//     three add a Finding of kind unmapped.
//  5. date: an input layout such as MM/DD/YYYY, of the tokens YYYY, YY, MM, DD (two digits), M, D (one
//     or two digits); other characters must appear as they are. YY years 00-69 are 2000-2069, 70-99 are
//     1970-1999. The output is YYYY-MM-DD, or for dateLastModified midnight UTC in RFC 3339; a value not
//     in the layout, or not a real date, rejects the row.
//
// Last, the value is checked against the target: a boolean must be true or false (in any case; map
// other spellings), a number a decimal number, a date YYYY-MM-DD, dateLastModified an RFC 3339
// timestamp (assignDate and dueDate also take a date). const, default and map values are checked when
// the rules are parsed. OneRoster enumerations (roles, class types, statuses) are not checked here: the
// gateway checks them, and value maps translate the SIS's codes.
//
// # Empty values and required fields
//
//   - An optional rule whose column or key is absent writes nothing: the field is left out.
//   - A column present but empty (or a JSON null, or blank after the transforms) writes nothing, and the
//     row gets a Finding of kind empty, unless the rule has a default.
//   - A required rule (required: true) with no value rejects the row with a FieldError naming the
//     column and the target.
//   - A CSV header lacking every column a required rule reads rejects the whole file (an error wrapping
//     ErrInvalidExport, naming the file, line 1 and the columns); lacking an optional rule's column is
//     fine.
//
// A roles or userIds object is written only when a rule reading the row gave one of its fields a value
// (objects made only of constants are left out), and only when it has every field the gateway requires
// of it (a role's roleType, role and org; a userId's type and identifier); an incomplete object is left
// out with a Finding of kind incomplete.
//
// # Records
//
// Records are written with their keys in a fixed order: sourcedId, status, dateLastModified, the
// collection's fields in the order listed above, metadata keys sorted; so the same input gives the same
// bytes. A record whose rules give no status gets "active". dateLastModified, which the gateway
// requires, comes from a rule or, for records whose rules give none, from Export.WithModified.
//
// # Rows, errors and findings
//
// Each row passed to the callback has File, Line (CSV: the 1-based line where the record starts; JSON:
// the 0-based index of the element in the records array), Collection, Raw (the CSV record's bytes, or
// the JSON element) and either Record or Errors. A FieldError and a Finding name the file, the line,
// the column (CSV: its header name and 1-based index; JSON: the rule's path, e.g. $.name.first) and the
// target. All of a row's errors are reported, not only the first. Index counts the file's rows from 0.
//
// A caller that reads the records field by field asks Export.WithValues: each row then also carries
// its record as Values, the keys Record holds with their texts, lists, objects and metadata (Record is
// written from them), valid until the callback returns.
//
// CSV input may start with a UTF-8 byte order mark and use CRLF line ends; quoted fields may hold line
// breaks. A record encoding/csv cannot parse (a bare quote, text after a closing quote) is a row error
// naming its line and, when it is on one line, its column; the rows after it are still mapped. A quoted
// field that never closes swallows the rest of the file: that is a file error, after the rows before it.
// A row with more or fewer fields than the header, a value that is not valid UTF-8 or is larger than
// Limits.MaxFieldBytes is a row error. Duplicate header names are a file error.
//
// JSON input (with or without a byte order mark) is decoded one element at a time. A document with no
// array at the records path, a syntax error (JSON cannot be resynchronised after one), a document cut
// short and anything malformed after the array are file errors, after the rows before them; an element
// that is not an object, a value that is not valid UTF-8 or is larger than Limits.MaxFieldBytes are row
// errors.
//
// Limits bound memory: a CSV record or JSON element larger than Limits.MaxRowBytes is a row error when
// it is just over, and stops the file (ErrInvalidExport) when it is larger than the bound by more than
// the reader's buffer (64 KiB), so no file makes the engine hold more than about MaxRowBytes + 64 KiB
// per row.
//
// A document may also say where the source's learning-standard events carry the SIS id of the person
// acting, in an `actors` section (Actors): `xapi: account | mbox | mbox_local | openid` and
// `caliper: identifier:<type> | iri_last_segment | iri`. A source that only sends such events may have
// a document with actors and no exports.
package mapping
