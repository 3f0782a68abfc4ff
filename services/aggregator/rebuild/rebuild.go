// Package rebuild rebuilds one district's ClickHouse rows (events and every rollup) from a replay of its
// enriched records, the archive's first and then the topic's, while the aggregator keeps running: the
// rows are staged in a table of their own and the aggregator swaps them in at a marker on each of the
// district's partitions, in order with its inserts, so nothing is counted twice or lost (see chstore's
// rebuild.go). It is what `ctl rebuild --store clickhouse` runs.
package rebuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/services/aggregator/internal/chstore"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Errors of a rebuild.
var (
	// ErrHistoryTruncated: a partition's topic no longer starts at its first record and the archive does
	// not hold what retention removed.
	ErrHistoryTruncated = errors.New("topic history truncated and not archived")
	// ErrNotSwapped: the aggregator did not pass every marker in time, or abandoned the rebuild.
	ErrNotSwapped = errors.New("the rebuilt rows were not swapped in")
	// ErrVerification: after the swap, events does not hold exactly the staged rows.
	ErrVerification = errors.New("the swapped rows are not the staged ones")
	// ErrDiffNotAccepted: the rebuilt rows differ from the live ones and Config.AcceptDiff was not set;
	// nothing was swapped.
	ErrDiffNotAccepted = errors.New("rebuilt rows differ from the live rows (not accepted)")
)

// Config says what to rebuild and how.
type Config struct {
	TenantID string
	// Kafka names the enriched topic; the reader given to Run reads it and the producer writes the
	// markers to it.
	Kafka kafkax.Config
	// Database is the ClickHouse database of events (the connection's default).
	Database string
	// AllPartitions replays every partition, not only the one the district's key hashes to (a hot
	// district's records spread over all of them).
	AllPartitions bool
	// Archive, if set, holds the district's enriched history: its files are read up to the archive's
	// index, and the topic after.
	Archive archive.Bucket
	// DryRun stages the rows and compares them with the live ones, then drops them: no marker, no swap.
	DryRun bool
	// AcceptDiff swaps rebuilt rows that differ from the live ones in; without it only equal ones are
	// (which changes nothing but proves the store right).
	AcceptDiff bool
	// SwapTimeout bounds the wait for the aggregator to pass the markers (default 10 minutes).
	SwapTimeout time.Duration
	// Dial connects to one node of the cluster (host:port as its remote_servers name it) with Database
	// as default, as conn was made: the replicated cluster layout needs it.
	Dial func(ctx context.Context, addr string) (driver.Conn, error)
	Log  *slog.Logger
}

// Report is what a rebuild did.
type Report struct {
	ID         string           `json:"id"`
	TenantID   string           `json:"tenant_id"`
	Partitions []int32          `json:"partitions"`
	Scanned    int64            `json:"scanned"`      // records read, the district's and (from the topic) others'
	Archived   int64            `json:"from_archive"` // of them, read from the archive
	Staged     map[string]int64 `json:"staged"`       // rows staged, by type
	Skipped    map[string]int64 `json:"skipped,omitempty"`
	// Live and Rebuilt sum the district's rows before the offsets the topic ended at when the rebuild
	// began: in events as the aggregator stored them, and as rebuilt. Equal when they match.
	Live    chstore.Checksum `json:"live"`
	Rebuilt chstore.Checksum `json:"rebuilt"`
	Equal   bool             `json:"equal"`
	// Markers is the offset of each partition's marker; After sums the district's rows before them in
	// events once the aggregator swapped; Verified when that equals the staged rows.
	Markers  map[int32]int64  `json:"markers,omitempty"`
	After    chstore.Checksum `json:"after"`
	Swapped  bool             `json:"swapped"`
	Verified bool             `json:"verified"`
	Elapsed  time.Duration    `json:"elapsed"`
}

