package app

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	chrebuild "github.com/edtech-analytics/platform/services/aggregator/rebuild"
	"github.com/twmb/franz-go/pkg/kgo"
)

// runRebuildClickHouse rebuilds a district's ClickHouse rows (events and every rollup) from its archived
// and then its topic's enriched records, while the aggregator runs: the rows are staged, compared with
// the live ones, and swapped in by the aggregator at a marker on each of the district's partitions.
func runRebuildClickHouse(ctx context.Context, e Env, c *common, ch chConfig, kcfg kafkax.Config, archiveURL string,
	cfg chrebuild.Config, record func(string, any) error) error {
	conn, err := ch.open(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }() // nothing is buffered: reads, and inserts already sent
	codec, err := stream.NewCodec(ctx, kcfg)
	if err != nil {
		return err
	}
	if archiveURL != "" {
		b, err := openArchive(ctx, archiveURL)
		if err != nil {
			return err
		}
		defer closeArchive(b, e)
		cfg.Archive = archive.Blob{B: b}
	}
	cfg.Kafka, cfg.Database, cfg.Dial = kcfg.ForService("ctl-rebuild"), ch.database, ch.openAt
	reader, err := kafkax.NewReader(cfg.Kafka, kafkax.Deps{})
	if err != nil {
		return err
	}
	defer reader.Close()
	producer, err := kafkax.NewProducer(cfg.Kafka, kafkax.Deps{}, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return err
	}
	defer producer.Close()
	progress := &errWriter{w: e.Stderr} // a failed progress line is reported after the rebuild, not in its middle
	progress.printf("rebuild %s (clickhouse): staging the district's rows\n", cfg.TenantID)
	report, runErr := chrebuild.Run(ctx, conn, codec, reader.Client, producer.Client, cfg)
	outcome := "swapped in and verified"
	switch {
	case runErr != nil && errors.Is(runErr, chrebuild.ErrDiffNotAccepted):
		outcome = "refused: the rebuilt rows differ from the live ones (run again with --accept-diff)"
	case runErr != nil:
		outcome = "failed: " + runErr.Error()
	case cfg.DryRun:
		outcome = "dry run: nothing swapped"
	}
	auditErr := record("district.rebuild.clickhouse", struct {
		chrebuild.Report
		DryRun     bool   `json:"dry_run"`
		AcceptDiff bool   `json:"accept_diff"`
		Outcome    string `json:"outcome"`
	}{report, cfg.DryRun, cfg.AcceptDiff, outcome})
	var outErr error
	if c.output == "json" {
		outErr = writeJSON(e.Stdout, report)
	} else {
		same := "identical to"
		if !report.Equal {
			same = "different from"
		}
		var staged []string
		for _, typ := range slices.Sorted(maps.Keys(report.Staged)) {
			staged = append(staged, fmt.Sprintf("%s %d", typ, report.Staged[typ]))
		}
		_, outErr = fmt.Fprintf(e.Stdout, "district %s (clickhouse, partitions %v), rebuild %s: read %d records (%d from the archive), staged %s; "+
			"rebuilt rows (%d) %s the live ones (%d); %s in %s\n", report.TenantID, report.Partitions, report.ID, report.Scanned, report.Archived,
			strings.Join(staged, ", "), report.Rebuilt.Rows, same, report.Live.Rows, outcome, report.Elapsed.Round(time.Millisecond))
	}
	if runErr != nil {
		return errors.Join(fmt.Errorf("rebuilding district %s in clickhouse: %w", cfg.TenantID, runErr), auditErr, outErr, progress.Err())
	}
	return errors.Join(auditErr, outErr, progress.Err())
}
