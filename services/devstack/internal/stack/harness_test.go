package stack_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/edtech-analytics/platform/libs/chutil/chtest"
	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/keyring/keyringtest"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/services/devstack/internal/stack"
)

// stackKeys are the master keys of every stack the tests start (and of the ctl commands they run).
var stackKeys = keyringtest.MasterKeys()

// testStack starts the whole platform on a fresh PostgreSQL database and ClickHouse database and a
// file:// archive in a temporary directory, with its own master key and the short group timeouts of the tests, and stops it at cleanup. It returns the stack
// and where its stores are.
func testStack(t *testing.T, tel *obs.Telemetry, log *slog.Logger) (st *stack.Stack, pgURL, chAddr, chDB string) {
	t.Helper()
	_, pgURL = pgtest.New(t)
	_, chDB, chAddr = chtest.New(t)
	st, err := stack.Start(context.Background(), stack.Config{Keys: keyring.Config{MasterKeys: conf.Secret(stackKeys)},
		DatabaseURL: pgURL, ClickHouseAddr: chAddr, ClickHouseDatabase: chDB, GatewayAddr: "127.0.0.1:0", QueryAddr: "127.0.0.1:0",
		ArchiveURL: "file://" + t.TempDir(),
	}, svc.Runtime{Log: log, Tel: tel}, append(kafkatest.GroupOpts(), kgo.TransactionTimeout(2*time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st, pgURL, chAddr, chDB
}
