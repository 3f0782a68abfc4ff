package app

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/tenancy/audit"
)

// TestKeyRotationCommands rotates a district's KEK and then the master key through ctl, and checks that
// a value sealed before both still opens with the new master key alone, and that both are audited.
func TestKeyRotationCommands(t *testing.T) {
	pool, url := migratedDB(t)
	mustCtl(t, url, "tenant", "create", "--id", "d1", "--name", "District 1")
	oldMaster := testMasterKeys // what ctl has run with so far: it wraps the audit key too
	newMaster := strings.TrimSpace(mustCtl(t, url, "keys", "new-master", "--id", "m2"))
	if !strings.HasPrefix(newMaster, "m2:") {
		t.Fatalf("keys new-master printed %q", newMaster)
	}
	lk, err := keyring.ParseLocalKeys(oldMaster)
	if err != nil {
		t.Fatal(err)
	}
	k, err := keyring.New(pool, lk, keyring.Options{}).SubjectKey(t.Context(), "d1", "stu-1")
	if err != nil {
		t.Fatal(err)
	}
	sealed := k.Seal("Ada")

	if _, _, err := ctl(t, url, "keys", "rotate-district", "--tenant", "d1", "--master-key-file", t.TempDir()+"/none"); err == nil ||
		!strings.Contains(err.Error(), "master key file") {
		t.Fatalf("rotate-district with a missing key file: err = %v", err)
	}
	var rot keyring.Rotation
	out := mustCtl(t, url, "keys", "rotate-district", "--tenant", "d1", "--master-keys", oldMaster, "--output", "json")
	if err := json.Unmarshal([]byte(out), &rot); err != nil || rot.From != 1 || rot.To != 2 || rot.Rewrapped != 1 {
		t.Fatalf("rotate-district printed %q (%v)", out, err)
	}
	if _, _, err := ctl(t, url, "keys", "rotate-district", "--tenant", "nope", "--master-keys", oldMaster); err == nil ||
		!strings.Contains(err.Error(), "no keys yet") {
		t.Fatalf("rotating a district without keys: err = %v", err)
	}
	out = mustCtl(t, url, "keys", "rotate-master", "--master-keys", newMaster+","+oldMaster)
	if !strings.HasPrefix(out, "3 district keys re-wrapped") { // d1's lookup secret and current KEK, the audit key
		t.Fatalf("rotate-master printed %q", out)
	}

	lk2, err := keyring.ParseLocalKeys(newMaster)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := keyring.New(pool, lk2, keyring.Options{}).Open(t.Context(), "d1", sealed); err != nil || got != "Ada" {
		t.Fatalf("after both rotations, with the new master key alone: %q, %v", got, err)
	}
	entries, err := audit.New(pool, nil).Entries(t.Context(), 1, 10)
	// The chain verifies with the new master key alone.
	if _, err := audit.New(pool, keyring.New(pool, lk2, keyring.Options{})).Verify(t.Context(), nil); err != nil {
		t.Fatalf("audit chain after the master rotation: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, en := range entries {
		actions = append(actions, en.Action)
	}
	if got := strings.Join(actions, ","); !strings.Contains(got, "keys.rotate_district,keys.rotate_master") {
		t.Fatalf("audit log actions %s", got)
	}
}
