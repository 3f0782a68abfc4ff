// Package conf binds component configuration to command-line flags whose defaults come from environment
// variables, so every setting can be given either way (flags win). Each component owns a Config struct with
// RegisterFlags and Validate; this package only supplies the binding helpers and secret masking. Every
// variable a helper binds is recorded on its flag, so Vars tells which variables a flag set reads: the
// deploy checks compare the compose and Kubernetes files against that record.
package conf

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Secret is a string that prints masked, so effective configs can be logged safely.
type Secret string

// String masks the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "***"
}

// MarshalText masks the value in JSON and slog output.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the real value.
func (s Secret) Reveal() string { return string(s) }

func usage(env, help string) string {
	if env == "" {
		return help
	}
	return fmt.Sprintf("%s (env %s)", help, env)
}

// String binds a string flag defaulting to the environment variable env, then def.
func String(fs *flag.FlagSet, p *string, name, env, def, help string) {
	bind(fs, &envValue[string]{p: p, env: env, parse: same[string], format: func(s string) string { return s }}, name, def, help)
}

// SecretVar binds a secret flag defaulting to the environment variable env.
func SecretVar(fs *flag.FlagSet, p *Secret, name, env, help string) {
	parse := func(s string) (Secret, error) { return Secret(s), nil }
	bind(fs, &envValue[Secret]{p: p, env: env, parse: parse, format: Secret.String, secret: true}, name, "", help)
}

// List binds a comma-separated list flag defaulting to the environment variable env, then def.
func List(fs *flag.FlagSet, p *[]string, name, env, def, help string) {
	parse := func(s string) ([]string, error) { return splitList(s), nil }
	format := func(v []string) string { return strings.Join(v, ",") }
	bind(fs, &envValue[[]string]{p: p, env: env, parse: parse, format: format}, name, splitList(def), help)
}

func same[T any](v T) (T, error) { return v, nil }

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// Int binds an int flag defaulting to the environment variable env, then def. An environment value that
// does not parse is an error that Parse and Check report, naming the variable and the value.
func Int(fs *flag.FlagSet, p *int, name, env string, def int, help string) {
	bind(fs, &envValue[int]{p: p, env: env, parse: strconv.Atoi, format: strconv.Itoa}, name, def, help)
}

// Float64 binds a float64 flag defaulting to the environment variable env, then def. An environment
// value that does not parse is an error that Parse and Check report.
func Float64(fs *flag.FlagSet, p *float64, name, env string, def float64, help string) {
	bind(fs, &envValue[float64]{p: p, env: env, parse: func(s string) (float64, error) { return strconv.ParseFloat(s, 64) },
		format: func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }}, name, def, help)
}

// Duration binds a duration flag defaulting to the environment variable env, then def. An environment
// value that does not parse is an error that Parse and Check report.
func Duration(fs *flag.FlagSet, p *time.Duration, name, env string, def time.Duration, help string) {
	bind(fs, &envValue[time.Duration]{p: p, env: env, parse: time.ParseDuration, format: time.Duration.String}, name, def, help)
}

// Bool binds a bool flag defaulting to the environment variable env, then def. An environment value that
// does not parse is an error that Parse and Check report.
func Bool(fs *flag.FlagSet, p *bool, name, env string, def bool, help string) {
	bind(fs, boolValue{&envValue[bool]{p: p, env: env, parse: strconv.ParseBool, format: strconv.FormatBool}}, name, def, help)
}

// Parse parses args into fs, then reports the environment values bound to fs that did not parse
// (Check).
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	return Check(fs)
}

// Check reports every environment value bound to fs by this package that did not parse, each naming the
// variable, its value and the flag, so a service stops at startup instead of running on a default.
func Check(fs *flag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := f.Value.(interface{ envError() error }); ok {
			if err := v.envError(); err != nil {
				errs = append(errs, fmt.Errorf("%w (flag -%s)", err, f.Name))
			}
		}
	})
	return errors.Join(errs...)
}

// envValue is a flag value whose default comes from an environment variable, keeping the parse error of
// a bad environment value for Check.
type envValue[T any] struct {
	p      *T
	env    string
	parse  func(string) (T, error)
	format func(T) string
	secret bool // bound with SecretVar
	err    error
}

// typed is the envValue under a flag.Value, whatever wraps it.
type typed[T any] interface {
	flag.Value
	value() *envValue[T]
}

func (v *envValue[T]) value() *envValue[T] { return v }

func (v *envValue[T]) Set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return fmt.Errorf("%q is not valid: %w", s, cause(err))
	}
	*v.p = x
	return nil
}

func (v *envValue[T]) String() string {
	if v == nil || v.p == nil { // flag.PrintDefaults asks a zero value
		return ""
	}
	return v.format(*v.p)
}

func (v *envValue[T]) envError() error { return v.err }

func (v *envValue[T]) envVar() (string, bool) { return v.env, v.secret }

// Var is an environment variable a flag set reads, bound by one of this package's helpers.
type Var struct {
	Env    string // the variable's name
	Flag   string // the flag that overrides it
	Secret bool   // bound with SecretVar: its value is a secret
}

// Vars returns the environment variables bound to fs by this package, sorted by name: what a service
// whose flags fs holds reads from its environment.
func Vars(fs *flag.FlagSet) []Var {
	var vars []Var
	fs.VisitAll(func(f *flag.Flag) { // VisitAll goes in flag name order
		if v, ok := f.Value.(interface{ envVar() (string, bool) }); ok {
			if env, secret := v.envVar(); env != "" {
				vars = append(vars, Var{Env: env, Flag: f.Name, Secret: secret})
			}
		}
	})
	slices.SortFunc(vars, func(a, b Var) int { return strings.Compare(a.Env, b.Env) })
	return vars
}

// boolValue lets a bool flag be given without a value (-flag).
type boolValue struct{ *envValue[bool] }

func (boolValue) IsBoolFlag() bool { return true }

// bind sets the value to def, then to the environment variable's value when it is set and parses, and
// registers the flag.
func bind[T any](fs *flag.FlagSet, fv typed[T], name string, def T, help string) {
	v := fv.value()
	*v.p = def
	if s, ok := os.LookupEnv(v.env); ok && v.env != "" {
		if x, err := v.parse(s); err != nil {
			v.err = fmt.Errorf("env %s=%q: not a valid %T: %w", v.env, s, def, cause(err))
		} else {
			*v.p = x
		}
	}
	fs.Var(fv, name, usage(v.env, help))
}

// cause drops strconv's repetition of the function and the input from a parse error.
func cause(err error) error {
	if inner := errors.Unwrap(err); inner != nil {
		return inner
	}
	return err
}
