package conf

import (
	"encoding/json"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEnvDefaultsAndFlagOverride(t *testing.T) {
	t.Setenv("CONF_TEST_STR", "from-env")
	t.Setenv("CONF_TEST_LIST", "a, b,,c")
	t.Setenv("CONF_TEST_INT", "7")
	t.Setenv("CONF_TEST_DUR", "3s")
	t.Setenv("CONF_TEST_SECRET", "hunter2")
	t.Setenv("CONF_TEST_FLOAT", "2.5")

	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var (
		s    string
		l    []string
		n    int
		d    time.Duration
		f    float64
		sec  Secret
		b    bool
		none string
	)
	String(fs, &s, "str", "CONF_TEST_STR", "def", "")
	List(fs, &l, "list", "CONF_TEST_LIST", "x", "")
	Int(fs, &n, "int", "CONF_TEST_INT", 1, "")
	Duration(fs, &d, "dur", "CONF_TEST_DUR", time.Second, "")
	Float64(fs, &f, "float", "CONF_TEST_FLOAT", 1, "")
	SecretVar(fs, &sec, "secret", "CONF_TEST_SECRET", "")
	Bool(fs, &b, "bool", "CONF_TEST_BOOL_UNSET", true, "")
	String(fs, &none, "none", "CONF_TEST_UNSET", "def", "")
	if err := fs.Parse([]string{"-int", "9"}); err != nil {
		t.Fatal(err)
	}
	if s != "from-env" || n != 9 || d != 3*time.Second || f != 2.5 || !b || none != "def" {
		t.Fatalf("got s=%q n=%d d=%v f=%v b=%v none=%q", s, n, d, f, b, none)
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

// TestBadEnvironmentValueStopsStartup: a value that does not parse is an error naming the variable and
// the value (it used to keep the default silently: GATEWAY_MAX_EVENTS=1k ran with 1000).
func TestBadEnvironmentValueStopsStartup(t *testing.T) {
	for _, tt := range []struct {
		env, val string
		bind     func(fs *flag.FlagSet)
		want     string
	}{
		{"CONF_TEST_BAD_INT", "1k", func(fs *flag.FlagSet) { var n int; Int(fs, &n, "max", "CONF_TEST_BAD_INT", 1000, "") },
			`env CONF_TEST_BAD_INT="1k": not a valid int: invalid syntax (flag -max)`},
		{"CONF_TEST_BAD_DUR", "10", func(fs *flag.FlagSet) {
			var d time.Duration
			Duration(fs, &d, "wait", "CONF_TEST_BAD_DUR", time.Second, "")
		}, `env CONF_TEST_BAD_DUR="10": not a valid time.Duration: time: missing unit in duration "10" (flag -wait)`},
		{"CONF_TEST_BAD_FLOAT", "3x", func(fs *flag.FlagSet) { var f float64; Float64(fs, &f, "z", "CONF_TEST_BAD_FLOAT", 3, "") },
			`env CONF_TEST_BAD_FLOAT="3x": not a valid float64: invalid syntax (flag -z)`},
		{"CONF_TEST_BAD_BOOL", "yes", func(fs *flag.FlagSet) { var b bool; Bool(fs, &b, "on", "CONF_TEST_BAD_BOOL", false, "") },
			`env CONF_TEST_BAD_BOOL="yes": not a valid bool: invalid syntax (flag -on)`},
	} {
		t.Run(tt.env, func(t *testing.T) {
			t.Setenv(tt.env, tt.val)
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			tt.bind(fs)
			err := Parse(fs, nil)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Parse = %v, want %q", err, tt.want)
			}
			if err := Check(fs); err == nil {
				t.Fatal("Check = nil after a bad value")
			}
		})
	}
}

func TestFlagsParseAndBoolNeedsNoValue(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		b bool
		n int
		d time.Duration
	)
	Bool(fs, &b, "on", "", false, "")
	Int(fs, &n, "n", "", 1, "")
	Duration(fs, &d, "d", "", time.Second, "")
	if err := Parse(fs, []string{"-on", "-n", "5", "-d", "2m"}); err != nil {
		t.Fatal(err)
	}
	if !b || n != 5 || d != 2*time.Minute {
		t.Fatalf("b=%v n=%d d=%v", b, n, d)
	}
	err := Parse(flag.NewFlagSet("t", flag.ContinueOnError), []string{"-x"})
	if err == nil {
		t.Fatal("an unknown flag parsed")
	}
	fs2 := flag.NewFlagSet("t", flag.ContinueOnError)
	fs2.SetOutput(io.Discard)
	Int(fs2, &n, "n", "", 1, "")
	if err := fs2.Parse([]string{"-n", "ten"}); err == nil || !strings.Contains(err.Error(), `"ten" is not valid`) {
		t.Fatalf("bad flag value: %v", err)
	}
}

// TestVarsRecordsEveryBinding: Vars lists each variable a helper bound, with its flag and whether it is a
// secret, and leaves out flags bound without this package or without a variable.
func TestVarsRecordsEveryBinding(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var (
		s, l2 string
		l     []string
		n     int
		d     time.Duration
		sec   Secret
		b     bool
	)
	String(fs, &s, "str", "V_STR", "", "")
	List(fs, &l, "list", "V_LIST", "", "")
	Int(fs, &n, "int", "V_INT", 0, "")
	Duration(fs, &d, "dur", "V_DUR", 0, "")
	SecretVar(fs, &sec, "secret", "V_SECRET", "")
	Bool(fs, &b, "bool", "V_BOOL", false, "")
	String(fs, &l2, "no-env", "", "", "")
	fs.String("plain", "", "a flag of the standard library")
	want := []Var{
		{Env: "V_BOOL", Flag: "bool"}, {Env: "V_DUR", Flag: "dur"}, {Env: "V_INT", Flag: "int"},
		{Env: "V_LIST", Flag: "list"}, {Env: "V_SECRET", Flag: "secret", Secret: true}, {Env: "V_STR", Flag: "str"},
	}
	if got := Vars(fs); !slices.Equal(got, want) {
		t.Fatalf("Vars = %+v, want %+v", got, want)
	}
}
