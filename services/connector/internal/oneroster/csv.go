package oneroster

import (
	"archive/zip"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// columns are the CSV columns of each collection the gateway reads (OneRoster 1.2 CSV binding, as
// services/gateway/internal/roster reads it; users carry their primary role and orgs, as 1.1 users.csv
// did, which the gateway takes beside roles.csv).
var columns = map[string][]string{
	"orgs":             {"sourcedId", "status", "dateLastModified", "name", "type", "identifier", "parentSourcedId"},
	"academicSessions": {"sourcedId", "status", "dateLastModified", "title", "type", "startDate", "endDate", "schoolYear", "parentSourcedId"},
	"courses":          {"sourcedId", "status", "dateLastModified", "title", "schoolYearSourcedId", "courseCode", "grades", "subjects", "subjectCodes", "orgSourcedId"},
	"classes": {"sourcedId", "status", "dateLastModified", "title", "classCode", "classType", "location", "grades", "subjects", "subjectCodes",
		"periods", "courseSourcedId", "schoolSourcedId", "termSourcedIds"},
	"users": {"sourcedId", "status", "dateLastModified", "enabledUser", "username", "givenName", "familyName", "middleName",
		"preferredGivenName", "preferredFamilyName", "pronouns", "identifier", "userMasterIdentifier", "email", "sms", "phone",
		"agentSourcedIds", "grades", "role", "orgSourcedIds"},
	"enrollments": {"sourcedId", "status", "dateLastModified", "classSourcedId", "schoolSourcedId", "userSourcedId", "role", "primary",
		"beginDate", "endDate"},
	"demographics": {"sourcedId", "status", "dateLastModified", "birthDate", "sex", "americanIndianOrAlaskaNative", "asian",
		"blackOrAfricanAmerican", "nativeHawaiianOrOtherPacificIslander", "white", "demographicRaceTwoOrMoreRaces",
		"hispanicOrLatinoEthnicity", "countryOfBirthCode", "stateOfBirthAbbreviation", "cityOfBirth", "publicSchoolResidenceStatus"},
}

// Row flattens a OneRoster 1.2 JSON record into CSV cells: scalars as they are, a reference
// ({"sourcedId": ...}) named X as XSourcedId, a list of references named Xs as XSourcedIds (comma-separated),
// a list of strings comma-separated; a user's roles (1.2) give its primary role and the orgs of its roles.
// Fields the CSV binding has no column for are left out.
func Row(collection string, raw json.RawMessage) (map[string]string, error) {
	var rec map[string]any
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("a %s record is not a JSON object: %w", collection, err)
	}
	row := map[string]string{}
	for k, v := range rec {
		switch v := v.(type) {
		case string:
			row[k] = v
		case bool:
			row[k] = strconv.FormatBool(v)
		case float64:
			row[k] = strconv.FormatFloat(v, 'f', -1, 64)
		case map[string]any:
			if id, ok := v["sourcedId"].(string); ok {
				row[k+"SourcedId"] = id
			}
		case []any:
			var ids, strs []string
			for _, x := range v {
				switch x := x.(type) {
				case string:
					strs = append(strs, x)
				case map[string]any:
					if id, ok := x["sourcedId"].(string); ok {
						ids = append(ids, id)
					}
				}
			}
			if len(strs) > 0 {
				row[k] = strings.Join(strs, ",")
			}
			if len(ids) > 0 {
				row[strings.TrimSuffix(k, "s")+"SourcedIds"] = strings.Join(ids, ",")
			}
		}
	}
	if collection == "users" {
		userRoles(rec, row)
	}
	return row, nil
}

// userRoles sets a 1.2 user's role (its primary role's, else its first) and orgSourcedIds (its roles' orgs).
func userRoles(rec map[string]any, row map[string]string) {
	roles, _ := rec["roles"].([]any)
	var orgs []string
	for _, r := range roles {
		r, ok := r.(map[string]any)
		if !ok {
			continue
		}
		role, _ := r["role"].(string)
		if row["role"] == "" || r["roleType"] == "primary" {
			row["role"] = role
		}
		if org, ok := r["org"].(map[string]any); ok {
			if id, ok := org["sourcedId"].(string); ok && !slices.Contains(orgs, id) {
				orgs = append(orgs, id)
			}
		}
	}
	if row["orgSourcedIds"] == "" && len(orgs) > 0 {
		row["orgSourcedIds"] = strings.Join(orgs, ",")
	}
}

// Modified returns a record's dateLastModified (zero when it has none or it does not parse).
func Modified(raw json.RawMessage) time.Time {
	var r struct {
		DateLastModified string `json:"dateLastModified"`
	}
	if json.Unmarshal(raw, &r) != nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, r.DateLastModified)
	if err != nil {
		return time.Time{}
	}
	return t
}

// Package builds a OneRoster CSV package (a zip of manifest.csv and one file per collection given) from
// JSON records by collection. bulk marks every file given as its collection's whole truth (a full sync);
// otherwise they are deltas. A collection absent from records is "absent" in the manifest.
func Package(records map[string][]json.RawMessage, bulk bool) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	mode := "delta"
	if bulk {
		mode = "bulk"
	}
	manifest := [][]string{{"propertyName", "value"}, {"manifest.version", "1.0"}, {"oneroster.version", "1.2"}}
	for _, c := range Collections {
		m := "absent"
		if _, ok := records[c]; ok {
			m = mode
		}
		manifest = append(manifest, []string{"file." + c, m})
	}
	if err := writeCSV(zw, "manifest.csv", manifest); err != nil {
		return nil, err
	}
	for _, c := range Collections {
		recs, ok := records[c]
		if !ok {
			continue
		}
		cols := columns[c]
		table := [][]string{cols}
		for _, raw := range recs {
			row, err := Row(c, raw)
			if err != nil {
				return nil, err
			}
			line := make([]string, len(cols))
			for i, col := range cols {
				line[i] = row[col]
			}
			table = append(table, line)
		}
		if err := writeCSV(zw, c+".csv", table); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("closing the package: %w", err)
	}
	return buf.Bytes(), nil
}

func writeCSV(zw *zip.Writer, name string, rows [][]string) error {
	f, err := zw.Create(name)
	if err != nil {
		return fmt.Errorf("adding %s to the package: %w", name, err)
	}
	w := csv.NewWriter(f)
	if err := w.WriteAll(rows); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}
