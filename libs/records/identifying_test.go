package records

import (
	"reflect"
	"testing"
	"time"
)

func TestSealedFieldsPackAndUnpack(t *testing.T) {
	birth := time.Date(2013, 4, 5, 0, 0, 0, 0, time.UTC)
	yes, no := true, false
	ev := RawEvent{
		RosterDemographics: &RosterDemographics{SourcedID: "u1", BirthDate: &birth, Asian: &yes, White: &no, Sex: ptrTo("female")},
	}
	want := *ev.RosterDemographics
	if err := ev.PackSealed(); err != nil {
		t.Fatal(err)
	}
	d := ev.RosterDemographics
	if d.BirthDate != nil || d.Asian != nil || d.White != nil || ev.Sealed == nil {
		t.Fatalf("after packing: %+v, sealed %v", d, ev.Sealed)
	}
	var paths []string
	ev.IdentifyingStrings(func(path string, _ *string) { paths = append(paths, path) })
	if paths[len(paths)-1] != "sealed" {
		t.Fatalf("IdentifyingStrings does not name the packed fields: %v", paths)
	}
	if err := ev.UnpackSealed(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*ev.RosterDemographics, want) || ev.Sealed != nil {
		t.Fatalf("after unpacking: %+v, want %+v", *ev.RosterDemographics, want)
	}

	user := RawEvent{RosterUser: &RosterUser{SourcedID: "u1", BirthDate: &birth}}
	if err := user.PackSealed(); err != nil || user.RosterUser.BirthDate != nil {
		t.Fatalf("user birth date not packed: %v", err)
	}
	if err := user.UnpackSealed(); err != nil || !user.RosterUser.BirthDate.Equal(birth) {
		t.Fatalf("user birth date after unpacking: %v, %v", user.RosterUser.BirthDate, err)
	}

	plain := RawEvent{Attendance: &Attendance{Status: "present"}}
	if err := plain.PackSealed(); err != nil || plain.Sealed != nil {
		t.Fatalf("a record without such fields got sealed = %v (%v)", plain.Sealed, err)
	}
	for _, bad := range []string{`{"roster_user.birth_date":"2013-04-05"}`, `{"nope":1}`, `{"roster_demographics.birth_date":"05/04/2013"}`, `not json`} {
		ev := RawEvent{RosterDemographics: &RosterDemographics{SourcedID: "u1"}, Sealed: ptrTo(bad)}
		if err := ev.UnpackSealed(); err == nil {
			t.Errorf("UnpackSealed(%s) accepted it", bad)
		}
	}
}
