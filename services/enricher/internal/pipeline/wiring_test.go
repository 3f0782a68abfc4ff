package pipeline_test

import (
	"testing"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/services/enricher/internal/dedup"
	"github.com/edtech-analytics/platform/services/enricher/internal/enrich"
	"github.com/edtech-analytics/platform/services/enricher/internal/pipeline"
	"github.com/twmb/franz-go/pkg/kgo"
)

// wire builds a pipeline as the enricher's app.Run does: its changelog readers (closed when the test
// ends) and the factory of its transactional sessions under txnID, with opts added to every client. pii may
// be nil.
func wire(t testing.TB, cfg pipeline.Config, kcfg kafkax.Config, deps kafkax.Deps, txnID string, codec *records.Codec,
	enr *enrich.Enricher, set *dedup.Set, shared pipeline.Claims, pii pipeline.PIIStore, ready func(bool),
	opts ...kgo.Opt) (*pipeline.Pipeline, pipeline.NewSession) {
	t.Helper()
	reader := func() *kgo.Client {
		cl, err := kafkax.NewReader(kcfg, deps, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl.Client
	}
	topics := kcfg.Topics()
	p := pipeline.New(cfg, topics, deps.Log, codec, enr, set, shared, pii, pipeline.Changelog{Restore: reader(), Backfill: reader()}, ready)
	txn := kafkax.TransactConfig{Group: cfg.Group, Topic: topics.Raw, TransactionalID: txnID, Timeout: cfg.TransactionTimeout}
	return p, func() (*kgo.GroupTransactSession, error) {
		return kafkax.NewTransactionalSession(kcfg, deps, txn, p.Rebalance(),
			append([]kgo.Opt{kgo.RecordPartitioner(kafkax.NewPartitioner(topics.Dedup))}, opts...)...)
	}
}
