package obstest

import (
	"log/slog"
	"testing"
)

func TestAddrWaitsForTheLine(t *testing.T) {
	l := NewLog()
	log := slog.New(slog.NewJSONHandler(l, nil))
	log.Info("starting")
	go log.Info("admin listening", "addr", "127.0.0.1:41234")
	if got := l.Addr(t, "admin listening", nil); got != "127.0.0.1:41234" {
		t.Fatalf("Addr = %q", got)
	}
}