// replicas makes every replica of the cluster layout's tables fetch what its shard holds before a read
// through a Distributed table, which may pick any replica; nothing for one server.
type replicas struct{ cluster *chutil.Cluster }

func (r replicas) sync(ctx context.Context, tables ...string) error {
	if r.cluster == nil {
		return nil
	}
	for _, t := range tables {
		if err := r.cluster.SyncReplicas(ctx, t+"_local"); err != nil {
			return err
		}
	}
	return nil
}

// Run rebuilds cfg.TenantID's rows in ClickHouse (conn). reader reads the enriched topic (a client of
// its own, which the caller closes); producer writes the markers.
func Run(ctx context.Context, conn driver.Conn, codec *records.Codec, reader, producer *kgo.Client, cfg Config) (Report, error) {
	start := time.Now()
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.SwapTimeout <= 0 {
		cfg.SwapTimeout = 10 * time.Minute
	}
	id := uuid.NewString()
	report := Report{ID: id, TenantID: cfg.TenantID}
	// In the replicated cluster layout (events is Distributed, ADR 0026) the rebuild reaches every node.
	cluster, err := chutil.ClusterOf(ctx, conn, cfg.Database, "events", cfg.Dial)
	if err != nil {
		return report, err
	}
	if cluster != nil {
		defer cluster.Close()
	}
	rs := replicas{cluster}
	topic := cfg.Kafka.Topics().Enriched
	adm := kadm.NewClient(reader)
	starts, err := listOffsets(ctx, adm.ListStartOffsets, topic)
	if err != nil {
		return report, err
	}
	ends, err := listOffsets(ctx, adm.ListEndOffsets, topic)
	if err != nil {
		return report, err
	}
	if cfg.AllPartitions {
		report.Partitions = slices.Sorted(maps.Keys(starts))
	} else {
		report.Partitions = []int32{kafkax.KeyPartition([]byte(cfg.TenantID), len(starts))}
	}
	var history archive.History
	if cfg.Archive != nil {
		if history, err = archive.TenantHistory(ctx, cfg.Archive, "enriched", cfg.TenantID, report.Partitions, starts); err != nil {
			return report, fmt.Errorf("%w: %w", ErrHistoryTruncated, err)
		}
	}
	upTo := history.UpTo
	from := map[int32]int64{} // where the topic is read from, after the archive
	for _, p := range report.Partitions {
		last, archived := upTo[p]
		switch {
		case archived:
			from[p] = min(last+1, ends[p])
		case starts[p] > 0:
			return report, fmt.Errorf("%w: %s partition %d starts at offset %d and nothing of it is archived (give the archive: --archive.url)",
				ErrHistoryTruncated, topic, p, starts[p])
		default:
			from[p] = 0
		}
	}

	st, err := chstore.NewStager(ctx, conn, codec, cfg.Database, cfg.TenantID, id, cluster)
	if err != nil {
		return report, err
	}
	swapped := false
	defer func() {
		if !swapped {
			if err := st.Finish(context.WithoutCancel(ctx), false); err != nil {
				cfg.Log.Warn("dropping the staged rows of a rebuild that did not swap", "err", err)
			}
		}
	}()
	r := &replay{cfg: cfg, reader: reader, topic: topic, st: st, report: &report, last: map[int32]int64{}}
	for p, off := range upTo {
		r.last[p] = min(off, ends[p]-1)
	}
	if cfg.Archive != nil {
		if err := r.archive(ctx, history, ends); err != nil {
			return report, err
		}
	}
	for _, p := range report.Partitions {
		if err := r.topicRange(ctx, p, from[p], ends[p]); err != nil {
			return report, err
		}
	}
	report.Staged, report.Skipped = st.Staged, st.Skipped

	// Compare with the live rows: once the aggregator stored every record before where the topic ended
	// (the last record read: a transaction's commit marker may follow it, which no consumer stores).
	stored := map[int32]int64{}
	for p, last := range r.last {
		stored[p] = last + 1
	}
	if err := waitStored(ctx, conn, topic, stored, cfg.SwapTimeout); err != nil {
		return report, err
	}
	if err := rs.sync(ctx, "events", st.Table()); err != nil {
		return report, err
	}
	if report.Live, err = chstore.ChecksumOf(ctx, conn, "events", cfg.TenantID, topic, ends); err != nil {
		return report, err
	}
	if report.Rebuilt, err = chstore.ChecksumOf(ctx, conn, st.Table(), cfg.TenantID, topic, ends); err != nil {
		return report, err
	}
	report.Equal = report.Live == report.Rebuilt
	if cfg.DryRun {
		report.Elapsed = time.Since(start)
		return report, nil
	}
	if !report.Equal && !cfg.AcceptDiff {
		return report, fmt.Errorf("%w: the live store holds %d rows of the district (sum %d), the rebuild %d (sum %d)",
			ErrDiffNotAccepted, report.Live.Rows, report.Live.Sum, report.Rebuilt.Rows, report.Rebuilt.Sum)
	}

	// The markers, then the records between where the topic ended and each marker.
	report.Markers = map[int32]int64{}
	marker, err := codec.Encode(records.NewClickHouseRebuild(id, cfg.TenantID, time.Now()))
	if err != nil {
		return report, err
	}
	for _, p := range report.Partitions {
		res, err := producer.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Key: []byte(cfg.TenantID), Value: marker}).First()
		if err != nil {
			return report, fmt.Errorf("writing the rebuild's marker to %s partition %d: %w", topic, p, err)
		}
		if res.Partition != p {
			return report, fmt.Errorf("the rebuild's marker for partition %d went to partition %d: the producer must partition manually", p, res.Partition)
		}
		report.Markers[p] = res.Offset
		if err := r.topicRange(ctx, p, ends[p], res.Offset); err != nil {
			return report, err
		}
	}
	if err := st.Ready(ctx); err != nil {
		return report, err
	}
	report.Staged, report.Skipped = st.Staged, st.Skipped
	past := map[int32]int64{}
	for p, m := range report.Markers {
		past[p] = m + 1
	}
	if err := waitStored(ctx, conn, topic, past, cfg.SwapTimeout); err != nil {
		return report, fmt.Errorf("%w: %w", ErrNotSwapped, err)
	}
	if err := rs.sync(ctx, "district_rebuilds", "events"); err != nil {
		return report, err
	}
	rb, _, err := chstore.ReadRebuild(ctx, conn, id)
	if err != nil {
		return report, err
	}
	if rb.State != chstore.RebuildReady {
		return report, fmt.Errorf("%w: the aggregator found the rebuild %s", ErrNotSwapped, rb.State)
	}
	report.Swapped = true
	staged, err := chstore.ChecksumOf(ctx, conn, st.Table(), cfg.TenantID, topic, report.Markers)
	if err != nil {
		return report, err
	}
	if report.After, err = chstore.ChecksumOf(ctx, conn, "events", cfg.TenantID, topic, report.Markers); err != nil {
		return report, err
	}
	report.Verified = report.After == staged
	if !report.Verified {
		return report, fmt.Errorf("%w: events holds %d rows (sum %d) of the district before the markers, the staging %d (sum %d)",
			ErrVerification, report.After.Rows, report.After.Sum, staged.Rows, staged.Sum)
	}
	swapped = true
	if err := st.Finish(ctx, true); err != nil {
		return report, err
	}
	report.Elapsed = time.Since(start)
	return report, nil
}

