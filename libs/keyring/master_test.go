package keyring_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/keyring"
)

func TestLocalKeysParse(t *testing.T) {
	a, b := keyring.NewLocalKeyLine("a"), keyring.NewLocalKeyLine("b")
	lk, err := keyring.ParseLocalKeys(a + "," + b)
	if err != nil || lk.Current() != "a" {
		t.Fatalf("ParseLocalKeys = %v, %v", lk, err)
	}
	for _, tc := range []struct{ spec, want string }{
		{"", "no master key"},
		{"noid", "want id:base64key"},
		{"a:!!!", `master key "a": not base64`},
		{"a:c2hvcnQ=", `master key "a": 5 bytes, want 32`},
		{a + "\n" + a, `master key "a": listed twice`},
	} {
		if _, err := keyring.ParseLocalKeys(tc.spec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseLocalKeys(%.12q) = %v, want an error containing %q", tc.spec, err, tc.want)
		}
	}
	file := filepath.Join(t.TempDir(), "master.keys")
	if err := os.WriteFile(file, []byte("# master keys\n"+b+"\n\n"+a+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if lk, err := keyring.LoadLocalKeys("", file); err != nil || lk.Current() != "b" {
		t.Fatalf("LoadLocalKeys(file) = %v, %v", lk, err)
	}
	if _, err := keyring.LoadLocalKeys(a, file); err == nil {
		t.Fatal("LoadLocalKeys accepted both keys and a file")
	}
	if _, err := keyring.LoadLocalKeys("", ""); err == nil || !strings.Contains(err.Error(), "none configured") {
		t.Fatalf("LoadLocalKeys with nothing = %v", err)
	}
}
