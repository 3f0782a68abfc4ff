package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

func TestShellQuoteRoundTripsThroughSh(t *testing.T) {
	tests := []string{"plain", "postgres://u@127.0.0.1:5432/db?sslmode=disable", "it's", `a"b $HOME \n`, ""}
	for _, in := range tests {
		out, err := exec.CommandContext(t.Context(), "sh", "-c", "printf %s "+shellQuote(in)).Output()
		if err != nil {
			t.Fatalf("sh with %q: %v", in, err)
		}
		if string(out) != in {
			t.Errorf("sh read %q back as %q", in, out)
		}
	}
}

func TestRunRejectsBadUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"no command", nil},
		{"unknown command", []string{"sideways"}},
		{"two commands", []string{"up", "down"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if err := run(t.Context(), tt.args, &stdout, &stderr); err == nil {
				t.Fatal("run succeeded, want an error")
			}
			if !strings.Contains(stderr.String(), "usage: devenv") {
				t.Fatalf("stderr = %q, want usage", stderr.String())
			}
		})
	}
}

func TestUpPrintsEnvironmentOverrides(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://app@db:5432/app")
	t.Setenv("CLICKHOUSE_ADDR", "ch:9000")
	t.Setenv("EDTECH_DEV_DIR", t.TempDir())
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"up"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	want := "export DATABASE_URL='postgres://app@db:5432/app'\nexport CLICKHOUSE_ADDR='ch:9000'\n"
	if stdout.String() != want {
		t.Fatalf("stdout = %q, want %q", stdout.String(), want)
	}
}
