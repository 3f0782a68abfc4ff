package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/tenancy/audit"
	"github.com/twmb/franz-go/pkg/kgo"
)

const replaySynopsis = "--tenant ID --from DATE --to DATE [--archive.url URL] [--dry-run] (Kafka flags: -h)"

// replayReport is what a replay read and republished.
type replayReport struct {
	TenantID string `json:"tenant_id"`
	From     string `json:"from"`
	To       string `json:"to"`
	Files    int    `json:"files"`
	// Read counts the district's raw records archived on those days; Retries the records of an event
	// already read (client retries); Enriched the events the enriched layer already holds.
	Read        int64 `json:"read"`
	Retries     int64 `json:"retries"`
	Enriched    int64 `json:"enriched"`
	Republished int64 `json:"republished"`
	DryRun      bool  `json:"dry_run"`
}

// runReplay republishes a district's archived raw records of a range of days (by occurred_at, UTC) to
// the raw topic, so that the enricher processes again what it did not pass on before (dead-lettered,
// held for a missing key or policy, or lost to a bug since fixed). Events the archive's enriched layer
// already holds are not republished, nor a retry twice: the counts in the stores stay exact whatever the
// enricher's dedup window, which only has to cover what the archiver has not archived yet. Each record
// keeps its key, so it reaches the partition (and dedup state) it came from.
func runReplay(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "replay", replaySynopsis)
	tenant := fs.String("tenant", "", "tenant (district) id")
	from := fs.String("from", "", "first day to replay, YYYY-MM-DD (UTC day of occurred_at)")
	to := fs.String("to", "", "last day to replay, YYYY-MM-DD")
	archiveURL := fs.String("archive.url", e.Getenv("ARCHIVE_URL"), "the archive (a gocloud.dev/blob URL, as the archiver's ARCHIVE_URL; env ARCHIVE_URL)")
	dryRun := fs.Bool("dry-run", false, "count what would be republished; publish nothing")
	var kcfg kafkax.Config
	kcfg.RegisterFlags(fs)
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenant); err != nil {
		return err
	}
	if err := required(fs, "from", "to", "archive.url"); err != nil {
		return err
	}
	first, err := time.Parse(time.DateOnly, *from)
	if err != nil {
		return usagef("--from: %q is not a date YYYY-MM-DD", *from)
	}
	last, err := time.Parse(time.DateOnly, *to)
	if err != nil {
		return usagef("--to: %q is not a date YYYY-MM-DD", *to)
	}
	if last.Before(first) {
		return usagef("--to: %s is before --from %s", *to, *from)
	}
	if err := kcfg.Validate(); err != nil {
		return usagef("kafka: %w", err)
	}
	b, err := openArchive(ctx, *archiveURL)
	if err != nil {
		return err
	}
	defer closeArchive(b, e)
	arch := archive.Blob{B: b}

	var producer *kafkax.Client
	if !*dryRun {
		if producer, err = kafkax.NewProducer(kcfg, kafkax.Deps{}); err != nil {
			return err
		}
		defer producer.Close()
	}
	report := replayReport{TenantID: *tenant, From: *from, To: *to, DryRun: *dryRun}
	runErr := replay(ctx, arch, producer, kcfg.Topics().Raw, first, last, &report)

	pool, err := connect(ctx, e, c)
	if err != nil {
		return errors.Join(runErr, err)
	}
	defer pool.Close()
	detail := struct {
		replayReport
		Error string `json:"error,omitempty"`
	}{replayReport: report}
	if runErr != nil {
		detail.Error = runErr.Error()
	}
	_, auditErr := audit.New(pool, envKeys(pool, e)).Append(ctx, "ctl", *tenant, "district.replay", detail)
	var outErr error
	if c.output == "json" {
		outErr = writeJSON(e.Stdout, report)
	} else {
		what := "republished"
		if *dryRun {
			what = "would republish (dry run)"
		}
		_, outErr = fmt.Fprintf(e.Stdout, "district %s, %s to %s: %d raw records in %d files; %d retries and %d events already enriched left out; %s %d to %s\n",
			report.TenantID, report.From, report.To, report.Read, report.Files, report.Retries, report.Enriched, what, report.Republished, kcfg.Topics().Raw)
	}
	if runErr != nil {
		return errors.Join(fmt.Errorf("replaying district %s: %w (%d republished before it stopped; running it again republishes only what the enricher has not passed on)",
			*tenant, runErr, report.Republished), auditErr, outErr)
	}
	return errors.Join(auditErr, outErr)
}

// replay reads the district's raw files of the days first to last, leaves out retries and events its
// enriched files hold, and produces the rest to topic (counting only, when producer is nil).
func replay(ctx context.Context, arch archive.Bucket, producer *kafkax.Client, topic string, first, last time.Time, report *replayReport) error {
	days := func(layer string) ([]archive.File, error) {
		files, err := archive.Files(ctx, arch, archive.TenantPrefix(layer, report.TenantID))
		if err != nil {
			return nil, err
		}
		var in []archive.File
		for _, f := range files {
			if !f.Day.Before(first) && !f.Day.After(last) {
				in = append(in, f)
			}
		}
		return in, nil
	}
	enrichedFiles, err := days("enriched")
	if err != nil {
		return err
	}
	enriched := map[string]bool{}
	if err := readAll(ctx, archive.NewReader(arch, enrichedFiles, nil), func(r archive.Record) error {
		enriched[r.EventID] = true
		return nil
	}); err != nil {
		return fmt.Errorf("reading the enriched layer: %w", err)
	}
	rawFiles, err := days("raw")
	if err != nil {
		return err
	}
	report.Files = len(rawFiles)
	seen := map[string]bool{}
	var batch []*kgo.Record
	flush := func() error {
		if producer != nil && len(batch) > 0 {
			if err := producer.ProduceSync(ctx, batch...).FirstErr(); err != nil {
				return fmt.Errorf("producing to %s: %w", topic, err)
			}
		}
		report.Republished += int64(len(batch))
		batch = batch[:0]
		return nil
	}
	err = readAll(ctx, archive.NewReader(arch, rawFiles, nil), func(r archive.Record) error {
		report.Read++
		switch {
		case seen[r.EventID]:
			report.Retries++
			return nil
		case enriched[r.EventID]:
			report.Enriched++
			seen[r.EventID] = true
			return nil
		}
		seen[r.EventID] = true
		key := r.Key
		if key == nil {
			key = []byte(report.TenantID)
		}
		batch = append(batch, &kgo.Record{Topic: topic, Key: key, Value: r.Value})
		if len(batch) == 1000 {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// readAll calls fn with every record the reader returns.
func readAll(ctx context.Context, rd *archive.Reader, fn func(archive.Record) error) error {
	for {
		_, recs, err := rd.Next(ctx, 10_000)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
}
