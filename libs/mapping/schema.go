package mapping

import (
	"slices"
	"strings"
)

// kind is how a OneRoster field is written in the JSON binding.
type kind uint8

const (
	kString    kind = iota // a JSON string
	kDate                  // a JSON string holding a YYYY-MM-DD date
	kTimestamp             // a JSON string holding an RFC 3339 timestamp (or, for line items, a date)
	kBool                  // a JSON boolean
	kNumber                // a JSON number
	kRef                   // a reference: {"sourcedId": "..."}
	kStrings               // an array of strings
	kRefs                  // an array of references
	kObjects               // an array of objects (roles, userIds), each with its own fields
	kMetadata              // an object of strings
)

func (k kind) String() string {
	switch k {
	case kString:
		return "text"
	case kDate:
		return "date"
	case kTimestamp:
		return "timestamp"
	case kBool:
		return "boolean"
	case kNumber:
		return "number"
	case kRef:
		return "reference"
	case kStrings:
		return "list of text"
	case kRefs:
		return "list of references"
	case kObjects:
		return "list of objects"
	default:
		return "metadata"
	}
}

// list reports whether the kind is an array a rule appends to (target "name[]").
func (k kind) list() bool { return k == kStrings || k == kRefs }

// fieldSpec is one field of a collection in the OneRoster JSON binding, as the gateway's decoder reads
// it (services/gateway/internal/roster: entities.go and json.go).
type fieldSpec struct {
	name string
	kind kind
	sub  []fieldSpec // the fields of each object of a kObjects field
	// need marks the fields of a roles or userIds object the gateway requires: an object without one is
	// left out of the record (with a Finding), since the gateway would reject the whole record.
	need bool
}

func f(name string, k kind) fieldSpec { return fieldSpec{name: name, kind: k} }

func needed(name string, k kind) fieldSpec { return fieldSpec{name: name, kind: k, need: true} }

// collections lists the collections a rule may produce, in the gateway's order.
func collections() []string {
	return []string{"orgs", "academicSessions", "courses", "classes", "users", "enrollments", "demographics", "lineItems", "results"}
}

// schemaOf returns the fields of a collection's records in the order they are written: the fields every
// record has (sourcedId, status, dateLastModified), the collection's own, then metadata.
func schemaOf(collection string) ([]fieldSpec, bool) {
	var own []fieldSpec
	switch collection {
	case "orgs":
		own = []fieldSpec{f("name", kString), f("type", kString), f("identifier", kString),
			f("parent", kRef), f("children", kRefs)}
	case "academicSessions":
		own = []fieldSpec{f("title", kString), f("type", kString), f("startDate", kDate), f("endDate", kDate),
			f("schoolYear", kString), f("parent", kRef), f("children", kRefs)}
	case "courses":
		own = []fieldSpec{f("title", kString), f("schoolYear", kRef), f("courseCode", kString),
			f("grades", kStrings), f("subjects", kStrings), f("subjectCodes", kStrings), f("org", kRef)}
	case "classes":
		own = []fieldSpec{f("title", kString), f("classCode", kString), f("classType", kString),
			f("location", kString), f("grades", kStrings), f("subjects", kStrings), f("subjectCodes", kStrings),
			f("periods", kStrings), f("course", kRef), f("school", kRef), f("terms", kRefs)}
	case "users":
		own = []fieldSpec{f("enabledUser", kBool), f("username", kString),
			{name: "userIds", kind: kObjects, sub: []fieldSpec{needed("type", kString), needed("identifier", kString)}},
			f("givenName", kString), f("familyName", kString), f("middleName", kString),
			f("preferredFirstName", kString), f("preferredLastName", kString), f("pronouns", kString),
			f("identifier", kString), f("userMasterIdentifier", kString), f("email", kString), f("sms", kString),
			f("phone", kString), f("agents", kRefs), f("grades", kStrings),
			{name: "roles", kind: kObjects, sub: []fieldSpec{needed("roleType", kString), needed("role", kString),
				needed("org", kRef), f("beginDate", kDate), f("endDate", kDate), f("status", kString),
				f("dateLastModified", kTimestamp)}},
			// OneRoster 1.1's one role in each of the user's orgs, read when roles is absent.
			f("role", kString), f("orgs", kRefs)}
	case "enrollments":
		own = []fieldSpec{f("user", kRef), f("class", kRef), f("school", kRef), f("role", kString),
			f("primary", kBool), f("beginDate", kDate), f("endDate", kDate)}
	case "demographics":
		own = []fieldSpec{f("birthDate", kDate), f("sex", kString),
			f("americanIndianOrAlaskaNative", kBool), f("asian", kBool), f("blackOrAfricanAmerican", kBool),
			f("nativeHawaiianOrOtherPacificIslander", kBool), f("white", kBool),
			f("demographicRaceTwoOrMoreRaces", kBool), f("hispanicOrLatinoEthnicity", kBool),
			f("countryOfBirthCode", kString), f("stateOfBirthAbbreviation", kString), f("cityOfBirth", kString),
			f("publicSchoolResidenceStatus", kString)}
	case "lineItems":
		own = []fieldSpec{f("title", kString), f("description", kString), f("assignDate", kTimestamp),
			f("dueDate", kTimestamp), f("class", kRef), f("school", kRef), f("category", kRef),
			f("gradingPeriod", kRef), f("academicSession", kRef), f("scoreScale", kRef),
			f("resultValueMin", kNumber), f("resultValueMax", kNumber)}
	case "results":
		own = []fieldSpec{f("lineItem", kRef), f("student", kRef), f("class", kRef), f("scoreScale", kRef),
			f("scoreStatus", kString), f("score", kNumber), f("textScore", kString), f("scoreDate", kDate),
			f("comment", kString), f("inProgress", kBool), f("incomplete", kBool), f("late", kBool),
			f("missing", kBool)}
	default:
		return nil, false
	}
	out := []fieldSpec{f("sourcedId", kString), f("status", kString), f("dateLastModified", kTimestamp)}
	out = append(out, own...)
	return append(out, f("metadata", kMetadata)), true
}

// collectionsWith names the collections that have a field, for a hint when a rule targets a field its
// collection lacks.
func collectionsWith(name string) []string {
	var out []string
	for _, c := range collections() {
		fs, _ := schemaOf(c)
		if slices.ContainsFunc(fs, func(s fieldSpec) bool { return s.name == name }) {
			out = append(out, c)
		}
	}
	return out
}

// lineItemDates are the timestamp fields that also take a plain date; a date rule writes them as
// YYYY-MM-DD. dateLastModified needs a timestamp, so a date rule writes it as midnight UTC.
func dateOnlyOK(name string) bool { return name == "assignDate" || name == "dueDate" }

func knownCollections() string { return strings.Join(collections(), ", ") }
