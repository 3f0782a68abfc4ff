package app_test

import (
	"flag"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/services/connector/app"
)

// TestConfigValidate: the defaults need only the database and the master keys; a bad value is named with
// its variable, never replaced by a default.
func TestConfigValidate(t *testing.T) {
	var cfg app.Config
	fs := flag.NewFlagSet("connector", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") || !strings.Contains(err.Error(), "MASTER_KEYS") {
		t.Fatalf("defaults: %v", err)
	}
	if err := fs.Parse([]string{"-database.url", "postgres://x", "-master-keys", "m1:AAAA", "-gateway.url", "gateway:8080", "-sync.tick", "0s"}); err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "CONNECTOR_GATEWAY_URL") || !strings.Contains(err.Error(), "CONNECTOR_SYNC_TICK") ||
		strings.Contains(err.Error(), "DATABASE_URL") {
		t.Fatalf("bad values: %v", err)
	}
	if err := fs.Parse([]string{"-gateway.url", "http://gateway:8080", "-sync.tick", "10s"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
}
