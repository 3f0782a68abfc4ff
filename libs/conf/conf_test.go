package conf

import (
	"encoding/json"
	"flag"
	"testing"
	"time"
)

func TestEnvDefaultsAndFlagOverride(t *testing.T) {
	t.Setenv("CONF_TEST_STR", "from-env")
	t.Setenv("CONF_TEST_LIST", "a, b,,c")
	t.Setenv("CONF_TEST_INT", "7")
	t.Setenv("CONF_TEST_DUR", "3s")
	t.Setenv("CONF_TEST_SECRET", "hunter2")

	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var (
		s    string
		l    []string
		n    int
		d    time.Duration
		sec  Secret
		b    bool
		none string
	)
	String(fs, &s, "str", "CONF_TEST_STR", "def", "")
	List(fs, &l, "list", "CONF_TEST_LIST", "x", "")
	Int(fs, &n, "int", "CONF_TEST_INT", 1, "")
	Duration(fs, &d, "dur", "CONF_TEST_DUR", time.Second, "")
	SecretVar(fs, &sec, "secret", "CONF_TEST_SECRET", "")
	Bool(fs, &b, "bool", "CONF_TEST_BOOL_UNSET", true, "")
	String(fs, &none, "none", "CONF_TEST_UNSET", "def", "")
	if err := fs.Parse([]string{"-int", "9"}); err != nil {
		t.Fatal(err)
	}
	if s != "from-env" || n != 9 || d != 3*time.Second || !b || none != "def" {
		t.Fatalf("got s=%q n=%d d=%v b=%v none=%q", s, n, d, b, none)
	}
	if len(l) != 3 || l[0] != "a" || l[1] != "b" || l[2] != "c" {
		t.Fatalf("list = %q", l)
	}
	if sec.Reveal() != "hunter2" || sec.String() != "***" {
		t.Fatalf("secret reveal=%q string=%q", sec.Reveal(), sec.String())
	}
	out, _ := json.Marshal(struct{ P Secret }{sec})
	if string(out) != `{"P":"***"}` {
		t.Fatalf("secret json = %s", out)
	}
}
