// Package conf binds component configuration to command-line flags whose defaults come from environment
// variables, so every setting can be given either way (flags win). Each component owns a Config struct with
// RegisterFlags and Validate; this package only supplies the binding helpers and secret masking.
package conf

import (
	"flag"
	"fmt"
	"os"
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
	if v, ok := os.LookupEnv(env); ok && env != "" {
		def = v
	}
	fs.StringVar(p, name, def, usage(env, help))
}

// SecretVar binds a secret flag defaulting to the environment variable env.
func SecretVar(fs *flag.FlagSet, p *Secret, name, env, help string) {
	*p = Secret(os.Getenv(env))
	fs.Func(name, usage(env, help), func(v string) error { *p = Secret(v); return nil })
}

// List binds a comma-separated list flag defaulting to the environment variable env, then def.
func List(fs *flag.FlagSet, p *[]string, name, env, def, help string) {
	if v, ok := os.LookupEnv(env); ok && env != "" {
		def = v
	}
	*p = splitList(def)
	fs.Func(name, usage(env, help)+fmt.Sprintf(" (default %q)", def), func(v string) error {
		*p = splitList(v)
		return nil
	})
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// Int binds an int flag defaulting to the environment variable env, then def.
func Int(fs *flag.FlagSet, p *int, name, env string, def int, help string) {
	if v, ok := os.LookupEnv(env); ok && env != "" {
		if n, err := strconv.Atoi(v); err == nil {
			def = n
		}
	}
	fs.IntVar(p, name, def, usage(env, help))
}

// Duration binds a duration flag defaulting to the environment variable env, then def.
func Duration(fs *flag.FlagSet, p *time.Duration, name, env string, def time.Duration, help string) {
	if v, ok := os.LookupEnv(env); ok && env != "" {
		if d, err := time.ParseDuration(v); err == nil {
			def = d
		}
	}
	fs.DurationVar(p, name, def, usage(env, help))
}

// Bool binds a bool flag defaulting to the environment variable env, then def.
func Bool(fs *flag.FlagSet, p *bool, name, env string, def bool, help string) {
	if v, ok := os.LookupEnv(env); ok && env != "" {
		if b, err := strconv.ParseBool(v); err == nil {
			def = b
		}
	}
	fs.BoolVar(p, name, def, usage(env, help))
}
