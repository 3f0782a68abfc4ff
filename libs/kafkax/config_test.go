package kafkax

import (
	"flag"
	"testing"
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
