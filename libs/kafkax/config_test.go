package kafkax

import (
	"flag"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/conf"
)

// TestClientIDIsTheOperatorsOrTheServiceName: KAFKA_CLIENT_ID reaches the clients; without it each
// service names itself.
func TestClientIDIsTheOperatorsOrTheServiceName(t *testing.T) {
	t.Setenv("KAFKA_CLIENT_ID", "district-edge-7")
	var c Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if got := c.ForService("sink").ClientID; got != "district-edge-7" {
		t.Errorf("client id %q, want the operator's district-edge-7", got)
	}
	if got := (Config{}).ForService("sink").ClientID; got != "sink" {
		t.Errorf("client id %q, want sink", got)
	}
}

// TestRetentionIsExplicitOnEveryTopic: every platform topic is created with a retention of its own (never
// the broker's default); raw and enriched take theirs from the environment, 30 days without it.
func TestRetentionIsExplicitOnEveryTopic(t *testing.T) {
	parse := func() Config {
		var c Config
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		c.RegisterFlags(fs)
		if err := conf.Parse(fs, nil); err != nil {
			t.Fatal(err)
		}
		return c
	}
	retention := func(c Config) map[string]string {
		out := map[string]string{}
		for _, s := range PlatformTopics(c) {
			out[strings.TrimPrefix(s.Name, c.TopicPrefix)] = s.Configs["retention.ms"]
		}
		return out
	}
	want := map[string]string{"raw": "2592000000", "enriched": "2592000000", "dlq": "7776000000", "control": "-1",
		"enricher-dedup": "604800000", "audit-heads": "-1"}
	if got := retention(parse()); !maps.Equal(got, want) {
		t.Errorf("retention by default = %v, want %v", got, want)
	}
	if got := retention(Config{TopicPrefix: "x."}); !maps.Equal(got, want) {
		t.Errorf("retention of a Config built in code = %v, want the defaults %v", got, want)
	}
	t.Setenv(EnvRetentionEnriched, "2160h")
	want["enriched"] = "7776000000"
	c := parse()
	if got := retention(c); !maps.Equal(got, want) {
		t.Errorf("retention with %s=2160h = %v, want %v", EnvRetentionEnriched, got, want)
	}
	c.RetentionRaw = 1500 * time.Microsecond
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "kafka.retention-raw") {
		t.Errorf("Validate(1.5ms) = %v, want a retention error", err)
	}
}