// replay feeds the district's records to the stager.
type replay struct {
	cfg    Config
	reader *kgo.Client
	topic  string
	st     *chstore.Stager
	report *Report
	last   map[int32]int64 // the last record read of each partition, the district's or not
}

// archive stages the district's archived records of each partition up to the archive's index (and
// below where the topic ends).
func (r *replay) archive(ctx context.Context, h archive.History, ends map[int32]int64) error {
	limit := map[int32]int64{}
	for p, last := range h.UpTo {
		limit[p] = min(last, ends[p]-1)
	}
	rd := archive.NewReader(r.cfg.Archive, h.Files, limit)
	for {
		p, recs, err := rd.Next(ctx, 50_000)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the archive: %w", err)
		}
		krecs := make([]*kgo.Record, len(recs))
		for i, rec := range recs {
			krecs[i] = &kgo.Record{Topic: r.topic, Partition: p, Offset: rec.Offset, Key: rec.Key, Value: rec.Value}
		}
		r.report.Scanned += int64(len(recs))
		r.report.Archived += int64(len(recs))
		if err := r.st.Add(ctx, r.topic, krecs); err != nil {
			return err
		}
	}
}

// topicRange stages the district's records of partition p from offset from up to (not including) to.
func (r *replay) topicRange(ctx context.Context, p int32, from, to int64) error {
	if from >= to {
		return nil
	}
	r.reader.AddConsumePartitions(map[string]map[int32]kgo.Offset{r.topic: {p: kgo.NewOffset().At(from)}})
	defer r.reader.RemoveConsumePartitions(map[string][]int32{r.topic: {p}})
	key, prefix := []byte(r.cfg.TenantID), []byte(r.cfg.TenantID+"/")
	next := from
	for next < to {
		fetches := r.reader.PollRecords(ctx, 50_000)
		if err := ctx.Err(); err != nil {
			return err
		}
		var errs []error
		fetches.EachError(func(_ string, _ int32, err error) { errs = append(errs, err) })
		if len(errs) > 0 {
			return fmt.Errorf("reading %s partition %d: %w", r.topic, p, errors.Join(errs...))
		}
		var mine []*kgo.Record
		fetches.EachRecord(func(rec *kgo.Record) {
			if rec.Partition != p || rec.Offset < next || rec.Offset >= to {
				return
			}
			next = rec.Offset + 1
			if rec.Attrs.IsControl() { // a transaction marker the reader keeps: read past, not a record
				return
			}
			r.last[p] = max(r.last[p], rec.Offset)
			r.report.Scanned++
			if bytes.Equal(rec.Key, key) || bytes.HasPrefix(rec.Key, prefix) {
				mine = append(mine, rec)
			}
		})
		if len(mine) > 0 {
			if err := r.st.Add(ctx, r.topic, mine); err != nil {
				return err
			}
		}
		if end, err := endOffset(ctx, r.reader, r.topic, p); err == nil && end <= next { // read past transaction markers
			next = max(next, min(end, to))
		}
	}
	return nil
}

// endOffset is where partition p of topic ends now.
func endOffset(ctx context.Context, cl *kgo.Client, topic string, p int32) (int64, error) {
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	o, ok := ends.Lookup(topic, p)
	if !ok || o.Err != nil {
		return 0, fmt.Errorf("no end offset of %s partition %d", topic, p)
	}
	return o.Offset, nil
}

func listOffsets(ctx context.Context, list func(context.Context, ...string) (kadm.ListedOffsets, error), topic string) (map[int32]int64, error) {
	listed, err := list(ctx, topic)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	if len(out) == 0 {
		return nil, fmt.Errorf("topic %s has no partitions", topic)
	}
	return out, nil
}

// waitStored waits until the aggregator stored each partition of want up to (not including) its offset.
func waitStored(ctx context.Context, conn driver.Conn, topic string, want map[int32]int64, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		stored, err := chstore.StoredOffsets(ctx, conn, topic)
		if err == nil {
			behind := false
			for p, off := range want {
				if off > 0 && stored[p] < off {
					behind = true
				}
			}
			if !behind {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the aggregator to store %s up to %v: %w", topic, want, ctx.Err())
		case <-tick.C:
		}
	}
}
